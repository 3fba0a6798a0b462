"""Fault injection, the extended ledger and the benchmark blob, seen from plain HTTP clients."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_stableaudio.emulator import EmulatorServer, FaultConfig, synthesize_wav
from airflow_provider_stableaudio.emulator.audio import wav_size
from airflow_provider_stableaudio.emulator.faults import RATE_NAMES

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY = "test-key-0123456789"
PATH = "/v2/generate/audio"
REPO_ROOT = Path(__file__).resolve().parents[2]
BODY = {"model": "stable-audio", "prompt": "calm piano", "seconds_total": 2}
ENVELOPE_KEYS = {"message", "path", "requestId", "statusCode", "timestamp"}


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    server.clear_faults()
    server.reset()
    server.set_generation_seconds(0)
    with caplog.at_level(logging.WARNING):
        yield
    # Faults are expected behaviour: the server must not log errors or tracebacks for them.
    assert [r for r in caplog.records if r.name.startswith("aiohttp")] == []


class Reply:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    server: EmulatorServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = KEY,
    timeout: float = 5,
) -> Reply:
    """One request on a fresh connection; a dropped connection raises ConnectionError."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def create(server: EmulatorServer, **fields: Any) -> str:
    reply = call(server, "POST", PATH, {**BODY, **fields})
    assert reply.status == 200, reply.body
    generation_id: str = reply.json()["id"]
    return generation_id


def poll_path(generation_id: str) -> str:
    return f"{PATH}?generation_id={generation_id}"


def file_path(generation_id: str) -> str:
    return f"/files/{generation_id.split(':')[0]}.wav"


def faults_of(server: EmulatorServer) -> list[str | None]:
    return [r["fault"] for r in server.ledger()["requests"]]


def assert_envelope(reply: Reply, status: int, message: str | None = None) -> None:
    assert reply.status == status
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["statusCode"] == status
    if message is not None:
        assert body["message"] == message


# --- settings -------------------------------------------------------------------------------


def test_faults_are_off_by_default(server: EmulatorServer) -> None:
    assert server.faults == FaultConfig()
    config = call(server, "GET", "/_emulator/config", key=None).json()
    assert {k: v for k, v in config.items() if k.startswith("rate_")} == dict.fromkeys(RATE_NAMES, 0.0)
    assert (config["retry_after"], config["slow_seconds"], config["seed"]) == (1, 30.0, None)
    assert config["fault_methods"] == ["GET", "POST"]


def test_rate_zero_changes_nothing(server: EmulatorServer) -> None:
    server.set_faults(
        seed=1, rate_429=0, rate_5xx=0, rate_drop=0, rate_slow=0, rate_malformed=0, rate_generation_error=0
    )
    server.set_faults(rate_download_404=0, rate_download_truncated=0, rate_post_lost_response=0)
    for _ in range(5):
        generation_id = create(server)
        assert call(server, "GET", poll_path(generation_id)).json()["status"] == "completed"
        assert len(call(server, "GET", file_path(generation_id), key=None).body) == wav_size(2)
    ledger = server.ledger()
    assert {r["status"] for r in ledger["requests"]} == {200}
    assert set(faults_of(server)) == {None}
    assert set(ledger["faults"].values()) == {0}


def test_config_endpoint_sets_validates_and_clears_faults(server: EmulatorServer) -> None:
    settings = {"rate_429": 0.25, "retry_after": 7, "slow_seconds": 2.5, "seed": 9, "fault_methods": ["get"]}
    reply = call(server, "POST", "/_emulator/config", settings, key=None)
    assert reply.status == 200
    assert {k: reply.json()[k] for k in settings} == {**settings, "fault_methods": ["GET"]}
    assert server.faults == FaultConfig(
        rate_429=0.25, retry_after=7, slow_seconds=2.5, seed=9, fault_methods=frozenset({"GET"})
    )
    for bad in (
        {"rate_5xx": 1.5},
        {"rate_drop": "often"},
        {"retry_after": -1},
        {"retry_after": 0.5},
        {"slow_seconds": -1},
        {"seed": "x"},
        {"fault_methods": ["PUT"]},
        {"clear_faults": "yes"},
        {"rate_everything": 1},
    ):
        reply = call(server, "POST", "/_emulator/config", bad, key=None)
        assert reply.status == 400, bad
        assert next(iter(bad)) in reply.json()["message"]
    assert server.faults.rate_429 == 0.25  # a rejected body changes nothing
    reply = call(server, "POST", "/_emulator/config", {"clear_faults": True, "rate_drop": 0.5}, key=None)
    assert reply.status == 200
    assert server.faults == FaultConfig(rate_drop=0.5)


def test_set_faults_validates(server: EmulatorServer) -> None:
    with pytest.raises(ValueError, match="rate_slow"):
        server.set_faults(rate_slow=2)
    with pytest.raises(TypeError):
        server.set_faults(rate_unknown=1)  # type: ignore[call-arg]
    server.set_faults(fault_methods="post", retry_after=0)
    assert server.faults == FaultConfig(fault_methods=frozenset({"POST"}), retry_after=0)


# --- faults on POST /v2/generate/audio -------------------------------------------------------


@pytest.mark.parametrize("retry_after", [0, 1, 30])
def test_429_before_creation_with_retry_after(server: EmulatorServer, retry_after: int) -> None:
    server.set_faults(rate_429=1.0, retry_after=retry_after)
    reply = call(server, "POST", PATH, BODY)
    assert_envelope(reply, 429, "Too Many Requests")
    assert reply.headers["Retry-After"] == str(retry_after)
    ledger = server.ledger()
    assert ledger["generations"] == []
    assert ledger["requests"] == [{"method": "POST", "path": PATH, "status": 429, "fault": "429"}]
    assert ledger["faults"]["429"] == 1


def test_5xx_on_post_creates_only_behind_a_504(server: EmulatorServer) -> None:
    server.set_faults(rate_5xx=1.0, seed=3)
    seen: Counter[int] = Counter()
    while len(seen) < 4:
        reply = call(server, "POST", PATH, BODY)
        seen[reply.status] += 1
        if reply.status == 502:  # a gateway's HTML page, not the API's envelope
            assert reply.headers["Content-Type"].startswith("text/html")
            assert b"502 Bad Gateway" in reply.body
        else:
            assert_envelope(reply, reply.status, "Generation timeout" if reply.status == 504 else None)
    assert set(seen) == {500, 502, 503, 504}
    ledger = server.ledger()
    assert len(ledger["generations"]) == seen[504]  # a 504 hides a created generation, the others never
    assert {str(code): n for code, n in seen.items()} == {
        k: v for k, v in ledger["faults"].items() if k[0] == "5"
    }


def test_5xx_on_post_of_an_invalid_body_is_not_a_504(server: EmulatorServer) -> None:
    server.set_faults(rate_5xx=1.0, seed=3)
    statuses = {call(server, "POST", PATH, {"model": "stable-audio"}).status for _ in range(20)}
    assert 504 not in statuses
    assert 400 in statuses  # a drawn 504 falls back to the real answer
    assert server.ledger()["generations"] == []


def test_drop_on_post_creates_nothing(server: EmulatorServer) -> None:
    server.set_faults(rate_drop=1.0)
    with pytest.raises(ConnectionError):
        call(server, "POST", PATH, BODY)
    ledger = server.ledger()
    assert ledger["generations"] == []
    assert ledger["requests"] == [{"method": "POST", "path": PATH, "status": None, "fault": "drop"}]


def test_post_lost_response_creates_exactly_one(server: EmulatorServer) -> None:
    server.set_faults(rate_post_lost_response=1.0)
    with pytest.raises(ConnectionError):
        call(server, "POST", PATH, BODY)
    ledger = server.ledger()
    assert len(ledger["generations"]) == 1
    assert ledger["requests"] == [
        {"method": "POST", "path": PATH, "status": None, "fault": "post_lost_response"}
    ]
    # Not applied to a request that creates nothing, nor to polls.
    assert call(server, "POST", PATH, {"model": "stable-audio"}).status == 400
    generation_id = ledger["generations"][0]["id"]
    assert call(server, "GET", poll_path(generation_id)).status == 200
    assert faults_of(server) == ["post_lost_response", None, None]


def test_malformed_on_post_is_a_created_generation(server: EmulatorServer) -> None:
    server.set_faults(rate_malformed=1.0)
    reply = call(server, "POST", PATH, BODY)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.body)
    assert len(server.ledger()["generations"]) == 1


def test_generation_error_fails_new_generations(server: EmulatorServer) -> None:
    server.set_faults(rate_generation_error=1.0)
    failed = create(server)
    server.set_faults(rate_generation_error=0)
    fine = create(server)
    body = call(server, "GET", poll_path(failed)).json()
    assert (body["status"], body["error"]["name"], body["audio_file"]) == ("error", "GenerationError", None)
    assert call(server, "GET", poll_path(fine)).json()["status"] == "completed"
    assert call(server, "GET", file_path(failed), key=None).status == 404
    assert faults_of(server) == ["generation_error", None, None, None, None]


def test_slow_post_creates_after_the_delay(server: EmulatorServer) -> None:
    server.set_faults(rate_slow=1.0, slow_seconds=0.5, fault_methods=["POST"])
    with pytest.raises(TimeoutError):
        call(server, "POST", PATH, BODY, timeout=0.1)
    assert server.ledger()["generations"] == []  # still waiting
    started = time.monotonic()
    reply = call(server, "POST", PATH, BODY)
    assert reply.status == 200
    assert time.monotonic() - started >= 0.5
    ledger = server.ledger()
    assert len(ledger["generations"]) == 2  # the timed-out POST was created anyway
    assert [r["fault"] for r in ledger["requests"]] == ["slow", "slow"]


def test_reset_ends_slow_requests_without_creating(server: EmulatorServer) -> None:
    server.set_faults(rate_slow=1.0, slow_seconds=30)
    errors: list[BaseException] = []

    def slow_post() -> None:
        try:
            call(server, "POST", PATH, BODY, timeout=10)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=slow_post)
    thread.start()
    deadline = time.monotonic() + 5
    while thread.is_alive():  # until the request has arrived and a reset has ended its wait
        assert time.monotonic() < deadline, "reset did not end the slow request"
        server.reset()
        thread.join(0.1)
    assert len(errors) == 1
    assert isinstance(errors[0], ConnectionError)
    ledger = server.ledger()
    assert (ledger["generations"], ledger["requests"]) == ([], [])


def test_fault_methods_limits_v2_faults(server: EmulatorServer) -> None:
    generation_id = create(server)
    server.set_faults(rate_429=1.0, fault_methods=["GET"])
    assert call(server, "POST", PATH, BODY).status == 200
    assert call(server, "GET", poll_path(generation_id)).status == 429
    server.set_faults(fault_methods=["POST"])
    assert call(server, "GET", poll_path(generation_id)).status == 200
    assert call(server, "POST", PATH, BODY).status == 429
    server.set_faults(rate_429=0, rate_drop=1.0, fault_methods=[])
    with pytest.raises(ConnectionError):  # downloads are faulted whatever fault_methods says
        call(server, "GET", file_path(generation_id), key=None)
    assert faults_of(server) == [None, None, "429", None, "429", "drop"]


# --- faults on polls ------------------------------------------------------------------------


def test_faults_on_polls_do_not_count_as_polls(server: EmulatorServer) -> None:
    generation_id = create(server)
    server.set_faults(rate_5xx=1.0, seed=5, fault_methods=["GET"])
    seen = {call(server, "GET", poll_path(generation_id)).status for _ in range(30)}
    assert seen == {500, 502, 503, 504}
    server.set_faults(rate_5xx=0, rate_drop=1.0)
    with pytest.raises(ConnectionError):
        call(server, "GET", poll_path(generation_id))
    (generation,) = server.ledger()["generations"]
    assert generation["polls"] == 0


def test_malformed_poll(server: EmulatorServer) -> None:
    generation_id = create(server)
    server.set_faults(rate_malformed=1.0)
    reply = call(server, "GET", poll_path(generation_id))
    assert reply.status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.body)
    assert reply.body.startswith(b"{")
    assert server.ledger()["generations"][0]["polls"] == 1
    assert call(server, "GET", poll_path("unknown")).status == 404  # errors are not mangled


def test_slow_poll_is_slower_than_a_client_timeout(server: EmulatorServer) -> None:
    generation_id = create(server)
    server.set_faults(rate_slow=1.0, slow_seconds=0.3)
    with pytest.raises(TimeoutError):
        call(server, "GET", poll_path(generation_id), timeout=0.1)
    # The wait does not block the loop: admin routes and other requests answer meanwhile.
    assert call(server, "GET", "/_emulator/config", key=None).status == 200


# --- faults on downloads --------------------------------------------------------------------


def test_download_404_and_drop(server: EmulatorServer) -> None:
    generation_id = create(server)
    server.set_faults(rate_download_404=1.0)
    assert_envelope(call(server, "GET", file_path(generation_id), key=None), 404, "File not found")
    assert call(server, "HEAD", file_path(generation_id), key=None).status == 404
    server.set_faults(rate_download_404=0, rate_drop=1.0)
    with pytest.raises(ConnectionError):
        call(server, "GET", file_path(generation_id), key=None)
    (generation,) = server.ledger()["generations"]
    assert (generation["downloads"], generation["bytes_served"], generation["sha256"]) == (0, 0, None)
    assert faults_of(server)[1:] == ["download_404", "download_404", "drop"]


def test_truncated_download_sends_less_than_content_length(server: EmulatorServer) -> None:
    generation_id = create(server)
    server.set_faults(rate_download_truncated=1.0)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", file_path(generation_id))
        response = conn.getresponse()
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == wav_size(2)
        with pytest.raises(http.client.IncompleteRead) as info:
            response.read()
    finally:
        conn.close()
    assert len(info.value.partial) == wav_size(2) // 2
    assert info.value.partial == synthesize_wav("calm piano", 2)[: wav_size(2) // 2]
    assert call(server, "HEAD", file_path(generation_id), key=None).status == 200  # HEAD: no truncation
    server.set_faults(rate_download_truncated=0)
    full = call(server, "GET", file_path(generation_id), key=None).body
    (generation,) = server.ledger()["generations"]
    assert generation["downloads"] == 2
    assert generation["complete_downloads"] == 1
    assert generation["bytes_served"] == wav_size(2) // 2 + wav_size(2)
    assert generation["sha256"] == hashlib.sha256(full).hexdigest()
    statuses = [(r["status"], r["fault"]) for r in server.ledger()["requests"]]
    assert statuses[1:] == [(200, "download_truncated"), (200, None), (200, None)]


def test_truncation_needs_an_existing_file(server: EmulatorServer) -> None:
    server.set_faults(rate_download_truncated=1.0)
    assert call(server, "GET", "/files/missing.wav", key=None).status == 404
    assert faults_of(server) == [None]


# --- determinism, scope and the ledger summary ----------------------------------------------


def _poll_statuses(server: EmulatorServer, generation_id: str, count: int) -> list[int]:
    return [call(server, "GET", poll_path(generation_id)).status for _ in range(count)]


def test_seeded_draws_are_deterministic(server: EmulatorServer) -> None:
    generation_id = create(server)
    server.set_faults(seed=42, rate_429=0.3, rate_5xx=0.3, fault_methods=["GET"])
    first = _poll_statuses(server, generation_id, 30)
    server.set_faults(seed=42)  # giving the seed re-seeds
    assert _poll_statuses(server, generation_id, 30) == first
    assert 200 in first
    assert len(set(first)) > 2
    server.set_faults(seed=43)
    assert _poll_statuses(server, generation_id, 30) != first
    server.set_faults(seed=42)
    server.reset()  # so does a reset, for per-test reproducibility
    generation_id = create(server)
    assert _poll_statuses(server, generation_id, 30) == first


def test_partial_rates_hit_about_their_share(server: EmulatorServer) -> None:
    generation_id = create(server)
    server.set_faults(seed=7, rate_429=0.5)
    statuses = _poll_statuses(server, generation_id, 200)
    assert 70 < statuses.count(429) < 130
    assert server.ledger()["faults"]["429"] == statuses.count(429)


def test_admin_routes_are_never_faulted(server: EmulatorServer) -> None:
    server.set_faults(rate_drop=1.0, rate_429=1.0, rate_5xx=1.0, rate_download_404=1.0)
    assert call(server, "GET", "/_emulator/ledger", key=None).status == 200
    assert call(server, "GET", "/_emulator/config", key=None).status == 200
    assert call(server, "GET", "/_emulator/blob?size=10", key=None).status == 200
    assert call(server, "POST", "/_emulator/reset", key=None).status == 200


def test_ledger_summary_matches_the_requests(server: EmulatorServer) -> None:
    server.set_faults(seed=11, rate_429=0.2, rate_5xx=0.2, rate_drop=0.2, rate_post_lost_response=0.2)
    for _ in range(40):
        with contextlib.suppress(ConnectionError):
            call(server, "POST", PATH, BODY)
    ledger = server.ledger()
    applied = Counter(r["fault"] for r in ledger["requests"] if r["fault"])
    assert {k: v for k, v in ledger["faults"].items() if v} == dict(applied)
    created = (
        applied["504"] + applied["post_lost_response"] + sum(r["status"] == 200 for r in ledger["requests"])
    )
    assert len(ledger["generations"]) == created


# --- the benchmark blob ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1000, 3 * 1024 * 1024 + 7])
def test_blob_has_the_exact_size_and_pattern(server: EmulatorServer, size: int) -> None:
    reply = call(server, "GET", f"/_emulator/blob?size={size}", key=None)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/octet-stream"
    assert int(reply.headers["Content-Length"]) == size
    assert reply.body == (bytes(range(256)) * (size // 256 + 1))[:size]
    assert server.ledger()["requests"] == [
        {"method": "GET", "path": "/_emulator/blob", "status": 200, "fault": None}
    ]


@pytest.mark.parametrize("query", ["", "?size=", "?size=-1", "?size=1e3", "?size=2147483649"])
def test_blob_rejects_bad_sizes(server: EmulatorServer, query: str) -> None:
    assert_envelope(call(server, "GET", f"/_emulator/blob{query}", key=None), 400)


def test_large_blob_is_streamed_in_chunks(server: EmulatorServer) -> None:
    size = 50 * 1024 * 1024
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    tracemalloc.start()
    try:
        conn.request("GET", f"/_emulator/blob?size={size}")
        response = conn.getresponse()
        assert int(response.headers["Content-Length"]) == size
        total, digest = 0, hashlib.sha256()
        while chunk := response.read(1024 * 1024):
            total += len(chunk)
            digest.update(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        conn.close()
    assert total == size
    assert digest.hexdigest() == hashlib.sha256(bytes(range(256)) * (size // 256)).hexdigest()
    assert peak < 16 * 1024 * 1024  # server and client together: never the whole blob


def test_client_leaving_mid_blob_is_quiet(server: EmulatorServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", f"/_emulator/blob?size={100 * 1024 * 1024}")
    assert len(conn.getresponse().read(1024 * 1024)) == 1024 * 1024
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    conn.close()
    deadline = time.monotonic() + 5
    while not server.ledger()["requests"]:  # recorded once the handler has ended
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # The autouse fixture then checks that nothing was logged.


# --- CLI ------------------------------------------------------------------------------------


def test_cli_accepts_the_fault_flags(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    options = (
        "--port 0 --rate-429 1 --rate-5xx 0.1 --rate-drop 0 --rate-slow 0 --rate-malformed 0"
        " --rate-generation-error 0.5 --rate-download-404 0.2 --rate-download-truncated 0.3"
        " --rate-post-lost-response 0.4 --retry-after 0 --slow-seconds 2 --seed 5 --fault-methods POST"
    )
    command = [sys.executable, "-m", "airflow_provider_stableaudio.emulator", *options.split()]
    proc = subprocess.Popen(
        [*command, "--port-file", str(port_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not port_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the emulator did not write its port file"
            time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", int(port_file.read_text()), timeout=5)
        conn.request("POST", PATH, body=json.dumps(BODY), headers={"Authorization": "Bearer k"})
        response = conn.getresponse()
        assert (response.status, response.headers["Retry-After"]) == (429, "0")
        response.read()
        conn.request("GET", "/_emulator/config")
        config = json.load(conn.getresponse())
        conn.close()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    expected: dict[str, Any] = {
        "rate_429": 1.0,
        "rate_5xx": 0.1,
        "rate_generation_error": 0.5,
        "rate_download_404": 0.2,
    }
    expected |= {"rate_download_truncated": 0.3, "rate_post_lost_response": 0.4, "retry_after": 0}
    expected |= {"slow_seconds": 2.0, "seed": 5, "fault_methods": ["POST"]}
    assert {k: config[k] for k in expected} == expected


def test_cli_rejects_bad_fault_flags() -> None:
    command = [sys.executable, "-m", "airflow_provider_stableaudio.emulator", "--rate-drop", "1.5"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=15, check=False)
    assert result.returncode == 2
    assert "--rate-drop: must be a number from 0 to 1" in result.stderr
