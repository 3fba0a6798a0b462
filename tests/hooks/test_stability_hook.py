"""Stability AI's hook against the emulator's Stability routes (over loopback, nothing mocked).

Stable Audio 3: submit, poll, store the result. The synchronous models (``generate_to``) are in
``test_stability_generate_to.py``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from airflow_provider_stableaudio import __version__
from airflow_provider_stableaudio.exceptions import (
    StableAudioContentRefusedError,
    StableAudioDownloadError,
    StableAudioModelAccessError,
    StableAudioResultGoneError,
    StableAudioRetryableError,
)
from airflow_provider_stableaudio.generation_request import GenerationRequest
from airflow_provider_stableaudio.generation_result import (
    CONTENT_FILTERED,
    GenerationState,
    generation_failure,
)
from airflow_provider_stableaudio.hooks import base as hook_module
from airflow_provider_stableaudio.hooks.stability import StabilityAudioHook
from tests.conftest import API_KEY, set_connection
from tests.fake_clock import fake_clock

PROMPT = "a slow cello line over rain"
WAV_2S = 44 + 2 * 44100 * 4


def request(prompt: str = PROMPT, **params: object) -> GenerationRequest:
    fields = {"duration": 2, "output_format": "wav", **params}
    return GenerationRequest.build("stable-audio-3", prompt=prompt, **fields)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generations(emulator) -> dict[str, dict]:
    return {g["id"]: g for g in emulator.ledger()["stability"]["generations"]}


def finished(hook: StabilityAudioHook, prompt: str = PROMPT, **params: object):
    submitted = hook.submit_generation(request(prompt, **params))
    return hook.wait_for_generation(submitted.id, poll_interval=0.1, timeout=20)


def test_submit_answers_with_the_generation_id(stability) -> None:
    generation = StabilityAudioHook().submit_generation(request(seed=7))
    assert generation.state is GenerationState.PENDING
    assert len(generation.id) == 64
    (created,) = stability.ledger()["stability"]["generations"]
    assert created["id"] == generation.id
    assert created["prompt"] == PROMPT
    assert created["seed"] == 7
    assert stability.ledger()["stability"]["submits"] == {"stable-audio-3": {"text-to-audio": 1}}


def test_poll_reads_pending_then_complete_with_seed_and_finish_reason(stability) -> None:
    hook = StabilityAudioHook()
    submitted = hook.submit_generation(request(seed=1234))
    pending = hook.get_generation(submitted.id)
    assert pending.state is GenerationState.PENDING
    assert pending.status == "in-progress"

    done = hook.wait_for_generation(submitted.id, poll_interval=0.1, timeout=20)
    assert done.state is GenerationState.SUCCEEDED
    assert done.audio_file is not None
    assert done.audio_file.seed == 1234
    assert done.audio_file.finish_reason == "SUCCESS"
    assert done.audio_file.content_type == "audio/wav"
    assert done.audio_file.file_size == WAV_2S
    (served,) = generations(stability).values()
    assert served["polls"] >= 2  # it waited through an in-progress answer


def test_a_poll_of_a_finished_result_leaves_its_body_unread(stability) -> None:
    hook = StabilityAudioHook()
    done = finished(hook, duration=60)  # 10.6 MB: more than loopback's socket buffers hold
    assert done.audio_file is not None
    assert done.audio_file.file_size == 44 + 60 * 44100 * 4
    hook.get_generation(done.id)
    served = generations(stability)[done.id]
    assert served["served"] >= 2
    assert served["complete_serves"] == 0
    assert served["bytes_served"] < served["file_size"]


def test_store_result_writes_exactly_the_bytes_served(stability, tmp_path: Path) -> None:
    hook = StabilityAudioHook()
    done = finished(hook)
    target = tmp_path / "nested" / "clip.wav"
    location = hook.store_result(done, target)
    assert Path(location) == target
    served = generations(stability)[done.id]
    assert target.stat().st_size == served["file_size"] == WAV_2S
    assert sha256(target) == served["sha256"]
    assert served["complete_serves"] >= 1  # (the poll's 200 too, when the socket buffers took it whole)
    assert list(target.parent.iterdir()) == [target]  # no staging file left beside it


def test_store_result_cut_short_leaves_nothing(stability, tmp_path: Path) -> None:
    hook = StabilityAudioHook(max_retries=0)
    done = finished(hook)
    before = generations(stability)[done.id]
    stability.set_faults(rate_download_truncated=1.0, fault_methods=["GET"])
    target = tmp_path / "clip.wav"
    with pytest.raises(StableAudioDownloadError) as caught:
        hook.store_result(done, target)
    assert API_KEY not in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # neither the clip nor a partial file
    served = generations(stability)[done.id]
    assert served["served"] == before["served"] + 1  # one attempt (max_retries=0), cut short
    assert served["complete_serves"] == before["complete_serves"]
    assert 0 < served["bytes_served"] - before["bytes_served"] < served["file_size"]

    stability.clear_faults()  # the result is still there: storing it again works, whole
    hook.store_result(done, target)
    assert sha256(target) == served["sha256"]


def test_content_moderation_refuses_the_submit_and_creates_nothing(stability) -> None:
    with pytest.raises(StableAudioContentRefusedError, match="refused the content") as caught:
        StabilityAudioHook().submit_generation(request("[emulator:moderate] a siren"))
    assert "403" in str(caught.value)
    assert "Nothing was generated" in str(caught.value)
    assert API_KEY not in str(caught.value)
    ledger = stability.ledger()["stability"]
    assert ledger["generations"] == []
    assert ledger["submits"] == {}


def test_a_filtered_result_reads_failed_content_filtered(stability) -> None:
    hook = StabilityAudioHook()
    submitted = hook.submit_generation(request("[emulator:filtered] a siren"))
    stability.set_generation_seconds(0)
    generation = hook.get_generation(submitted.id)
    assert generation.state is GenerationState.FAILED
    assert generation.status == CONTENT_FILTERED
    assert generation.audio_file is not None
    assert generation.audio_file.finish_reason == CONTENT_FILTERED
    error = generation_failure(generation)
    assert isinstance(error, StableAudioContentRefusedError)
    assert "refused by its moderation" in str(error)
    assert submitted.id in str(error)


def test_waiting_for_a_filtered_result_raises_content_refused(stability) -> None:
    hook = StabilityAudioHook()
    submitted = hook.submit_generation(request("[emulator:filtered] a siren"))
    with pytest.raises(StableAudioContentRefusedError, match=CONTENT_FILTERED):
        hook.wait_for_generation(submitted.id, poll_interval=0.1, timeout=20)


def test_an_unknown_id_is_a_result_gone_for_good_and_names_the_24_hours(stability) -> None:
    with pytest.raises(StableAudioResultGoneError, match="24 hours") as caught:
        StabilityAudioHook().get_generation("f" * 64)
    assert "HTTP 404" in str(caught.value)
    assert "f" * 64 in str(caught.value)
    assert API_KEY not in str(caught.value)


def test_an_expired_result_is_gone_and_leaves_no_file(stability, tmp_path: Path) -> None:
    hook = StabilityAudioHook()
    done = finished(hook)
    stability.set_variants(stability_result_ttl=0)  # the result's time is up
    target = tmp_path / "clip.wav"
    with pytest.raises(StableAudioResultGoneError, match="24 hours") as caught:
        hook.store_result(done, target)
    assert done.id in str(caught.value)
    assert "fails without retries (a retry would pay for a new one)" in str(caught.value)
    assert API_KEY not in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    assert generations(stability)[done.id]["status"] == "expired"


def test_a_result_served_once_is_gone_the_second_time(stability, tmp_path: Path) -> None:
    hook = StabilityAudioHook()
    done = finished(hook)
    stability.set_variants(stability_results_once=True)
    first = tmp_path / "first.wav"
    hook.store_result(done, first)
    assert sha256(first) == generations(stability)[done.id]["sha256"]

    second = tmp_path / "second.wav"
    with pytest.raises(StableAudioResultGoneError, match="may not be served twice"):
        hook.store_result(done, second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.wav"]


def test_a_rate_limited_submit_is_retried_and_creates_one_generation(
    stability, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = fake_clock(monkeypatch, hook_module)
    # Seed 1 draws 0.13 then 0.85: the first POST is refused with 429, the second accepted.
    stability.set_faults(rate_429=0.5, retry_after=3, fault_methods=["POST"], seed=1)
    generation = StabilityAudioHook().submit_generation(request())
    ledger = stability.ledger()
    assert ledger["faults"]["429"] == 1
    assert [r["status"] for r in ledger["requests"] if r["method"] == "POST"] == [429, 202]
    assert [g["id"] for g in ledger["stability"]["generations"]] == [generation.id]
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] >= 3  # Retry-After was honoured


def test_submits_name_the_client_to_stability(stability) -> None:
    generation = StabilityAudioHook().submit_generation(request())
    created = generations(stability)[generation.id]
    assert created["client_id"] == "airflow-provider-stableaudio"
    assert created["client_version"] == __version__


def test_test_connection_shows_the_balance(stability, tmp_path: Path) -> None:
    hook = StabilityAudioHook()
    ok, message = hook.test_connection()
    assert ok, message
    assert "balance: 1000 credits" in message
    hook.store_result(finished(hook), tmp_path / "clip.wav")  # 26 credits
    ok, message = hook.test_connection()
    assert ok, message
    assert "balance: 974 credits" in message
    assert len(stability.ledger()["stability"]["generations"]) == 1  # the tests paid for nothing


def test_test_connection_with_a_refused_key_fails_without_the_key(
    stability, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = "refused-key-8c1e4d"
    set_connection(
        monkeypatch, "stability_default", conn_type="stability", host=stability.base_url, password=refused
    )
    ok, message = StabilityAudioHook().test_connection()
    assert not ok
    assert "401" in message
    assert refused not in message


def test_the_api_key_is_in_no_error_message(
    stability, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hook = StabilityAudioHook(max_retries=0)
    done = finished(hook)
    errors: list[Exception] = []

    def caught(call, *args, **kwargs) -> None:
        try:
            call(*args, **kwargs)
        except Exception as exc:
            errors.append(exc)
        else:
            raise AssertionError(f"{call.__name__} did not fail")

    caught(hook.submit_generation, request("[emulator:moderate] x"))
    caught(hook.get_generation, "0" * 64)
    stability.set_faults(rate_drop=1.0)
    caught(hook.get_generation, done.id)  # a dropped connection
    caught(hook.store_result, done, tmp_path / "clip.wav")
    stability.clear_faults()
    stability.set_variants(stability_result_ttl=0)
    caught(hook.store_result, done, tmp_path / "clip.wav")
    set_connection(
        monkeypatch,
        "stability_default",
        conn_type="stability",
        host=stability.base_url,
        password=API_KEY + "x",
    )
    refused = StabilityAudioHook(max_retries=0)
    caught(refused.submit_generation, request())
    caught(refused.get_generation, done.id)
    assert len(errors) == 7
    for error in errors:
        assert API_KEY not in str(error), error
        assert API_KEY not in repr(error), error


# --- Stability's 429: the key is locked out for 60 s, and no Retry-After says so ----------------


def test_a_429_without_retry_after_waits_out_stabilitys_60_s_lockout_before_the_retry(
    stability, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = fake_clock(monkeypatch, hook_module)
    # Seed 1 draws 0.13 then 0.85: the first POST is refused with 429 (no Retry-After), the second accepted.
    stability.set_faults(rate_429=0.5, retry_after=None, fault_methods=["POST"], seed=1)
    generation = StabilityAudioHook().submit_generation(request(), timeout=300)
    posts = [r["status"] for r in stability.ledger()["requests"] if r["method"] == "POST"]
    assert posts == [429, 202]
    assert list(generations(stability)) == [generation.id]
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] >= 60


def test_a_429_whose_lockout_outlasts_the_timeout_is_not_retried_into_the_lockout(
    stability, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = fake_clock(monkeypatch, hook_module)
    stability.set_faults(rate_429=1.0, retry_after=None, fault_methods=["GET"])
    with pytest.raises(StableAudioRetryableError, match="locks the key out for 60 s") as caught:
        StabilityAudioHook().get_generation("a" * 64, timeout=30)
    assert caught.value.retry_after == 60
    assert clock.sleeps == []
    assert len(stability.ledger()["requests"]) == 1


# --- a 403 is moderation, never the key; Stable Audio 3 is granted per account ------------------


def test_a_403_on_a_result_is_refused_content_not_a_refused_key(stability) -> None:
    hook = StabilityAudioHook()
    submitted = hook.submit_generation(request("[emulator:moderate-result] a siren"))
    with pytest.raises(StableAudioContentRefusedError) as caught:
        hook.wait_for_generation(submitted.id, poll_interval=0.1, timeout=20)
    message = str(caught.value)
    assert "HTTP 403" in message
    assert "content_moderation" in message
    assert "moderation flagged the prompt or the input audio" in message
    assert "API key" not in message
    # Refused content is final: no poll after the 403.
    polls = [r["status"] for r in stability.ledger()["requests"] if r["method"] == "GET"]
    assert polls[-1] == 403
    assert polls.count(403) == 1


def test_a_stable_audio_3_submit_refused_to_the_account_names_stable_audio_2_5(stability) -> None:
    stability.set_variants(stability_sa3_access_denied=True)
    with pytest.raises(StableAudioModelAccessError) as caught:
        StabilityAudioHook().submit_generation(request())
    message = str(caught.value)
    assert "HTTP 403" in message
    assert "the account may lack access to the model" in message
    assert "allow-access-stable-audio-3-api" in message
    assert "model='stable-audio-2.5'" in message
    assert caught.value.status_code == 403
    assert [r["status"] for r in stability.ledger()["requests"]] == [403]  # not retried
    assert generations(stability) == {}
