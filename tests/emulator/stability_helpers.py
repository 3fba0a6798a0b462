"""Plain-HTTP helpers for the tests of the emulator's Stability routes (requests on 127.0.0.1)."""

from __future__ import annotations

import http.client
import io
import json
import sys
import wave
from array import array
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from airflow_provider_stableaudio.emulator import EmulatorServer

KEY = "test-key-0123456789"
SUBMIT = "/v2beta/audio/stable-audio/"
SYNC = "/v2beta/audio/stable-audio-2/"
RESULTS = "/v2beta/audio/results/"
BALANCE = "/v1/user/balance"
RATE = 44100


def headers(key: str | None = KEY, accept: str | None = None) -> dict[str, str]:
    result = {}
    if key is not None:
        result["Authorization"] = f"Bearer {key}"
    if accept is not None:
        result["Accept"] = accept
    return result


def form(fields: dict[str, Any], audio: bytes | None = None, file_name: str = "input.wav") -> list[Any]:
    """``requests``' ``files=`` for a multipart body: text fields, then the file ``audio``."""
    parts: list[Any] = [(name, (None, str(value))) for name, value in fields.items()]
    if audio is not None:
        parts.append(("audio", (file_name, audio, "application/octet-stream")))
    return parts


def post(
    server: EmulatorServer,
    path: str,
    fields: dict[str, Any],
    audio: bytes | None = None,
    *,
    key: str | None = KEY,
    accept: str | None = None,
    timeout: float = 10,
) -> requests.Response:
    return requests.post(
        server.base_url + path,
        files=form(fields, audio),
        headers=headers(key, accept),
        timeout=timeout,
    )


def get(
    server: EmulatorServer,
    path: str,
    *,
    key: str | None = KEY,
    accept: str | None = None,
    timeout: float = 10,
) -> requests.Response:
    return requests.get(server.base_url + path, headers=headers(key, accept), timeout=timeout)


def submit(
    server: EmulatorServer, mode: str = "text-to-audio", audio: bytes | None = None, **fields: Any
) -> str:
    """Submit a Stable Audio 3 generation (prompt and a short wav by default); return its id."""
    body = {"prompt": "calm piano", "duration": 2, "output_format": "wav", **fields}
    response = post(server, SUBMIT + mode, body, audio)
    assert response.status_code == 202, response.text
    generation_id: str = response.json()["id"]
    return generation_id


def result(server: EmulatorServer, generation_id: str, *, accept: str | None = None) -> requests.Response:
    return get(server, RESULTS + generation_id, accept=accept)


def raw(
    server: EmulatorServer, prepared: requests.PreparedRequest
) -> tuple[int, dict[str, str], bytes, bool]:
    """Send a prepared request on a fresh connection: (status, headers, body, whether it was complete)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        path = prepared.path_url
        body = prepared.body if isinstance(prepared.body, bytes) else None
        conn.request(prepared.method or "GET", path, body=body, headers=dict(prepared.headers))
        response = conn.getresponse()
        try:
            data, complete = response.read(), True
        except http.client.IncompleteRead as exc:
            data, complete = exc.partial, False
        return response.status, dict(response.headers), data, complete
    finally:
        conn.close()


def prepare(
    server: EmulatorServer, method: str, path: str, fields: dict[str, Any] | None = None
) -> requests.PreparedRequest:
    files = form(fields) if fields is not None else None
    return requests.Request(method, server.base_url + path, files=files, headers=headers()).prepare()


def error(response: requests.Response, status: int, name: str | None = None) -> list[str]:
    """Check Stability's error envelope; return its messages."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"id", "name", "errors"}
    assert len(body["id"]) == 32
    assert int(body["id"], 16) >= 0
    if name is not None:
        assert body["name"] == name
    assert body["errors"]
    assert all(isinstance(message, str) for message in body["errors"])
    errors: list[str] = body["errors"]
    return errors


def pcm(wav_bytes: bytes) -> tuple[int, int, array[int]]:
    """(channels, sample rate, interleaved 16-bit samples) of a WAV file."""
    with wave.open(io.BytesIO(wav_bytes)) as reader:
        assert reader.getsampwidth() == 2
        samples = array("h", reader.readframes(reader.getnframes()))
        channels, rate = reader.getnchannels(), reader.getframerate()
    if sys.byteorder == "big":
        samples.byteswap()
    return channels, rate, samples


def make_wav(samples: array[int], *, channels: int = 2, rate: int = RATE) -> bytes:
    """A 16-bit PCM WAV of interleaved ``samples``."""
    data = array("h", samples)
    if sys.byteorder == "big":
        data.byteswap()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(data.tobytes())
    return buffer.getvalue()


def stability_ledger(server: EmulatorServer) -> dict[str, Any]:
    ledger: dict[str, Any] = server.ledger()["stability"]
    json.dumps(ledger)  # the admin route serves it as JSON
    return ledger
