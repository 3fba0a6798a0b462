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
from airflow_provider_stableaudio.input_audio import (
    MAX_INPUT_BYTES,
    InputAudio,
    InputAudioLimits,
    sniff_content_type,
)

STABLE_AUDIO_3 = InputAudioLimits("stable-audio-3", max_bytes=100 * 10**6, min_seconds=6, max_seconds=380)
STABLE_AUDIO_25 = InputAudioLimits("stable-audio-2.5", max_bytes=50 * 10**6, min_seconds=6, max_seconds=190)

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


def timed_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    """A real mono 8-bit WAV of ``seconds`` (8 kB a second at 8 kHz: 190 s is 1.5 MB)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(rate)
        out.writeframes(b"\x80" * round(seconds * rate))
    path.write_bytes(buffer.getvalue())
    return path


def sparse_long_wav(path: Path, size: int) -> Path:
    """A file of ``size`` bytes whose header says 48 kHz stereo 24-bit PCM (288,000 bytes a second) filling it."""
    data_size = size - 44
    header = (
        b"RIFF"
        + (size - 8).to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + (1).to_bytes(2, "little")
        + (2).to_bytes(2, "little")
        + (48000).to_bytes(4, "little")
        + (288_000).to_bytes(4, "little")
        + (6).to_bytes(2, "little")
        + (24).to_bytes(2, "little")
        + b"data"
        + data_size.to_bytes(4, "little")
    )
    path.write_bytes(header)
    os.truncate(path, size)
    return path


def cbr_mp3(frames: int) -> bytes:
    """An ID3v2.4 tag, then ``frames`` MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz), padded as encoders do."""
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x00"
    out, rest = [tag], 0
    for _ in range(frames):
        rest += 144 * 128000 % 44100
        padding = rest >= 44100
        rest -= 44100 if padding else 0
        out.append((b"\xff\xfb\x92\x00" if padding else b"\xff\xfb\x90\x00") + bytes(417 + padding - 4))
    return b"".join(out)


def rejected(value: Any, limits: InputAudioLimits | None = None) -> str:
    with pytest.raises(StableAudioValidationError) as caught:
        InputAudio.open(value, limits)
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


# --- limits per model -------------------------------------------------------------------------------------


def test_without_limits_the_length_is_neither_measured_nor_checked(tmp_path: Path) -> None:
    audio = InputAudio.open(timed_wav(tmp_path / "blip.wav", 0.5))
    assert audio.seconds is None


def test_with_limits_the_length_is_measured(tmp_path: Path) -> None:
    path = timed_wav(tmp_path / "loop.wav", 12.5)
    assert InputAudio.open(path, STABLE_AUDIO_25).seconds == 12.5


def test_a_clip_over_the_models_size_is_refused_with_its_size_the_model_and_its_limit(tmp_path: Path) -> None:
    path = sparse_long_wav(tmp_path / "huge.wav", 100 * 10**6 + 1)
    message = rejected(path, STABLE_AUDIO_3)
    assert message == (
        f"init_audio {str(path)!r} is 100,000,001 bytes; stable-audio-3 takes at most 100 MB (100,000,000 bytes)"
    )


def test_stable_audio_3_takes_a_clip_of_100_mb(tmp_path: Path) -> None:
    path = sparse_long_wav(tmp_path / "big.wav", 100 * 10**6)  # 347 s
    audio = InputAudio.open(path, STABLE_AUDIO_3)
    assert audio.size == 100 * 10**6
    assert audio.seconds == pytest.approx((100 * 10**6 - 44) / 288_000)


def test_a_clip_stable_audio_3_takes_is_too_large_for_stable_audio_25(tmp_path: Path) -> None:
    path = sparse_long_wav(tmp_path / "big.wav", 60 * 10**6)  # 208 s: the size is checked first
    assert InputAudio.open(path, STABLE_AUDIO_3).size == 60 * 10**6
    message = rejected(path, STABLE_AUDIO_25)
    assert "is 60,000,000 bytes; stable-audio-2.5 takes at most 50 MB (50,000,000 bytes)" in message


def test_an_oversized_clip_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sparse_long_wav(tmp_path / "huge.wav", 50 * 10**6 + 1)
    fs = fsspec.filesystem("file")

    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("read")

    monkeypatch.setattr(fs, "open", unreadable)
    assert "stable-audio-2.5 takes at most 50 MB" in rejected(
        DuckStoragePath(fs, str(path), str(path)), STABLE_AUDIO_25
    )


def test_a_clip_too_short_is_refused_with_its_length_the_model_and_the_range(tmp_path: Path) -> None:
    path = timed_wav(tmp_path / "short.wav", 4.2)
    assert rejected(path, STABLE_AUDIO_25) == (
        f"init_audio {str(path)!r} is 4.2 s long; stable-audio-2.5 takes input clips of 6 to 190 s"
    )


def test_a_clip_just_short_of_the_minimum_shows_the_digits_that_make_it_short(tmp_path: Path) -> None:
    path = timed_wav(tmp_path / "almost.wav", 47_999 / 8000)  # one frame short: 5.999875 s
    message = rejected(path, STABLE_AUDIO_3)
    assert "is 5.9999 s long; stable-audio-3 takes input clips of 6 to 380 s" in message


@pytest.mark.parametrize("seconds", [6, 190])
def test_a_clip_at_either_end_of_the_range_is_taken(tmp_path: Path, seconds: float) -> None:
    assert InputAudio.open(timed_wav(tmp_path / "edge.wav", seconds), STABLE_AUDIO_25).seconds == seconds


def test_a_clip_too_long_for_stable_audio_25_is_taken_by_stable_audio_3(tmp_path: Path) -> None:
    path = timed_wav(tmp_path / "long.wav", 200)
    assert "is 200.0 s long; stable-audio-2.5 takes input clips of 6 to 190 s" in rejected(
        path, STABLE_AUDIO_25
    )
    assert InputAudio.open(path, STABLE_AUDIO_3).seconds == 200


def test_a_clip_a_few_hundredths_over_the_maximum_is_left_to_the_service(tmp_path: Path) -> None:
    # An mp3's frames hold the encoder's delay and padding beside the audio: close to the bound, the
    # service judges.
    assert InputAudio.open(timed_wav(tmp_path / "a.wav", 190.05), STABLE_AUDIO_25).seconds == 190.05
    assert "is 190.2 s long" in rejected(timed_wav(tmp_path / "b.wav", 190.2), STABLE_AUDIO_25)


def test_an_mp3_on_fsspec_too_short_is_refused_before_the_upload() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/clips/sting.mp3", cbr_mp3(100))  # 2.6 s
    try:
        message = rejected("memory://clips/sting.mp3", STABLE_AUDIO_3)
        assert message == (
            "init_audio 'memory://clips/sting.mp3' is 2.6 s long; stable-audio-3 takes input clips of 6 to 380 s"
        )
    finally:
        fs.rm("/clips", recursive=True)


def test_an_mp3_on_fsspec_within_the_range_is_taken_with_its_length() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/clips/bed.mp3", cbr_mp3(1000))
    try:
        audio = InputAudio.open("memory://clips/bed.mp3", STABLE_AUDIO_25)
        assert (audio.content_type, audio.seconds) == ("audio/mpeg", 1000 * 1152 / 44100)
    finally:
        fs.rm("/clips", recursive=True)


@pytest.mark.parametrize(
    "content",
    [MP3_FRAME, MP3_ID3, b"RIFF\x00\x00\x00\x00WAVEjunk"],
    ids=["one cut frame", "tag and cut frame", "wav without chunks"],
)
def test_a_clip_whose_length_cannot_be_measured_is_taken(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "odd.bin"
    path.write_bytes(content)
    audio = InputAudio.open(path, STABLE_AUDIO_3)
    assert (audio.size, audio.seconds) == (len(content), None)


def test_the_measured_length_is_no_part_of_equality(tmp_path: Path) -> None:
    path = timed_wav(tmp_path / "same.wav", 8)
    assert InputAudio.open(path) == InputAudio.open(path, STABLE_AUDIO_3)


def test_an_input_audio_given_limits_is_checked_against_them(tmp_path: Path) -> None:
    audio = InputAudio.open(timed_wav(tmp_path / "short.wav", 3))
    assert "is 3.0 s long; stable-audio-3 takes" in rejected(audio, STABLE_AUDIO_3)
    assert InputAudio.open(InputAudio.open(timed_wav(tmp_path / "ok.wav", 9)), STABLE_AUDIO_3).seconds == 9


def test_a_described_clip_has_no_length() -> None:
    assert InputAudio.described("memory://bucket/in.wav").seconds is None


@pytest.mark.parametrize(
    ("max_bytes", "min_seconds", "max_seconds"), [(0, 6, 190), (10**6, 200, 190), (10**6, -1, 190)]
)
def test_inconsistent_limits_are_refused(max_bytes: int, min_seconds: float, max_seconds: float) -> None:
    with pytest.raises(ValueError, match="inconsistent input audio limits"):
        InputAudioLimits("stable-audio-3", max_bytes, min_seconds, max_seconds)
