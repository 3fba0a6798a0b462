"""An input clip's length from its headers: WAV chunks, MPEG frame headers, Xing/Info/VBRI headers."""

from __future__ import annotations

import io
import random
import wave
from pathlib import Path
from typing import Any

import fsspec
import pytest

from airflow_provider_stableaudio.audio_length import (
    BLOCK,
    _skip_id3v2,
    measure_seconds,
    mp3_seconds,
    wav_seconds,
)

# --- WAV builders ---------------------------------------------------------------------------------------

PCM_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def wave_file(frames: int, channels: int = 1, rate: int = 8000, width: int = 2) -> bytes:
    """A WAV written by the standard library's ``wave`` module."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(bytes(frames * channels * width))
    return buffer.getvalue()


def chunk(chunk_id: bytes, body: bytes, declared: int | None = None) -> bytes:
    size = len(body) if declared is None else declared
    return chunk_id + size.to_bytes(4, "little") + body + (b"\x00" if len(body) % 2 else b"")


def riff(*chunks: bytes, declared: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + (len(body) if declared is None else declared).to_bytes(4, "little") + body


def fmt(tag: int, channels: int, rate: int, bits: int, block_align: int | None = None) -> bytes:
    align = channels * bits // 8 if block_align is None else block_align
    return chunk(
        b"fmt ",
        tag.to_bytes(2, "little")
        + channels.to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + (rate * align).to_bytes(4, "little")
        + align.to_bytes(2, "little")
        + bits.to_bytes(2, "little"),
    )


def fmt_extensible(channels: int, rate: int, bits: int, guid: bytes) -> bytes:
    align = channels * bits // 8
    body = (
        (0xFFFE).to_bytes(2, "little")
        + channels.to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + (rate * align).to_bytes(4, "little")
        + align.to_bytes(2, "little")
        + bits.to_bytes(2, "little")
        + (22).to_bytes(2, "little")  # cbSize
        + bits.to_bytes(2, "little")  # valid bits per sample
        + (0x3F).to_bytes(4, "little")  # channel mask: 5.1
        + guid
    )
    return chunk(b"fmt ", body)


def wav_length(data: bytes) -> float | None:
    return wav_seconds(io.BytesIO(data), len(data))


# --- MP3 builders ---------------------------------------------------------------------------------------

VERSION_BITS = {"1": 3, "2": 2, "2.5": 0}
RATES = {"1": (44100, 48000, 32000), "2": (22050, 24000, 16000), "2.5": (11025, 12000, 8000)}
BITRATES = {
    ("1", 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    ("1", 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    ("1", 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    ("2", 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    ("2", 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}


def bitrates(version: str, layer: int) -> tuple[int, ...]:
    return BITRATES.get((version, layer)) or BITRATES["1" if version == "1" else "2", 3]


def samples_per_frame(version: str, layer: int) -> int:
    return 384 if layer == 1 else 1152 if layer == 2 or version == "1" else 576


def frame_length(version: str, layer: int, kbps: int, rate: int, padding: int) -> int:
    if layer == 1:
        return (12 * kbps * 1000 // rate + padding) * 4
    return samples_per_frame(version, layer) // 8 * kbps * 1000 // rate + padding


def frame(
    version: str = "1",
    layer: int = 3,
    kbps: int = 128,
    rate: int = 44100,
    padding: int = 0,
    mono: bool = False,
) -> bytes:
    """One MPEG audio frame: its header (no CRC), then zeros (silence for Layer III)."""
    b1 = 0xE0 | VERSION_BITS[version] << 3 | (4 - layer) << 1 | 1
    b2 = (bitrates(version, layer).index(kbps) + 1) << 4 | RATES[version].index(rate) << 2 | padding << 1
    b3 = 0xC0 if mono else 0x00
    length = frame_length(version, layer, kbps, rate, padding)
    return bytes((0xFF, b1, b2, b3)) + bytes(length - 4)


def cbr(count: int, version: str = "1", layer: int = 3, kbps: int = 128, rate: int = 44100) -> bytes:
    """``count`` frames at a constant bitrate, padded as an encoder pads them to keep the rate exact."""
    # Bytes per frame (Layer I: 4-byte slots) are unit / rate: a padding slot whenever the remainders add up.
    unit = (12 if layer == 1 else samples_per_frame(version, layer) // 8) * kbps * 1000
    frames, rest = [], 0
    for _ in range(count):
        rest += unit % rate
        padding = 0
        if rest >= rate:
            rest -= rate
            padding = 1
        frames.append(frame(version, layer, kbps, rate, padding))
    return b"".join(frames)


def syncsafe(value: int) -> bytes:
    return bytes((value >> shift) & 0x7F for shift in (21, 14, 7, 0))


def id3v2(body_size: int = 300, footer: bool = False) -> bytes:
    flags = 0x10 if footer else 0
    body = b"TIT2" + syncsafe(body_size - 10) + b"\x00\x00" + b"\x03" + b"x" * (body_size - 11)
    tag = b"ID3\x04\x00" + bytes([flags]) + syncsafe(len(body)) + body
    return tag + (b"3DI\x04\x00" + bytes([flags]) + syncsafe(len(body)) if footer else b"")


def id3v1() -> bytes:
    return b"TAG" + b"Title".ljust(30, b"\x00") + bytes(95)


def xing_frame(
    frames: int | None,
    *,
    tag: bytes = b"Xing",
    stream_bytes: int | None = None,
    lame: tuple[int, int] | None = None,
    version: str = "1",
    rate: int = 44100,
    mono: bool = False,
    encoder: bytes = b"LAME3.100",
) -> bytes:
    """A Layer III frame carrying a Xing/Info header (and a LAME tag with ``(delay, padding)``)."""
    blank = frame(version, 3, 128 if version == "1" else 64, rate, 0, mono)
    side = (17 if mono else 32) if version == "1" else (9 if mono else 17)
    flags = (1 if frames is not None else 0) | (2 if stream_bytes is not None else 0) | 4 | 8
    header = tag + flags.to_bytes(4, "big")
    header += frames.to_bytes(4, "big") if frames is not None else b""
    header += stream_bytes.to_bytes(4, "big") if stream_bytes is not None else b""
    header += bytes(range(100)) + (57).to_bytes(4, "big")  # table of contents, quality
    if lame is not None:
        delay, padding = lame
        header += encoder + bytes(12) + (delay << 12 | padding).to_bytes(3, "big")
    content = blank[: 4 + side] + header
    return content + blank[len(content) :]


def vbri_frame(frames: int, stream_bytes: int) -> bytes:
    blank = frame()
    header = b"VBRI" + (1).to_bytes(2, "big") + (1105).to_bytes(2, "big") + (75).to_bytes(2, "big")
    header += stream_bytes.to_bytes(4, "big") + frames.to_bytes(4, "big")
    content = blank[:36] + header
    return content + blank[len(content) :]


def mp3_length(data: bytes) -> float | None:
    return mp3_seconds(io.BytesIO(data), len(data))


class RecordingFile:
    """A file (by default of ``data`` in memory) that notes the size of every read."""

    def __init__(self, data: bytes = b"", file: Any = None) -> None:
        self.file = io.BytesIO(data) if file is None else file
        self.reads: list[int] = []

    def read(self, size: int = -1, /) -> bytes:
        self.reads.append(size)
        return self.file.read(size)

    def seek(self, offset: int, whence: int = 0, /) -> int:
        return self.file.seek(offset, whence)


# --- WAV ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "channels", "rate", "width"),
    [
        (48_000, 1, 8000, 2),
        (44_100 * 7, 2, 44_100, 2),
        (48_000 * 3 + 1, 2, 48_000, 3),
        (22_050 * 5, 1, 22_050, 1),
        (96_000, 6, 96_000, 4),
    ],
)
def test_a_wav_lasts_its_frames_at_its_rate(frames: int, channels: int, rate: int, width: int) -> None:
    assert wav_length(wave_file(frames, channels, rate, width)) == frames / rate


def test_chunks_before_and_between_fmt_and_data_are_walked_over() -> None:
    data = riff(
        chunk(b"JUNK", bytes(28)),
        chunk(b"bext", bytes(603)),  # odd: followed by a pad byte
        fmt(1, 2, 44100, 16),
        chunk(b"LIST", b"INFOISFT" + (5).to_bytes(4, "little") + b"Lavf\x00"),
        chunk(b"data", bytes(44100 * 4 * 6)),
        chunk(b"id3 ", bytes(33)),
    )
    assert wav_length(data) == 6.0


@pytest.mark.parametrize(("subformat", "bits"), [(1, 24), (3, 32)], ids=["pcm", "float"])
def test_a_wave_format_extensible_file_lasts_its_frames(subformat: int, bits: int) -> None:
    guid = subformat.to_bytes(2, "little") + PCM_GUID_TAIL
    # Two bytes more than 7 s of frames: not a frame, so not counted (a byte-rate reading would count them).
    data = riff(fmt_extensible(6, 48000, bits, guid), chunk(b"data", bytes(48000 * 6 * bits // 8 * 7 + 2)))
    assert wav_length(data) == 7.0


def test_a_compressed_wav_lasts_its_fact_samples() -> None:
    # IMA ADPCM: 256-byte blocks of 505 samples; the fact chunk says how many samples there are.
    data = riff(fmt(0x11, 1, 22050, 4, block_align=256), chunk(b"fact", (22050 * 9).to_bytes(4, "little")))
    data += chunk(b"data", bytes(256 * 400))
    assert wav_length(data) == 9.0


def test_a_compressed_wav_without_fact_lasts_its_data_over_the_average_byte_rate() -> None:
    guid = b"\x55\x00" + bytes(14)  # an unknown sub-format: no frame size to count by
    data = riff(fmt_extensible(2, 8000, 16, guid), chunk(b"data", bytes(8000 * 4 * 3)))
    assert wav_length(data) == 3.0


@pytest.mark.parametrize("declared", [0, 0xFFFFFFFF], ids=["zero", "all-ones"])
def test_a_streamed_wavs_unknown_data_size_is_the_rest_of_the_file(declared: int) -> None:
    samples = bytes(16000 * 2 * 8)
    data = riff(fmt(1, 1, 16000, 16), declared=declared) + b"data" + declared.to_bytes(4, "little") + samples
    assert wav_length(data) == 8.0


def test_a_cut_short_wav_lasts_what_it_holds() -> None:
    data = riff(fmt(1, 1, 8000, 16), chunk(b"data", bytes(8000 * 2 * 10)))
    assert wav_length(data[: len(data) - 8000 * 2 * 4]) == 6.0


def test_a_large_streamed_wav_is_measured_from_its_header_alone(tmp_path: Path) -> None:
    path = tmp_path / "live.wav"
    path.write_bytes(riff(fmt(1, 2, 48000, 24), declared=0xFFFFFFFF) + b"data" + b"\xff" * 4)
    size = 44 + 288_000 * 300
    with path.open("r+b") as file:
        file.truncate(size)  # sparse
    with path.open("rb") as file:
        recording = RecordingFile(file=file)
        assert wav_seconds(recording, size) == 300.0
    assert sum(recording.reads) < 100


@pytest.mark.parametrize(
    "data",
    [
        riff(chunk(b"data", bytes(1600)), fmt(1, 1, 8000, 16)),
        riff(fmt(1, 1, 8000, 16), chunk(b"LIST", bytes(10))),
        riff(fmt(1, 1, 0, 16), chunk(b"data", bytes(1600))),
        riff(fmt(1, 0, 8000, 16), chunk(b"data", bytes(1600))),
        riff(fmt(1, 1, 8000, 16, block_align=0), chunk(b"data", bytes(1600))),
        riff(chunk(b"fmt ", bytes(12)), chunk(b"data", bytes(1600))),
        riff(chunk(b"fmt ", (0xFFFE).to_bytes(2, "little") + bytes(18)), chunk(b"data", bytes(1600))),
        riff(chunk(b"LIST", bytes(10), declared=10_000), fmt(1, 1, 8000, 16), chunk(b"data", bytes(1600))),
        b"RIFF\x00\x00\x00\x00AVI LIST",
        b"RIFF\x00\x00",
    ],
    ids=[
        "data before fmt",
        "no data chunk",
        "rate zero",
        "no channels",
        "block align zero",
        "fmt too short",
        "extensible too short",
        "chunk runs off the end",
        "not wave",
        "truncated header",
    ],
)
def test_a_wav_whose_headers_do_not_add_up_has_no_length(data: bytes) -> None:
    assert wav_length(data) is None


# --- MP3: walking the frames ------------------------------------------------------------------------------


def test_the_emulators_kind_of_mp3_lasts_its_frames() -> None:
    # As the emulator writes it: an ID3v2.4 tag, then MPEG-1 Layer III 128 kbit/s 44.1 kHz frames.
    assert mp3_length(id3v2() + cbr(400)) == 400 * 1152 / 44100


@pytest.mark.parametrize(
    ("version", "layer", "kbps", "rate"),
    [
        ("1", 3, 320, 48000),
        ("1", 3, 32, 32000),
        ("1", 2, 192, 48000),
        ("1", 1, 384, 44100),
        ("2", 3, 64, 22050),
        ("2", 3, 48, 24000),
        ("2", 3, 8, 16000),
        ("2", 1, 128, 22050),
        ("2.5", 3, 32, 11025),
        ("2.5", 3, 8, 8000),
    ],
)
def test_each_mpeg_version_and_layer_lasts_its_samples(
    version: str, layer: int, kbps: int, rate: int
) -> None:
    count = 300
    data = cbr(count, version, layer, kbps, rate)
    assert mp3_length(data) == pytest.approx(count * samples_per_frame(version, layer) / rate, abs=1e-9)


def test_frames_of_different_bitrates_each_count() -> None:
    data = b"".join(frame(kbps=kbps) for kbps in (32, 320, 128, 64, 256) * 40)
    assert mp3_length(data) == 200 * 1152 / 44100


def test_an_id3v2_tag_with_a_footer_is_skipped_whole() -> None:
    assert mp3_length(id3v2(2000, footer=True) + cbr(100)) == 100 * 1152 / 44100


def test_an_id3v2_footer_is_skipped_with_its_tag() -> None:
    tag = id3v2(2000, footer=True)
    data = tag + cbr(10)
    assert _skip_id3v2(io.BytesIO(data), len(data)) == len(tag)


def test_two_id3v2_tags_and_padding_before_the_first_frame_are_skipped() -> None:
    assert mp3_length(id3v2() + id3v2(50) + bytes(700) + cbr(100)) == 100 * 1152 / 44100


@pytest.mark.parametrize(
    "trailer",
    [
        id3v1(),
        b"APETAGEX" + bytes(24) + b"a cover picture" * 500 + id3v1(),
        b"LYRICSBEGIN" + b"la " * 1000,
        id3v2(5000),
        bytes(300),
    ],
    ids=["id3v1", "apev2 and id3v1", "lyrics3", "appended id3v2", "a little junk"],
)
def test_a_trailing_tag_or_a_little_junk_ends_the_walk(trailer: bytes) -> None:
    assert mp3_length(id3v2() + cbr(100) + trailer) == 100 * 1152 / 44100


def test_a_frame_cut_short_at_the_end_still_counts() -> None:
    data = cbr(100)
    assert mp3_length(data[:-200]) == 100 * 1152 / 44100


def test_a_walk_across_many_blocks_counts_every_frame() -> None:
    data = id3v2() + cbr(3000)  # 1.25 MB: frames straddle the block boundaries
    file = RecordingFile(data)
    assert mp3_seconds(file, len(data)) == 3000 * 1152 / 44100
    assert max(file.reads) <= BLOCK
    assert len(file.reads) > len(data) // BLOCK


def test_a_stream_broken_by_junk_before_its_end_has_no_length() -> None:
    garbage = random.Random(7).randbytes(20_000).replace(b"\xff", b"\x00")
    assert mp3_length(cbr(100) + garbage + cbr(100)) is None


def test_a_change_of_sample_rate_mid_stream_is_junk() -> None:
    assert mp3_length(cbr(50) + cbr(100, rate=48000)) is None


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfb" + random.Random(1).randbytes(5000).replace(b"\xff", b"\x00"),
        b"\xff\xfb\x90\x64" + bytes(400),  # a frame header, but the file ends before the frame does
        b"\xff\xfb\x00\x00" + bytes(2000),  # free format: the frame length is not in the header
        b"\xff\xfb\x9c\x00" + bytes(2000),  # reserved sample rate
        b"\xff\xfb\xf0\x00" + bytes(2000),  # bitrate index 15
        b"\xff\xf9\x90\x00" + bytes(2000),  # reserved layer
        id3v2(),
        id3v2() + b"\x00" * 100_000 + cbr(10),  # the first frame further than the search goes
        b"ID3\x04\x00\x00\x00\x00\x81\x00" + cbr(10),  # a size that is not syncsafe
    ],
    ids=[
        "garbage",
        "one frame cut short",
        "free format",
        "reserved rate",
        "bad bitrate",
        "reserved layer",
        "tag alone",
        "frame too far",
        "bad tag size",
    ],
)
def test_an_mp3_without_frames_to_count_has_no_length(data: bytes) -> None:
    assert mp3_length(data) is None


def test_a_single_frame_file_lasts_one_frame() -> None:
    assert mp3_length(frame()) == 1152 / 44100


# --- MP3: Xing/Info and VBRI headers ------------------------------------------------------------------


def test_a_xing_frame_count_gives_the_length_without_the_xing_frame() -> None:
    audio = b"".join(frame(kbps=kbps) for kbps in (64, 128, 192, 320) * 25)
    data = id3v2() + xing_frame(100, stream_bytes=None) + audio
    assert mp3_length(data) == 100 * 1152 / 44100


def test_a_xing_frame_count_is_taken_without_walking_the_frames() -> None:
    data = xing_frame(50_000) + cbr(4000)  # 1.7 MB of frames, of which the count says more
    file = RecordingFile(data)
    assert mp3_seconds(file, len(data)) == 50_000 * 1152 / 44100
    assert sum(file.reads) < 2 * BLOCK


def test_an_info_header_with_a_lame_tag_drops_the_encoder_delay_and_padding() -> None:
    audio = cbr(300)
    data = xing_frame(300, tag=b"Info", stream_bytes=len(audio) + 417, lame=(576, 1000)) + audio
    assert mp3_length(data) == (300 * 1152 - 1576) / 44100


def test_an_ffmpeg_lame_tag_is_read_too() -> None:
    data = xing_frame(300, tag=b"Info", lame=(1105, 500), encoder=b"Lavf61.7.") + cbr(300)
    assert mp3_length(data) == (300 * 1152 - 1605) / 44100


def test_an_unknown_encoders_tag_drops_nothing() -> None:
    data = xing_frame(300, tag=b"Info", lame=(1105, 500), encoder=b"Foo 1.0  ") + cbr(300)
    assert mp3_length(data) == 300 * 1152 / 44100


@pytest.mark.parametrize(
    ("version", "rate", "mono", "per_frame"),
    [("1", 44100, True, 1152), ("2", 22050, False, 576), ("2", 24000, True, 576)],
    ids=["mpeg-1 mono", "mpeg-2 stereo", "mpeg-2 mono"],
)
def test_the_xing_header_is_found_after_the_side_information(
    version: str, rate: int, mono: bool, per_frame: int
) -> None:
    data = xing_frame(1000, version=version, rate=rate, mono=mono) + cbr(10, version, 3, 64, rate)
    assert mp3_length(data) == 1000 * per_frame / rate


def test_a_xing_header_whose_byte_count_disagrees_with_the_file_is_ignored_for_a_walk() -> None:
    # Two files joined: the first one's header counts 100 frames; the stream holds 300.
    first = cbr(100)
    data = xing_frame(100, stream_bytes=len(first) + 417) + first + cbr(200)
    assert mp3_length(data) == 301 * 1152 / 44100  # the walk counts the (silent) Xing frame too


def test_a_xing_header_without_a_frame_count_is_ignored_for_a_walk() -> None:
    assert mp3_length(xing_frame(None) + cbr(100)) == 101 * 1152 / 44100


def test_a_vbri_frame_count_gives_the_length() -> None:
    audio = cbr(200)
    assert mp3_length(vbri_frame(200, len(audio) + 417) + audio) == 200 * 1152 / 44100


def test_a_vbri_header_whose_byte_count_disagrees_is_ignored_for_a_walk() -> None:
    audio = cbr(200)
    assert mp3_length(vbri_frame(20, 20 * 417) + audio) == 201 * 1152 / 44100


# --- measure_seconds ------------------------------------------------------------------------------------


def test_the_content_type_picks_the_measure() -> None:
    wav, mp3 = wave_file(8000 * 7), cbr(100)
    assert measure_seconds(io.BytesIO(wav), len(wav), "audio/wav") == 7.0
    assert measure_seconds(io.BytesIO(mp3), len(mp3), "audio/mpeg") == 100 * 1152 / 44100
    assert measure_seconds(io.BytesIO(wav), len(wav), "audio/flac") is None


def test_a_file_that_fails_to_read_has_no_length() -> None:
    class Failing(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            raise OSError("connection reset")

    assert measure_seconds(Failing(b""), 10_000, "audio/mpeg") is None
    assert measure_seconds(Failing(b""), 10_000, "audio/wav") is None


def test_a_file_shorter_than_its_stated_size_has_no_length() -> None:
    data = cbr(100)
    assert measure_seconds(io.BytesIO(data[:4000]), len(data), "audio/mpeg") is None


def test_files_on_fsspec_are_measured() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/lengths/a.mp3", id3v2() + cbr(500))
    fs.pipe("/lengths/a.wav", wave_file(44100 * 6, 2, 44100))
    try:
        with fs.open("/lengths/a.mp3", "rb") as file:
            assert measure_seconds(file, fs.size("/lengths/a.mp3"), "audio/mpeg") == 500 * 1152 / 44100
        with fs.open("/lengths/a.wav", "rb") as file:
            assert measure_seconds(file, fs.size("/lengths/a.wav"), "audio/wav") == 6.0
    finally:
        fs.rm("/lengths", recursive=True)
