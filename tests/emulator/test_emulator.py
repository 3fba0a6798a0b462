"""Tests of the Stable Audio emulator alone, through real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import wave
from array import array
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_stableaudio.emulator import EmulatorConfig, EmulatorServer, build_app, synthesize_wav
from airflow_provider_stableaudio.emulator.audio import wav_size

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY = "test-key-0123456789"
PATH = "/v2/generate/audio"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(config=EmulatorConfig(generation_seconds=0.5, api_keys=frozenset({KEY}))) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer) -> None:
    server.reset()
    server.set_generation_seconds(0.5)


def call(
    server: EmulatorServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = KEY,
    raw: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Make one request; return (status, headers, body) for success and error statuses alike."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    url = path if path.startswith("http") else server.base_url + path
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def create(server: EmulatorServer, prompt: str = "calm piano", **fields: Any) -> dict[str, Any]:
    status, _, body = call(server, "POST", PATH, {"model": "stable-audio", "prompt": prompt, **fields})
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def poll(server: EmulatorServer, generation_id: str) -> dict[str, Any]:
    status, _, body = call(server, "GET", f"{PATH}?generation_id={urllib.parse.quote(generation_id)}")
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def completed(server: EmulatorServer, prompt: str = "calm piano", **fields: Any) -> dict[str, Any]:
    server.set_generation_seconds(0)
    return poll(server, create(server, prompt, **fields)["id"])


def download(server: EmulatorServer, url: str) -> tuple[int, dict[str, str], bytes]:
    return call(server, "GET", url, key=None)  # the CDN URL needs no auth


def assert_envelope(body: bytes, status: int, path: str) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(body)
    assert set(envelope) == {"message", "path", "requestId", "statusCode", "timestamp"}
    assert envelope["statusCode"] == status
    assert envelope["path"] == path
    assert uuid.UUID(envelope["requestId"]).version == 4
    assert datetime.fromisoformat(envelope["timestamp"].replace("Z", "+00:00")).utcoffset() is not None
    return envelope


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "wrong-secret-key-42", ""])
def test_create_rejects_missing_or_wrong_key(server: EmulatorServer, key: str | None) -> None:
    status, _, body = call(server, "POST", PATH, {"model": "stable-audio", "prompt": "x"}, key=key)
    assert status == 401
    assert assert_envelope(body, 401, PATH)["message"] == "Unauthorized"
    assert b"wrong-secret-key-42" not in body
    assert server.ledger()["generations"] == []


def test_poll_requires_key(server: EmulatorServer) -> None:
    generation_id = create(server)["id"]
    status, _, body = call(server, "GET", f"{PATH}?generation_id={generation_id}", key="nope-key")
    assert status == 401
    assert_envelope(body, 401, PATH)
    assert server.ledger()["generations"][0]["polls"] == 0


def test_any_key_accepted_when_no_keys_configured() -> None:
    with EmulatorServer(config=EmulatorConfig(generation_seconds=0)) as srv:
        status, _, _ = call(srv, "POST", PATH, {"model": "stable-audio", "prompt": "x"}, key="anything")
        assert status == 200
        status, _, _ = call(srv, "POST", PATH, {"model": "stable-audio", "prompt": "x"}, key=None)
        assert status == 401


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"prompt": None}, "prompt: Required"),
        ({"prompt": "   "}, "prompt: String must contain at least 1"),
        ({"prompt": 5}, "prompt: Expected string"),
        ({"model": None}, "model: Required"),
        ({"model": "google/lyria2"}, "model: Invalid literal value"),
        ({"seconds_total": 48}, "seconds_total: Number must be less than or equal to 47"),
        ({"seconds_total": 0}, "seconds_total: Number must be greater than or equal to 1"),
        ({"seconds_total": 2.5}, "seconds_total: Expected integer"),
        ({"steps": 0}, "steps: Number must be greater than or equal to 1"),
        ({"steps": 1001}, "steps: Number must be less than or equal to 1000"),
        ({"steps": True}, "steps: Expected number, received boolean"),
        ({"steps": "100"}, "steps: Expected number, received string"),
        ({"seed": 1}, "'seed'"),
        ({"seconds_start": -1}, "seconds_start: Number must be greater than or equal to 0"),
        ({"seconds_total": 10, "seconds_start": 11}, "seconds_start: Number must be less than or equal"),
    ],
)
def test_create_rejects_invalid_body(server: EmulatorServer, fields: dict[str, Any], expected: str) -> None:
    # A None value here means "leave the field out".
    body = {k: v for k, v in {"model": "stable-audio", "prompt": "x", **fields}.items() if v is not None}
    status, _, raw = call(server, "POST", PATH, body)
    assert status == 400
    assert expected in assert_envelope(raw, 400, PATH)["message"]
    assert server.ledger()["generations"] == []


def test_create_rejects_non_object_body(server: EmulatorServer) -> None:
    status, _, raw = call(server, "POST", PATH, [1, 2])
    assert status == 400
    assert assert_envelope(raw, 400, PATH)["message"] == "Expected object, received array"
    assert server.ledger()["generations"] == []


def test_create_rejects_malformed_json(server: EmulatorServer) -> None:
    status, _, raw = call(server, "POST", PATH, raw=b"{not json")
    assert status == 400
    assert "Invalid JSON" in assert_envelope(raw, 400, PATH)["message"]


def test_create_accepts_valid_bodies(server: EmulatorServer) -> None:
    body = create(server)
    token, _, model = body["id"].partition(":")
    assert model == "stable-audio"
    assert uuid.UUID(token).version == 4
    assert body == {"id": body["id"], "status": "queued", "meta": {"usage": {"credits_used": 25200}}}
    assert create(server, steps=10)["meta"]["usage"]["credits_used"] == 2520
    create(server, seconds_total=47, seconds_start=47, steps=1000)
    create(server, seconds_total=1, seconds_start=0)
    generations = server.ledger()["generations"]
    assert [(g["seconds_total"], g["seconds_start"], g["steps"]) for g in generations] == [
        (30, None, 100),
        (30, None, 10),
        (47, 47, 1000),
        (1, 0, 100),
    ]


# --- polling --------------------------------------------------------------------------------


def test_status_follows_elapsed_time(server: EmulatorServer) -> None:
    server.set_generation_seconds(1.0)
    generation_id = create(server)["id"]
    started = time.monotonic()
    seen: list[str] = []
    while time.monotonic() - started < 10:
        body = poll(server, generation_id)
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        if body["status"] == "completed":
            break
        assert body == {"id": generation_id, "status": body["status"], "audio_file": None, "error": None}
        time.sleep(0.05)
    assert seen == ["queued", "generating", "completed"]
    assert time.monotonic() - started >= 1.0


def test_status_boundaries_use_the_current_config(server: EmulatorServer) -> None:
    server.set_generation_seconds(100)
    generation_id = create(server)["id"]
    assert poll(server, generation_id)["status"] == "queued"
    time.sleep(0.3)
    server.set_generation_seconds(1.0)  # 0.2 s <= elapsed < 1 s
    assert poll(server, generation_id)["status"] == "generating"
    server.set_generation_seconds(0.01)
    assert poll(server, generation_id)["status"] == "completed"
    server.set_generation_seconds(100)  # completion is final
    assert poll(server, generation_id)["status"] == "completed"


def test_completed_body(server: EmulatorServer) -> None:
    body = completed(server, seconds_total=3, steps=7)
    token = body["id"].split(":")[0]
    assert body == {
        "id": body["id"],
        "status": "completed",
        "audio_file": {
            "url": f"{server.base_url}/files/{token}.wav",
            "content_type": "audio/wav",
            "file_name": f"{token}.wav",
            "file_size": 44 + 3 * 44100 * 4,
        },
        "error": None,
        "meta": {"usage": {"credits_used": 252 * 7}},
    }


def test_public_base_url_is_used_for_audio_urls() -> None:
    config = EmulatorConfig(generation_seconds=0, public_base_url="https://cdn.example.test/x/")
    with EmulatorServer(config=config) as srv:
        body = poll(srv, create(srv)["id"])
        assert body["audio_file"]["url"].startswith("https://cdn.example.test/x/files/")


def test_poll_errors(server: EmulatorServer) -> None:
    unknown = f"{uuid.uuid4()}:stable-audio"
    status, _, raw = call(server, "GET", f"{PATH}?generation_id={unknown}")
    assert status == 404
    assert assert_envelope(raw, 404, PATH)["message"] == "Generation not found"
    status, _, raw = call(server, "GET", PATH)
    assert status == 400
    assert "generation_id" in assert_envelope(raw, 400, PATH)["message"]


def test_error_marker_ends_in_error(server: EmulatorServer) -> None:
    server.set_generation_seconds(100)
    generation_id = create(server, "drums [emulator:error] please")["id"]
    assert poll(server, generation_id)["status"] == "queued"
    server.set_generation_seconds(0)
    body = poll(server, generation_id)
    assert body == {
        "id": generation_id,
        "status": "error",
        "audio_file": None,
        "error": {"name": "GenerationError", "message": "The model failed to generate audio for this prompt"},
    }
    status, _, _ = download(server, f"/files/{generation_id.split(':')[0]}.wav")
    assert status == 404


# --- files ----------------------------------------------------------------------------------


def test_download_is_a_correct_wav(server: EmulatorServer) -> None:
    audio = completed(server, "ambient synth pads", seconds_total=47)["audio_file"]
    status, headers, data = download(server, audio["url"])
    assert status == 200
    assert headers["Content-Type"] == "audio/wav"
    assert int(headers["Content-Length"]) == audio["file_size"] == len(data) == wav_size(47)
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 44100)
        assert wav.getnframes() / wav.getframerate() == 47
        frames = wav.readframes(wav.getnframes())
    assert len(frames) == 47 * 44100 * 4
    assert data == synthesize_wav("ambient synth pads", 47)


def test_download_not_ready_or_unknown(server: EmulatorServer) -> None:
    server.set_generation_seconds(100)
    token = create(server)["id"].split(":")[0]
    status, _, raw = download(server, f"/files/{token}.wav")
    assert status == 404
    assert_envelope(raw, 404, f"/files/{token}.wav")
    status, _, _ = download(server, f"/files/{uuid.uuid4()}.wav")
    assert status == 404
    server.set_generation_seconds(0)
    status, _, _ = download(server, f"/files/{token}.wav")
    assert status == 200


def test_same_prompt_same_bytes_different_prompt_different_bytes(server: EmulatorServer) -> None:
    first = download(server, completed(server, "lofi beat", seconds_total=2)["audio_file"]["url"])[2]
    again = download(server, completed(server, "lofi beat", seconds_total=2)["audio_file"]["url"])[2]
    other = download(server, completed(server, "lofi beats", seconds_total=2)["audio_file"]["url"])[2]
    assert first == again
    assert len(first) == len(other)
    assert first != other


def _channels(data: bytes) -> tuple[array[int], array[int]]:
    with wave.open(io.BytesIO(data)) as wav:
        samples = array("h", wav.readframes(wav.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples[0::2], samples[1::2]


def _rms(samples: array[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples))


@pytest.mark.parametrize("prompt", ["calm piano", "", "épique orchestre 🎻", "x" * 5000])
def test_synthesis_is_audible_stereo_near_minus_6_dbfs(prompt: str) -> None:
    left, right = _channels(synthesize_wav(prompt, 3))
    assert len(left) == len(right) == 3 * 44100
    assert _rms(left) > 2000  # not silence (full scale is 32767)
    assert _rms(right) > 2000
    peak = max(max(map(abs, left)), max(map(abs, right)))
    assert 0.4 * 32768 < peak <= 0.55 * 32768  # about -6 dBFS, never clipping
    assert left != right  # panned, not dual mono
    # Tones, not noise: neighbouring samples are correlated (white noise gives about 1.13).
    assert sum(abs(a - b) for a, b in pairwise(left)) / len(left) < 0.5 * _rms(left)


@pytest.mark.parametrize("seconds", [1, 7, 47])
def test_synthesis_has_exact_duration_and_is_fast(seconds: int) -> None:
    started = time.perf_counter()
    data = synthesize_wav("a long prompt " * 10, seconds)
    elapsed = time.perf_counter() - started
    assert len(data) == wav_size(seconds)
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getnframes() == seconds * 44100
    assert elapsed < 0.5


# --- ledger, reset and admin ----------------------------------------------------------------


def test_ledger_counts_everything(server: EmulatorServer) -> None:
    call(server, "POST", PATH, {"model": "stable-audio", "prompt": "x"}, key=None)
    call(server, "POST", PATH, {"model": "stable-audio", "prompt": "x", "steps": 0})
    generation_id = create(server, "counted", seconds_total=2, steps=5)["id"]
    server.set_generation_seconds(0)
    poll(server, generation_id)
    audio = poll(server, generation_id)["audio_file"]
    download(server, audio["url"])
    call(server, "GET", "/no/such/route")
    call(server, "GET", f"{PATH}?generation_id=missing")

    ledger = server.ledger()
    (generation,) = ledger["generations"]
    assert generation["id"] == generation_id
    assert generation["prompt"] == "counted"
    assert generation["model"] == "stable-audio"
    assert (generation["seconds_total"], generation["seconds_start"], generation["steps"]) == (2, None, 5)
    assert (generation["status"], generation["polls"], generation["downloads"]) == ("completed", 2, 1)
    assert generation["bytes_served"] == audio["file_size"]
    assert generation["complete_downloads"] == 1
    assert generation["sha256"] == hashlib.sha256(synthesize_wav("counted", 2)).hexdigest()
    assert datetime.fromisoformat(generation["created_at"].replace("Z", "+00:00"))
    file_path = f"/files/{generation_id.split(':')[0]}.wav"
    assert [(r["method"], r["path"], r["status"]) for r in ledger["requests"]] == [
        ("POST", PATH, 401),
        ("POST", PATH, 400),
        ("POST", PATH, 200),
        ("GET", PATH, 200),
        ("GET", PATH, 200),
        ("GET", file_path, 200),
        ("GET", "/no/such/route", 404),
        ("GET", PATH, 404),
    ]
    assert {r["fault"] for r in ledger["requests"]} == {None}
    status, _, raw = call(server, "GET", "/_emulator/ledger", key=None)
    assert status == 200
    assert json.loads(raw) == ledger  # admin calls are not recorded


def test_reset_forgets_everything(server: EmulatorServer) -> None:
    generation_id = create(server)["id"]
    status, _, _ = call(server, "POST", "/_emulator/reset", key=None)
    assert status == 200
    ledger = server.ledger()
    assert (ledger["generations"], ledger["requests"]) == ([], [])
    assert set(ledger["faults"].values()) == {0}
    status, _, _ = call(server, "GET", f"{PATH}?generation_id={generation_id}")
    assert status == 404


def test_config_endpoint(server: EmulatorServer) -> None:
    status, _, raw = call(server, "POST", "/_emulator/config", {"generation_seconds": 0}, key=None)
    assert status == 200
    assert json.loads(raw)["generation_seconds"] == 0
    assert poll(server, create(server)["id"])["status"] == "completed"
    for bad in ({"generation_seconds": -1}, {"generation_seconds": "fast"}, {"nope": 1}):
        status, _, _ = call(server, "POST", "/_emulator/config", bad, key=None)
        assert status == 400
    status, _, raw = call(server, "POST", "/_emulator/config", {"api_keys": ["other-key"]}, key=None)
    assert status == 200
    assert b"other-key" not in raw
    try:
        assert call(server, "POST", PATH, {"model": "stable-audio", "prompt": "x"})[0] == 401
        assert call(server, "POST", PATH, {"model": "stable-audio", "prompt": "x"}, key="other-key")[0] == 200
    finally:
        call(server, "POST", "/_emulator/config", {"api_keys": [KEY]}, key=None)


def test_unknown_route_and_method(server: EmulatorServer) -> None:
    status, _, raw = call(server, "DELETE", PATH)
    assert status == 404
    assert assert_envelope(raw, 404, PATH)["message"] == f"Cannot DELETE {PATH}"


# --- server lifecycle and CLI ---------------------------------------------------------------


def test_server_start_fails_on_a_busy_port(server: EmulatorServer) -> None:
    other = EmulatorServer(port=server.port)
    with pytest.raises(RuntimeError, match="could not listen"):
        other.start()
    other.stop()


def test_server_stop_is_idempotent() -> None:
    srv = EmulatorServer(config=EmulatorConfig(generation_seconds=0))
    srv.start()
    url = srv.base_url
    srv.stop()
    srv.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/_emulator/ledger", timeout=2)


def test_build_app_returns_an_application() -> None:
    from aiohttp import web

    assert isinstance(build_app(EmulatorConfig()), web.Application)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_and_stops_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    options = f"--host 127.0.0.1 --port 0 --generation-seconds 0 --api-key {KEY} --api-key second"
    command = [sys.executable, "-m", "airflow_provider_stableaudio.emulator", *options.split()]
    command += ["--port-file", str(port_file)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while not port_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the emulator did not write its port file"
            time.sleep(0.05)
        port = int(port_file.read_text())
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{PATH}",
            data=json.dumps({"model": "stable-audio", "prompt": "cli"}).encode(),
            headers={"Authorization": "Bearer second", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
            assert json.load(response)["status"] == "queued"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert stdout.splitlines() == [f"Stable Audio emulator listening on http://127.0.0.1:{port}"]
    assert list(tmp_path.iterdir()) == [port_file]  # no temp file left behind
