"""The multipart body: byte-for-byte valid, of exact length, streamed from storage, sent again on retry."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import threading
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import requests
from aiohttp import web

from airflow_provider_stableaudio import multipart
from airflow_provider_stableaudio.input_audio import InputAudio
from airflow_provider_stableaudio.multipart import MultipartBody
from tests.test_input_audio import wav_bytes, write_wav

if TYPE_CHECKING:
    from collections.abc import Iterator

FIELDS = [
    ("model", "stable-audio-3"),
    ("prompt", "warm analog pads"),
    ("duration", "20"),
    ("strength", "0.5"),
]


def email_parts(body: MultipartBody) -> list[tuple[str | None, str | None, str, bytes]]:
    """``(name, filename, content type, payload)`` of each part, as the standard library parses the body."""
    raw = f"Content-Type: {body.content_type}\r\n\r\n".encode() + b"".join(body.iter_chunks())
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    assert message.is_multipart()
    assert not message.defects
    return [
        (
            part.get_param("name", header="content-disposition"),
            part.get_filename(),
            part.get_content_type(),
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    ]


class Receiver:
    """An aiohttp server on loopback (the emulator's framework) that parses what it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = web.AppRunner(self._app())
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def _app(self) -> web.Application:
        async def receive(request: web.Request) -> web.Response:
            parts = []
            reader = await request.multipart()
            async for part in reader:
                assert isinstance(part, aiohttp.BodyPartReader)  # not a nested multipart
                parts.append((part.name, part.filename, part.headers.get("Content-Type"), await part.read()))
            self.received.append({"headers": dict(request.headers), "parts": parts})
            return web.json_response({"ok": True})

        app = web.Application(client_max_size=1 << 30)
        app.router.add_post("/upload", receive)
        return app

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/upload"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def test_fields_and_file_parse_back_exactly(tmp_path: Path) -> None:
    audio = InputAudio.open(write_wav(tmp_path / "in.wav", 3000))
    body = MultipartBody(FIELDS, "audio", audio)
    assert email_parts(body) == [
        *((name, None, "text/plain", value.encode()) for name, value in FIELDS),
        ("audio", "in.wav", "audio/wav", wav_bytes(3000)),
    ]


def test_content_length_is_the_exact_length(tmp_path: Path) -> None:
    audio = InputAudio.open(write_wav(tmp_path / "in.wav", 3000))
    for body in (MultipartBody(FIELDS, "audio", audio), MultipartBody(FIELDS), MultipartBody([])):
        assert (
            len(b"".join(body.iter_chunks())) == body.content_length == len(body) == len(body.iter_chunks())
        )


def test_a_body_without_a_file_is_valid() -> None:
    body = MultipartBody([("model", "stable-audio-2.5"), ("prompt", "x")])
    assert email_parts(body) == [
        ("model", None, "text/plain", b"stable-audio-2.5"),
        ("prompt", None, "text/plain", b"x"),
    ]


def test_the_content_type_names_the_boundary_the_body_uses() -> None:
    body = MultipartBody(FIELDS)
    assert body.content_type == f"multipart/form-data; boundary={body.boundary}"
    raw = b"".join(body.iter_chunks())
    assert raw.startswith(f"--{body.boundary}\r\n".encode())
    assert raw.endswith(f"\r\n--{body.boundary}--\r\n".encode())


def test_text_that_looks_like_multipart_survives(tmp_path: Path) -> None:
    tricky = 'a "quoted" prompt,\r\nover two lines -- with dashes, ünïcödé and 🎷'
    audio = InputAudio.open(write_wav(tmp_path / 'take "2".wav'))
    body = MultipartBody([("prompt", tricky)], "audio", audio)
    (name, _, _, value), (file_field, file_name, _, payload) = email_parts(body)
    assert (name, value.decode()) == ("prompt", tricky)
    assert file_field == "audio"
    assert file_name == "take %222%22.wav"  # quotes percent-encoded, as browsers send them
    assert payload == wav_bytes()


def test_the_boundary_never_occurs_in_a_field(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = iter(["0" * 32, "1" * 32])
    monkeypatch.setattr(multipart.secrets, "token_hex", lambda n: next(tokens))
    body = MultipartBody([("prompt", "stableaudio-" + "0" * 32)])
    assert body.boundary == "stableaudio-" + "1" * 32
    assert email_parts(body) == [("prompt", None, "text/plain", ("stableaudio-" + "0" * 32).encode())]


def test_iterating_again_reads_the_file_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    audio = InputAudio.open(write_wav(tmp_path / "in.wav", 3000))
    opened: list[str] = []
    real_open = audio.fs.open
    monkeypatch.setattr(
        audio.fs, "open", lambda path, *a, **kw: opened.append(path) or real_open(path, *a, **kw)
    )
    body = MultipartBody(FIELDS, "audio", audio)
    first, second = b"".join(body), b"".join(body.iter_chunks())
    assert first == second
    assert len(first) == body.content_length
    assert len(opened) == 2


def test_the_file_is_streamed_in_chunks(tmp_path: Path) -> None:
    audio = InputAudio.open(write_wav(tmp_path / "in.wav", 40_000))  # 80 kB of samples
    body = MultipartBody(FIELDS, "audio", audio, chunk_size=4096)
    chunks = list(body.iter_chunks())
    file_chunks = chunks[1:-1]
    assert len(file_chunks) == -(-audio.size // 4096)
    assert all(len(chunk) <= 4096 for chunk in file_chunks)


def test_sending_a_large_file_holds_only_a_chunk_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.wav"
    path.write_bytes(wav_bytes(8))
    with path.open("ab") as file:
        for _ in range(24):
            file.write(bytes(1 << 20))  # 24 MB
    body = MultipartBody(FIELDS, "audio", InputAudio.open(path))
    tracemalloc.start()
    try:
        sent = sum(len(chunk) for chunk in body.iter_chunks())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sent == body.content_length
    assert peak < 2 << 20, f"peak {peak:,} bytes: the file was read whole"


SENDS = {
    "the body": lambda body: {"data": body, "headers": {"Content-Type": body.content_type}},
    "its chunks, length by hand": lambda body: {
        "data": body.iter_chunks(),
        "headers": {"Content-Type": body.content_type, "Content-Length": str(body.content_length)},
    },
}


@pytest.mark.parametrize("send", SENDS.values(), ids=SENDS.keys())
def test_requests_sends_it_with_its_length_and_aiohttp_parses_it(
    tmp_path: Path, receiver: Receiver, send: Any
) -> None:
    audio = InputAudio.open(write_wav(tmp_path / "loop.wav", 50_000))
    body = MultipartBody(FIELDS, "audio", audio)
    response = requests.post(receiver.url, **send(body), timeout=30)
    assert response.status_code == 200
    seen = receiver.received[-1]
    assert seen["headers"]["Content-Length"] == str(body.content_length)
    assert "Transfer-Encoding" not in seen["headers"]  # no chunked encoding beside the length
    assert seen["parts"] == [
        *((name, None, None, value.encode()) for name, value in FIELDS),
        ("audio", "loop.wav", "audio/wav", wav_bytes(50_000)),
    ]


def test_a_file_field_without_a_file_sends_no_file_part() -> None:
    # What a text-to-audio request (init_audio None) sends with file_field="audio".
    body = MultipartBody([("prompt", "x")], "audio", None)
    assert email_parts(body) == [("prompt", None, "text/plain", b"x")]
    assert len(b"".join(body)) == body.content_length


def test_a_file_without_a_field_name_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a file needs file_field"):
        MultipartBody(FIELDS, file=InputAudio.open(write_wav(tmp_path / "a.wav")))
