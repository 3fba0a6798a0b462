"""How long an input clip plays, read from its headers and frame headers: no audio is decoded.

Pure and streamed: the file is any readable, seekable binary file object (a local file, an fsspec file on
``memory://`` or ``s3://``, ``io.BytesIO``); it is read with ``seek`` and reads of at most :data:`BLOCK`
bytes, so memory stays bounded whatever the file's size. Imports nothing from Airflow.

* WAV: the RIFF chunks are walked (no 44-byte header is assumed) to the ``fmt `` chunk (plain or
  ``WAVE_FORMAT_EXTENSIBLE``) and the ``data`` chunk: ``data size // block align`` frames at the sample
  rate (for a compressed format, the ``fact`` chunk's sample count, or the data size over the average
  byte rate). A data size of 0 or ``0xFFFFFFFF`` (a streaming writer's "unknown") is taken as the rest
  of the file; a data size beyond the end of the file (a cut-short file) as what the file holds.
* MP3: ID3v2 tags are skipped (their syncsafe size, plus the footer when flagged), the first MPEG audio
  frame is found and confirmed by the header of the next. If it carries a Xing/Info or VBRI header with
  a frame count (and, when the header states the stream's byte count, the file agrees with it to 1/16,
  as FFmpeg checks: else the file was cut or joined), that count gives the length, less the encoder
  delay and padding of a LAME tag. Otherwise every frame header is walked (MPEG-1, 2 and 2.5, Layers I,
  II and III), in blocks, summing the samples per frame; the walk stops at a trailing ID3v1 ``TAG``,
  APEv2 or Lyrics3 tag, an appended ID3v2 tag, or a few bytes of junk at the very end.

Anything else gives ``None``, the length unknown (the caller accepts the clip and the service judges):
another format, a header that does not parse, an mp3 without a frame, free-format bitrate, a stream
that breaks off into junk before its end, an error reading the file. Nothing here raises.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Protocol

#: The most bytes read at a time.
BLOCK = 1 << 16


class Readable(Protocol):
    """What is needed of a file: ``read`` and ``seek`` (binary)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


def measure_seconds(file: Readable, size: int, content_type: str) -> float | None:
    """The length in seconds of the clip in ``file`` (``size`` bytes), or ``None`` when unknown.

    :param file: the clip, opened for binary reading; read from wherever it stands, left anywhere.
    :param size: its size in bytes.
    :param content_type: ``audio/wav`` or ``audio/mpeg`` (see ``input_audio.sniff_content_type``);
        anything else gives ``None``.
    """
    measure = {"audio/wav": wav_seconds, "audio/mpeg": mp3_seconds}.get(content_type)
    if measure is None:
        return None
    try:
        return measure(file, size)
    except Exception:  # a reading error or a malformed header: the length is unknown, never an error
        return None


# --- WAV ----------------------------------------------------------------------------------------------

#: Formats whose ``block align`` is the bytes of one frame: PCM, IEEE float, A-law, mu-law.
_FRAME_FORMATS = frozenset({0x0001, 0x0003, 0x0006, 0x0007})
_EXTENSIBLE = 0xFFFE
#: Bytes 2..16 of every ``KSDATAFORMAT_SUBTYPE_*`` GUID built on a format tag (its first 2 bytes).
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_UNKNOWN_DATA_SIZES = frozenset({0, 0xFFFFFFFF})
_MAX_CHUNKS = 10_000


class _Format(NamedTuple):
    tag: int
    channels: int
    rate: int
    byte_rate: int
    block_align: int


def _wav_format(body: bytes) -> _Format | None:
    if len(body) < 16:
        return None
    tag = int.from_bytes(body[0:2], "little")
    channels = int.from_bytes(body[2:4], "little")
    rate = int.from_bytes(body[4:8], "little")
    byte_rate = int.from_bytes(body[8:12], "little")
    block_align = int.from_bytes(body[12:14], "little")
    if tag == _EXTENSIBLE:
        # cbSize, valid bits, channel mask, then the sub-format GUID at 24..40 (its first 2 bytes are
        # the format tag when the rest is the common tail; another GUID is some other, compressed, format).
        if len(body) < 40:
            return None
        tag = int.from_bytes(body[24:26], "little") if body[26:40] == _GUID_TAIL else -1
    if channels == 0 or rate == 0:
        return None
    return _Format(tag, channels, rate, byte_rate, block_align)


def wav_seconds(file: Readable, size: int) -> float | None:
    """The length of a RIFF WAVE file from its ``fmt `` and ``data`` chunks; ``None`` when unknown."""
    file.seek(0)
    head = file.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset = 12
    fmt: _Format | None = None
    fact_samples: int | None = None
    for _ in range(_MAX_CHUNKS):
        if offset + 8 > size:
            return None  # no data chunk
        file.seek(offset)
        header = file.read(8)
        if len(header) < 8:
            return None
        chunk_id, chunk_size = header[:4], int.from_bytes(header[4:], "little")
        body = offset + 8
        if chunk_id == b"fmt ":
            fmt = _wav_format(file.read(min(chunk_size, 40)))
            if fmt is None:
                return None
        elif chunk_id == b"fact" and chunk_size >= 4:
            fact = file.read(4)
            fact_samples = int.from_bytes(fact, "little") if len(fact) == 4 else None
        elif chunk_id == b"data":
            if fmt is None:
                return None  # the format must come first
            available = max(0, size - body)
            data_size = available if chunk_size in _UNKNOWN_DATA_SIZES else min(chunk_size, available)
            return _wav_length(fmt, data_size, fact_samples)
        offset = body + chunk_size + (chunk_size & 1)  # chunks are padded to an even size
    return None


def _wav_length(fmt: _Format, data_size: int, fact_samples: int | None) -> float | None:
    if fmt.tag in _FRAME_FORMATS:
        if fmt.block_align == 0:
            return None
        return (data_size // fmt.block_align) / fmt.rate
    if fact_samples is not None:
        return fact_samples / fmt.rate
    if fmt.byte_rate > 0:
        return data_size / fmt.byte_rate
    return None


# --- MP3 ----------------------------------------------------------------------------------------------

#: Sample rates by version bits (0: MPEG-2.5, 2: MPEG-2, 3: MPEG-1) and rate index.
_SAMPLE_RATES = {0: (11025, 12000, 8000), 2: (22050, 24000, 16000), 3: (44100, 48000, 32000)}
#: Bitrates in kbit/s by (MPEG-1, layer) and bitrate index 1..14 (0 is free format, 15 is invalid).
_BITRATES = {
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_ID3V2_HEADER = 10
_MAX_ID3V2_TAGS = 16
#: Bytes searched after the ID3v2 tags for the first frame (encoders may pad between them).
_FIRST_FRAME_SCAN = BLOCK
#: Trailing tags, where a walk ends: ID3v1, APEv2, Lyrics3, an appended ID3v2.
_TRAILERS = (b"TAG", b"APETAGEX", b"LYRICS", b"ID3")


class _Frame(NamedTuple):
    length: int  # bytes, padding included
    samples: int
    rate: int
    signature: int  # version, layer and sample rate: the same in every frame of a stream
    mpeg1: bool
    layer: int


def _parse_header(b1: int, b2: int) -> _Frame | None:
    """The frame whose header's second and third bytes are ``b1``, ``b2`` (after a ``0xFF``)."""
    if b1 & 0xE0 != 0xE0:
        return None
    version = (b1 >> 3) & 3
    layer = 4 - ((b1 >> 1) & 3)
    bitrate_index = b2 >> 4
    rate_index = (b2 >> 2) & 3
    if version == 1 or layer == 4 or rate_index == 3 or bitrate_index in (0, 15):
        return None  # reserved, or free format (its frame length is not in the header)
    mpeg1 = version == 3
    rate = _SAMPLE_RATES[version][rate_index]
    bitrate = _BITRATES[mpeg1, layer][bitrate_index - 1] * 1000
    padding = (b2 >> 1) & 1
    if layer == 1:
        samples, length = 384, (12 * bitrate // rate + padding) * 4
    elif layer == 2 or mpeg1:
        samples, length = 1152, 144 * bitrate // rate + padding
    else:
        samples, length = 576, 72 * bitrate // rate + padding
    return _Frame(length, samples, rate, ((b1 & 0xFE) << 2) | rate_index, mpeg1, layer)


@functools.cache
def _frame_table() -> dict[int, _Frame]:
    """Every valid frame by its header's second and third bytes (``b1 << 8 | b2``)."""
    table = {}
    for b1 in range(0xE0, 0x100):
        for b2 in range(0x100):
            frame = _parse_header(b1, b2)
            if frame is not None:
                table[b1 << 8 | b2] = frame
    return table


def _frame_at(data: bytes, index: int) -> _Frame | None:
    if index + 4 > len(data) or data[index] != 0xFF or data[index + 3] & 3 == 2:  # emphasis 2: reserved
        return None
    return _frame_table().get(data[index + 1] << 8 | data[index + 2])


def _skip_id3v2(file: Readable, size: int) -> int | None:
    """The offset after the ID3v2 tags at the start of the file (0 when none); ``None`` if malformed."""
    offset = 0
    for _ in range(_MAX_ID3V2_TAGS):
        file.seek(offset)
        header = file.read(_ID3V2_HEADER)
        if header[:3] != b"ID3":
            return offset
        if len(header) < _ID3V2_HEADER or header[3] == 0xFF or any(b & 0x80 for b in header[6:10]):
            return None
        tag_size = header[6] << 21 | header[7] << 14 | header[8] << 7 | header[9]
        footer = _ID3V2_HEADER if header[5] & 0x10 else 0
        offset += _ID3V2_HEADER + tag_size + footer
        if offset >= size:
            return None
    return None


def _first_frame(file: Readable, start: int, size: int) -> tuple[int, _Frame] | None:
    """The first frame at or after ``start`` that the next frame's header (or the file's end) confirms."""
    file.seek(start)
    window = file.read(_FIRST_FRAME_SCAN)
    index = window.find(b"\xff")
    while index != -1:
        frame = _frame_at(window, index)
        if frame is not None:
            after = start + index + frame.length
            if after == size:  # a file of one frame
                return start + index, frame
            if index + frame.length + 8 <= len(window):
                following = window[index + frame.length : index + frame.length + 8]
            else:
                file.seek(after)
                following = file.read(8)
            second = _frame_at(following, 0)
            if (second is not None and second.signature == frame.signature) or following.startswith(
                _TRAILERS
            ):
                return start + index, frame
        index = window.find(b"\xff", index + 1)
    return None


def _side_info_size(frame: _Frame, mono: bool) -> int:
    if frame.mpeg1:
        return 17 if mono else 32
    return 9 if mono else 17


def _header_frames(first: bytes, frame: _Frame, stream_bytes: int) -> tuple[int, int] | None:
    """``(frames, samples to drop)`` from a Xing/Info or VBRI header in ``first``, the first frame."""
    if frame.layer != 3:
        return None
    mono = first[3] >> 6 == 3
    side = 4 + _side_info_size(frame, mono)
    for offset in (side, side + 2):  # +2: a CRC some writers count before the side information
        if first[offset : offset + 4] in (b"Xing", b"Info"):
            return _xing(first, offset, stream_bytes)
    if first[36:40] == b"VBRI" and len(first) >= 36 + 18:
        frames = int.from_bytes(first[36 + 14 : 36 + 18], "big")
        stated = int.from_bytes(first[36 + 10 : 36 + 14], "big")
        return (frames, 0) if frames and _agrees(stated, stream_bytes) else None
    return None


def _agrees(stated: int, actual: int) -> bool:
    """A header's byte count matches the file's to 1/16 (FFmpeg's test for a cut or joined file)."""
    return abs(stated - actual) <= min(stated, actual) >> 4


def _xing(first: bytes, offset: int, stream_bytes: int) -> tuple[int, int] | None:
    flags = int.from_bytes(first[offset + 4 : offset + 8], "big")
    at = offset + 8
    if not flags & 1:
        return None  # no frame count
    frames = int.from_bytes(first[at : at + 4], "big")
    at += 4
    if flags & 2:
        if not _agrees(int.from_bytes(first[at : at + 4], "big"), stream_bytes):
            return None
        at += 4
    if flags & 4:
        at += 100  # table of contents
    if flags & 8:
        at += 4  # quality
    drop = 0
    # The LAME tag (also written by FFmpeg): 9 bytes of encoder name, 12 of settings, then the encoder
    # delay and the padding, 12 bits each, in samples: a decoder drops them.
    if first[at : at + 4] in (b"LAME", b"Lavf", b"Lavc") and len(first) >= at + 24:
        packed = int.from_bytes(first[at + 21 : at + 24], "big")
        drop = (packed >> 12) + (packed & 0xFFF)
    return (frames, drop) if frames else None


def mp3_seconds(file: Readable, size: int) -> float | None:
    """The length of an MPEG audio stream (see the module docstring); ``None`` when unknown."""
    start = _skip_id3v2(file, size)
    if start is None:
        return None
    found = _first_frame(file, start, size)
    if found is None:
        return None
    position, frame = found
    file.seek(position)
    first = file.read(min(frame.length, 512))
    from_header = _header_frames(first, frame, size - position)
    if from_header is not None:
        frames, drop = from_header
        samples = frames * frame.samples
        return (samples - drop if drop < samples else samples) / frame.rate
    walked = _walk(file, position, size, frame.signature)
    return None if walked is None else walked / frame.rate


def _walk(file: Readable, position: int, size: int, signature: int) -> int | None:
    """The samples of the frames from ``position`` on, read a block at a time; ``None`` if broken off."""
    table = _frame_table()
    samples = 0
    last_length = 0
    base, block = position, b""
    while position < size:
        index = position - base
        if index + len(b"APETAGEX") > len(block) and base + len(block) < size:
            file.seek(position)
            base, block, index = position, file.read(BLOCK), 0
            if not block:
                return None
        frame = table.get(block[index + 1] << 8 | block[index + 2]) if index + 3 <= len(block) else None
        if frame is None or block[index] != 0xFF or frame.signature != signature:
            if block[index:].startswith(_TRAILERS) or size - position <= 2 * last_length:
                break  # a trailing tag, or a cut-off frame's worth of junk at the end
            return None  # junk with more of the file behind it: the stream's length is unknown
        samples += frame.samples
        last_length = frame.length
        position += frame.length
    return samples
