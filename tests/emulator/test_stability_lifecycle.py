"""The emulator's Stability routes: results that expire or are served once, faults, the ledger, settings."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_stableaudio.emulator import (
    EmulatorServer,
    VariantConfig,
    synthesize_wav,
)
from airflow_provider_stableaudio.emulator.__main__ import _parse_args
from tests.emulator.stability_helpers import (
    BALANCE,
    KEY,
    RESULTS,
    SUBMIT,
    SYNC,
    error,
    form,
    get,
    post,
    prepare,
    raw,
    result,
    stability_ledger,
    submit,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

INPUT = synthesize_wav("input", 6)
SYNC_BODY = {"prompt": "calm", "duration": 2, "output_format": "wav"}
WAV_2S = 44 + 2 * 44100 * 4


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    server.clear_faults()
    server.clear_variants()
    server.reset()
    server.set_generation_seconds(0)
    with caplog.at_level(logging.WARNING):
        yield
    # Faults are expected behaviour: the server must not log errors or tracebacks for them.
    assert [r for r in caplog.records if r.name.startswith("aiohttp")] == []


def faults_of(server: EmulatorServer) -> list[str | None]:
    return [r["fault"] for r in server.ledger()["requests"]]


# --- results that expire, results served once -------------------------------------------------


def test_results_expire_after_the_ttl(server: EmulatorServer) -> None:
    server.set_variants(stability_result_ttl=0.5)
    generation_id = submit(server)
    assert result(server, generation_id).status_code == 200
    assert result(server, generation_id).status_code == 200  # kept until it expires
    time.sleep(0.6)
    assert "expired" in error(result(server, generation_id), 404, "generation_not_found")[0]
    (generation,) = stability_ledger(server)["generations"]
    assert (generation["status"], generation["served"], generation["polls"]) == ("expired", 2, 3)


def test_ttl_counts_from_completion_not_submission(server: EmulatorServer) -> None:
    server.set_variants(stability_result_ttl=0.4)
    server.set_generation_seconds(0.5)
    generation_id = submit(server)
    time.sleep(0.6)  # past the TTL since submission, not since completion
    assert result(server, generation_id).status_code == 200


def test_a_zero_ttl_result_is_gone_when_it_completes(server: EmulatorServer) -> None:
    server.set_variants(stability_result_ttl=0)
    error(result(server, submit(server)), 404)


def test_default_ttl_is_a_day_and_results_can_be_fetched_again(server: EmulatorServer) -> None:
    assert server.variants.stability_result_ttl == 86400
    generation_id = submit(server)
    first, second = result(server, generation_id), result(server, generation_id)
    assert first.content == second.content


def test_results_once_serves_a_result_only_once(server: EmulatorServer) -> None:
    server.set_variants(stability_results_once=True)
    generation_id = submit(server)
    assert result(server, generation_id).status_code == 200
    assert "served" in error(result(server, generation_id), 404)[0]
    (generation,) = stability_ledger(server)["generations"]
    assert (generation["status"], generation["served"]) == ("served", 1)
    # The synchronous answer is the result: the variant does not touch it.
    assert post(server, SYNC + "text-to-audio", SYNC_BODY).status_code == 200


def test_a_truncated_serving_uses_up_a_served_once_result(server: EmulatorServer) -> None:
    server.set_variants(stability_results_once=True)
    generation_id = submit(server)
    server.set_faults(rate_download_truncated=1.0)
    status, headers, body, complete = raw(server, prepare(server, "GET", RESULTS + generation_id))
    assert (status, complete, len(body)) == (200, False, WAV_2S // 2)
    assert int(headers["Content-Length"]) == WAV_2S
    server.clear_faults()
    error(result(server, generation_id), 404)


def test_audio_headers_can_be_left_out(server: EmulatorServer) -> None:
    server.set_variants(stability_audio_headers=False)
    response = result(server, submit(server))
    assert response.status_code == 200
    assert "finish-reason" not in response.headers
    assert "seed" not in response.headers


# --- fault injection --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SUBMIT + "text-to-audio", SYNC + "text-to-audio"])
def test_429_and_drop_on_a_submit_create_nothing(server: EmulatorServer, path: str) -> None:
    server.set_faults(rate_429=1.0, retry_after=7)
    response = post(server, path, SYNC_BODY)
    error(response, 429, "rate_limit_exceeded")
    assert response.headers["Retry-After"] == "7"
    server.set_faults(rate_429=0, rate_drop=1.0)
    with pytest.raises(requests.ConnectionError):
        post(server, path, SYNC_BODY)
    assert stability_ledger(server)["submit_count"] == 0
    assert faults_of(server) == ["429", "drop"]


@pytest.mark.parametrize("path", [SUBMIT + "text-to-audio", SYNC + "text-to-audio"])
def test_5xx_on_a_submit_creates_only_behind_a_504(server: EmulatorServer, path: str) -> None:
    server.set_faults(rate_5xx=1.0, seed=3)
    seen: Counter[int] = Counter()
    while len(seen) < 4:
        response = post(server, path, SYNC_BODY)
        seen[response.status_code] += 1
        if response.status_code == 502:  # a gateway's HTML page
            assert response.headers["Content-Type"].startswith("text/html")
        else:
            error(response, response.status_code)
    assert set(seen) == {500, 502, 503, 504}
    assert stability_ledger(server)["submit_count"] == seen[504]


@pytest.mark.parametrize("path", [SUBMIT + "text-to-audio", SYNC + "text-to-audio"])
def test_a_lost_answer_hides_exactly_one_generation(server: EmulatorServer, path: str) -> None:
    server.set_faults(rate_post_lost_response=1.0)
    with pytest.raises(requests.ConnectionError):
        post(server, path, SYNC_BODY)
    error(post(server, path, {"prompt": ""}), 400)  # not applied to a refused request
    assert stability_ledger(server)["submit_count"] == 1
    assert faults_of(server) == ["post_lost_response", None]


def test_a_malformed_submit_answer_hides_a_generation(server: EmulatorServer) -> None:
    server.set_faults(rate_malformed=1.0)
    response = post(server, SUBMIT + "text-to-audio", SYNC_BODY)
    assert response.status_code == 202
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert stability_ledger(server)["submit_count"] == 1


def test_a_slow_sync_call_is_created_although_the_client_timed_out(server: EmulatorServer) -> None:
    server.set_faults(rate_slow=1.0, slow_seconds=0.6, fault_methods=["POST"])
    with pytest.raises(requests.Timeout):
        post(server, SYNC + "audio-to-audio", SYNC_BODY, INPUT, timeout=0.2)
    deadline = time.monotonic() + 5
    while stability_ledger(server)["submit_count"] == 0:
        assert time.monotonic() < deadline, "the slow request was never handled"
        time.sleep(0.05)
    (generation,) = stability_ledger(server)["generations"]
    assert (generation["mode"], generation["input_size"]) == ("audio-to-audio", len(INPUT))


def test_reset_ends_a_waiting_sync_call_by_dropping_it(server: EmulatorServer) -> None:
    server.set_generation_seconds(30)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            post(server, SYNC + "text-to-audio", SYNC_BODY, timeout=10)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 5
    while thread.is_alive():  # until the request has arrived and a reset has ended its wait
        assert time.monotonic() < deadline, "reset did not end the waiting call"
        server.reset()
        thread.join(0.1)
    assert len(errors) == 1
    assert isinstance(errors[0], requests.ConnectionError)


def test_a_truncated_sync_answer_sends_half_the_audio(server: EmulatorServer) -> None:
    server.set_faults(rate_download_truncated=1.0)
    status, headers, body, complete = raw(server, prepare(server, "POST", SYNC + "text-to-audio", SYNC_BODY))
    assert (status, complete, len(body), int(headers["Content-Length"])) == (200, False, WAV_2S // 2, WAV_2S)
    (generation,) = stability_ledger(server)["generations"]
    assert (generation["served"], generation["complete_serves"], generation["bytes_served"]) == (
        1,
        0,
        WAV_2S // 2,
    )


def test_faults_on_results_answer_before_looking(server: EmulatorServer) -> None:
    generation_id = submit(server)
    server.set_faults(rate_429=1.0)
    error(result(server, generation_id), 429)
    server.set_faults(rate_429=0, rate_drop=1.0)
    with pytest.raises(requests.ConnectionError):
        result(server, generation_id)
    (generation,) = stability_ledger(server)["generations"]
    assert (generation["polls"], generation["served"]) == (0, 0)


def test_fault_methods_limit_the_stability_routes(server: EmulatorServer) -> None:
    server.set_faults(rate_429=1.0, fault_methods=["GET"])
    generation_id = submit(server)  # POST: not faulted
    error(result(server, generation_id), 429)
    error(get(server, BALANCE), 429)
    assert faults_of(server) == [None, "429", "429"]


# --- the ledger -------------------------------------------------------------------------------


def test_ledger_counts_submits_per_model_and_mode_and_results_served(server: EmulatorServer) -> None:
    first = submit(server)
    submit(server, "audio-to-audio", INPUT, duration=6, strength=0.3)
    post(server, SYNC + "inpaint", {**SYNC_BODY, "mask_start": 0, "mask_end": 1}, INPUT)
    post(server, SYNC + "text-to-audio", {**SYNC_BODY, "model": "stable-audio-2", "steps": 50})
    post(server, SYNC + "text-to-audio", {**SYNC_BODY, "duration": 999})  # refused: not a submit
    post(server, SUBMIT + "text-to-audio", {"prompt": "[emulator:moderate]"})  # refused too
    result(server, first)
    result(server, first)
    ledger = stability_ledger(server)
    assert ledger["submits"] == {
        "stable-audio-3": {"text-to-audio": 1, "audio-to-audio": 1},
        "stable-audio-2.5": {"inpaint": 1},
        "stable-audio-2": {"text-to-audio": 1},
    }
    assert (ledger["submit_count"], ledger["results_served"], ledger["credits_used"]) == (
        4,
        4,
        26 + 26 + 20 + 20,
    )
    entry = ledger["generations"][0]
    assert (entry["id"], entry["polls"], entry["served"], entry["complete_serves"]) == (first, 2, 2, 2)
    assert entry["bytes_served"] == 2 * entry["file_size"] == 2 * WAV_2S
    assert (entry["steps"], entry["duration"], entry["cfg_scale"], entry["content_type"]) == (
        8,
        2,
        1,
        "audio/wav",
    )
    assert ledger["generations"][1]["strength"] == 0.3
    statuses = [(r["method"], r["path"], r["status"]) for r in server.ledger()["requests"]]
    assert statuses[-4:] == [
        ("POST", SYNC + "text-to-audio", 400),
        ("POST", SUBMIT + "text-to-audio", 403),
        ("GET", RESULTS + first, 200),
        ("GET", RESULTS + first, 200),
    ]


def test_the_ledger_sha256_is_that_of_the_served_bytes(server: EmulatorServer) -> None:
    generation_id = submit(server)
    audio = result(server, generation_id).content
    assert stability_ledger(server)["generations"][0]["sha256"] == hashlib.sha256(audio).hexdigest()


def test_the_ledger_records_the_client_headers(server: EmulatorServer) -> None:
    submit(server)
    client = {"stability-client-id": "airflow-provider-stableaudio", "stability-client-version": "1.2.3"}
    requests.post(
        server.base_url + SYNC + "text-to-audio",
        files=form(SYNC_BODY),
        headers={"Authorization": f"Bearer {KEY}", **client},
        timeout=10,
    )
    entries = stability_ledger(server)["generations"]
    assert [(e["client_id"], e["client_version"]) for e in entries] == [
        (None, None),
        ("airflow-provider-stableaudio", "1.2.3"),
    ]


def test_reset_forgets_stability_generations(server: EmulatorServer) -> None:
    generation_id = submit(server)
    server.reset()
    assert stability_ledger(server) == {
        "submits": {},
        "submit_count": 0,
        "results_served": 0,
        "credits_used": 0,
        "generations": [],
    }
    error(result(server, generation_id), 404)
    assert get(server, BALANCE).json() == {"credits": 1000.0}


# --- settings: EmulatorServer, the admin route, the CLI ---------------------------------------


def test_stability_variants_through_the_config_route(server: EmulatorServer) -> None:
    url = server.base_url + "/_emulator/config"
    body = {"stability_result_ttl": 60, "stability_results_once": True, "stability_audio_headers": False}
    answer = requests.post(url, json=body, timeout=10).json()
    assert {name: answer[name] for name in body} == body
    assert server.variants.stability_results_once is True
    for bad in (
        {"stability_result_ttl": -1},
        {"stability_results_once": "yes"},
        {"stability_audio_headers": 1},
    ):
        assert requests.post(url, json=bad, timeout=10).status_code == 400
    requests.post(url, json={"clear_variants": True}, timeout=10)
    assert server.variants == VariantConfig()


def test_set_variants_validates_the_stability_settings(server: EmulatorServer) -> None:
    with pytest.raises(ValueError, match="stability_result_ttl"):
        server.set_variants(stability_result_ttl=float("inf"))
    with pytest.raises(ValueError, match="stability_results_once"):
        server.set_variants(stability_results_once=1)  # type: ignore[typeddict-item]


def test_cli_flags_set_the_stability_variants() -> None:
    args = _parse_args(
        ["--stability-result-ttl", "30", "--stability-results-once", "--no-stability-audio-headers"]
    )
    assert args.variants == VariantConfig(
        stability_result_ttl=30, stability_results_once=True, stability_audio_headers=False
    )
    assert _parse_args([]).variants == VariantConfig()
