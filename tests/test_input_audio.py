"""The input clip: checked before anything is paid for (exists, mp3 or wav, size), then streamed."""

from __future__ import annotations

import io
import os
import wave
from pathlib import Path
from typing import Any

import fsspec
import pytest

from airflow_provider_stableaudio.exceptions import StableAudioValidationError
from airflow_provider_stableaudio.input_audio import MAX_INPUT_BYTES, InputAudio, sniff_content_type

MP3_ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(400)
MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(400)


def wav_bytes(frames: int = 800) -> bytes:
    """A valid mono 16-bit WAV of ``frames`` silent frames."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(2 * frames))
    return buffer.getvalue()


def write_wav(path: Path, frames: int = 800) -> Path:
    path.write_bytes(wav_bytes(frames))
    return path


def sparse_wav(path: Path, size: int) -> Path:
    """A file of ``size`` bytes starting with a WAV header, without writing them all (sparse)."""
    path.write_bytes(wav_bytes(8))
    os.truncate(path, size)
    return path


class DuckStoragePath:
    """What InputAudio needs of an ``ObjectStoragePath``: ``.fs``, ``.path`` and ``str()``."""

    def __init__(self, fs: Any, path: str, uri: str) -> None:
        self.fs, self.path, self.uri = fs, path, uri

    def __str__(self) -> str:
        return self.uri


def rejected(value: Any) -> str:
    with pytest.raises(StableAudioValidationError) as caught:
        InputAudio.open(value)
    assert caught.value.field == "init_audio"
    return str(caught.value)


def test_a_local_wav_is_described_by_location_size_name_and_type(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "loop.wav")
    audio = InputAudio.open(str(path))
    assert (audio.location, audio.size, audio.file_name, audio.content_type) == (
        str(path),
        path.stat().st_size,
        "loop.wav",
        "audio/wav",
    )


@pytest.mark.parametrize(
    ("head", "content_type"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"ID3\x04\x00", "audio/mpeg"),
        (b"\xff\xfb\x90\x64", "audio/mpeg"),  # MPEG-1 layer III
        (b"\xff\xf3\x90\x64", "audio/mpeg"),  # MPEG-2 layer III
        (b"\xff\xe3\x90\x64", "audio/mpeg"),  # MPEG-2.5
        (b"RIFF\x24\x00\x00\x00AVI LIST", None),  # RIFF, but a video
        (b"\xff\xd8\xff\xe0", None),  # JPEG: 0xFF then 0xD8 is no frame sync
        (b"fLaC\x00\x00", None),
        (b"OggS\x00\x02", None),
        (b"", None),
    ],
)
def test_the_type_comes_from_the_first_bytes(head: bytes, content_type: str | None) -> None:
    assert sniff_content_type(head) == content_type


@pytest.mark.parametrize("content", [MP3_ID3, MP3_FRAME], ids=["id3 tag", "frame sync"])
def test_an_mp3_is_audio_mpeg_whatever_its_name(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "take-3.bin"
    path.write_bytes(content)
    assert InputAudio.open(path).content_type == "audio/mpeg"


def test_a_path_object_and_a_file_uri_are_local_files(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav")
    assert InputAudio.open(path).size == path.stat().st_size
    audio = InputAudio.open(f"file://{path}")
    assert (audio.location, audio.file_name) == (f"file://{path}", "a.wav")


def test_a_uri_goes_through_fsspec() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/clips/week-41.wav", wav_bytes())
    try:
        audio = InputAudio.open("memory://clips/week-41.wav")
        assert (audio.location, audio.file_name, audio.content_type) == (
            "memory://clips/week-41.wav",
            "week-41.wav",
            "audio/wav",
        )
        assert b"".join(audio.chunks()) == wav_bytes()
    finally:
        fs.rm("/clips", recursive=True)


def test_an_object_storage_path_is_read_through_its_own_filesystem() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/in.mp3", MP3_FRAME)
    try:
        audio = InputAudio.open(DuckStoragePath(fs, "/bucket/in.mp3", "s3://conn@bucket/in.mp3"))
        assert (audio.location, audio.file_name, audio.size) == (
            "s3://conn@bucket/in.mp3",
            "in.mp3",
            len(MP3_FRAME),
        )
        assert b"".join(audio.chunks()) == MP3_FRAME
    finally:
        fs.rm("/bucket", recursive=True)


def test_airflows_object_storage_path_is_taken(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    path = write_wav(tmp_path / "b.wav")
    audio = InputAudio.open(ObjectStoragePath(f"file://{path}"))
    assert (audio.file_name, audio.size, audio.content_type) == ("b.wav", path.stat().st_size, "audio/wav")


def test_an_input_audio_passes_as_it_is(tmp_path: Path) -> None:
    audio = InputAudio.open(write_wav(tmp_path / "c.wav"))
    assert InputAudio.open(audio) is audio


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    message = rejected(str(tmp_path / "nope.wav"))
    assert message == f"init_audio {str(tmp_path / 'nope.wav')!r} does not exist"


def test_a_missing_uri_is_named() -> None:
    assert "'memory://nowhere/x.wav' does not exist" in rejected("memory://nowhere/x.wav")


def test_a_folder_is_not_a_clip(tmp_path: Path) -> None:
    assert "is a folder" in rejected(tmp_path)


def test_a_clip_over_50_mb_is_refused_with_its_size_and_the_limit(tmp_path: Path) -> None:
    path = sparse_wav(tmp_path / "huge.wav", MAX_INPUT_BYTES + 1)
    message = rejected(path)
    assert "is 50,000,001 bytes; the limit is 50 MB (50,000,000 bytes)" in message


def test_a_clip_of_exactly_50_mb_is_taken(tmp_path: Path) -> None:
    assert InputAudio.open(sparse_wav(tmp_path / "limit.wav", MAX_INPUT_BYTES)).size == MAX_INPUT_BYTES


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        (b"just some notes about the mix\n", "b'just some no'"),
        (b"fLaC\x00\x00\x00\x22", "b'fLaC"),
        (b"", "b''"),
    ],
    ids=["text", "flac", "empty"],
)
def test_a_file_that_is_not_mp3_or_wav_is_refused(tmp_path: Path, content: bytes, shown: str) -> None:
    path = tmp_path / "clip.wav"
    path.write_bytes(content)
    message = rejected(path)
    assert "is not mp3 or wav audio" in message
    assert shown in message
    assert "'RIFF....WAVE', 'ID3' or an MPEG frame sync" in message


@pytest.mark.parametrize("value", [42, "", "   ", ["a.wav"]])
def test_a_value_that_is_no_location_is_refused(value: Any) -> None:
    message = rejected(value)
    assert "init_audio must be a local path, a URI or an ObjectStoragePath" in message
    assert type(value).__name__ in message


def test_a_scheme_without_a_filesystem_is_named() -> None:
    message = rejected("nosuchscheme://bucket/a.wav")
    assert "'nosuchscheme://bucket/a.wav': no filesystem for this scheme" in message


def test_chunks_cover_the_file_and_start_anew_on_each_call(tmp_path: Path) -> None:
    content = wav_bytes(5000)
    audio = InputAudio.open(write_wav(tmp_path / "d.wav", 5000))
    first = list(audio.chunks(1000))
    assert b"".join(first) == content
    assert all(len(chunk) <= 1000 for chunk in first)
    assert len(first) == -(-len(content) // 1000)
    assert b"".join(audio.chunks(1000)) == content  # a retry sends it again


def test_chunks_never_read_the_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    audio = InputAudio.open(write_wav(tmp_path / "e.wav", 20000))
    reads: list[int] = []

    class Recording(io.FileIO):
        def read(self, size: int | None = -1) -> bytes:
            reads.append(-1 if size is None else size)
            return super().read(size)

    monkeypatch.setattr(audio.fs, "open", lambda path, mode="rb", **kw: Recording(path, "r"))
    assert b"".join(audio.chunks(4096)) == wav_bytes(20000)
    assert all(0 < size <= 4096 for size in reads)
    assert len(reads) > 2


def test_a_clip_that_shrank_after_the_check_fails_the_send(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "f.wav")
    audio = InputAudio.open(path)
    os.truncate(path, audio.size - 10)
    with pytest.raises(
        StableAudioValidationError, match=r"changed while being sent: checked at 1,644 bytes, now 1,634"
    ):
        b"".join(audio.chunks())


def test_a_clip_that_grew_after_the_check_fails_the_send(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "g.wav")
    audio = InputAudio.open(path)
    with path.open("ab") as file:
        file.write(b"more")
    with pytest.raises(
        StableAudioValidationError, match="changed while being sent: checked at 1,644 bytes, now more"
    ):
        b"".join(audio.chunks())
