"""Audio of the Stability routes: tones, the input WAV remixed or inpainted, WAV and MP3 files.

Every output is 44.1 kHz stereo 16-bit PCM of ``round(duration * 44100)`` frames (the input is
decoded, converted, then cut or padded with silence to that length):

* text-to-audio: :func:`tones` of the prompt and seed;
* audio-to-audio: ``(input * (1024 - k) + tones * k) >> 10`` per sample with ``k = round(strength * 512)``,
  so the input always weighs at least half (strength 1 goes "as far as possible" from it);
* inpaint: the input, with frames ``round(mask_start * 44100)`` to ``round(mask_end * 44100)``
  (exclusive) replaced by the same frames of :func:`tones`.

Only 16-bit PCM WAV input (mono or stereo, any sample rate) is decoded; other input (mp3, 24-bit
WAV, ...) falls back to text-to-audio from the prompt, and the ledger says ``derived_from_input: false``.
An input's length, for validation, is :func:`audio_seconds`: a 16-bit PCM WAV's from its header, an
MPEG Layer III stream's by walking its frame headers (no decoding).

``output_format=mp3`` gives a valid MPEG-1 Layer III stream (128 kbit/s, 44.1 kHz, stereo) of
silent frames covering the duration, behind an ID3v2.4 tag whose ``TXXX:emulator-wav-sha256`` frame
is the SHA-256 of the WAV the same request gives with ``output_format=wav``: the emulator encodes no
MP3 audio, but the file says what it stands for.
"""

from __future__ import annotations

import hashlib
import math
import struct
import sys
from array import array
from typing import TYPE_CHECKING

from .audio import CHANNELS, HEADER_SIZE, SAMPLE_WIDTH, synthesize_wav, wav_header

if TYPE_CHECKING:
    from .stability_form import StabilityRequest

SAMPLE_RATE = 44100
MP3_FRAME_SAMPLES = 1152
MP3_FRAME_HEADER = b"\xff\xfb\x90\x04"  # MPEG-1 Layer III, no CRC, 128 kbit/s, 44.1 kHz, stereo
MP3_FRAME_BYTES = 144 * 128000 // SAMPLE_RATE  # 417, no padding
MP3_TAG_DESCRIPTION = "emulator-wav-sha256"
_MPEG_RATES = (44100, 48000, 32000)  # MPEG-1; MPEG-2 halves them, MPEG-2.5 quarters them
_LAYER3_KBPS_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_LAYER3_KBPS_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)  # MPEG-2 and 2.5
_BLOCK = SAMPLE_RATE * CHANNELS  # samples per mixing block (bounds the temporary lists)
_EXTENSIBLE = 0xFFFE
_PCM_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def is_audio(data: bytes) -> bool:
    """Whether ``data`` starts like a WAV (``RIFF....WAVE``) or an mp3 (``ID3`` or an MPEG frame sync)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return True
    return data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)


def _chunks(data: bytes) -> dict[bytes, tuple[int, int]]:
    """The RIFF chunks of a WAV: id -> (offset of the body, size), the data size clipped to the file."""
    found: dict[bytes, tuple[int, int]] = {}
    offset = 12
    while offset + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, offset)
        found.setdefault(chunk_id, (offset + 8, min(size, len(data) - offset - 8)))
        offset += 8 + size + (size & 1)
    return found


def _pcm16_format(data: bytes) -> tuple[int, int, int, int] | None:
    """(channels, sample rate, data offset, data size) of a 16-bit PCM WAV, else None."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    chunks = _chunks(data)
    if b"fmt " not in chunks or b"data" not in chunks or chunks[b"fmt "][1] < 16:
        return None
    fmt_at = chunks[b"fmt "][0]
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, fmt_at)
    if tag == _EXTENSIBLE and chunks[b"fmt "][1] >= 40:
        tag = 1 if data[fmt_at + 26 : fmt_at + 40] == _PCM_GUID_TAIL and data[fmt_at + 24] == 1 else 0
    if tag != 1 or bits != 16 or channels not in (1, 2) or rate <= 0:
        return None
    return channels, rate, *chunks[b"data"]


def wav_seconds(data: bytes) -> float | None:
    """The length of a 16-bit PCM WAV in seconds (None for anything else)."""
    found = _pcm16_format(data)
    if found is None:
        return None
    channels, rate, _, size = found
    return size // (channels * SAMPLE_WIDTH) / rate


def _after_id3(data: bytes) -> int:
    """The offset past the ID3v2 tags at the start of ``data`` (10-byte header, syncsafe size, footer)."""
    pos = 0
    while data[pos : pos + 3] == b"ID3" and len(data) >= pos + 10:
        size = sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[pos + 6 : pos + 10]))
        pos += 10 + size + (10 if data[pos + 5] & 0x10 else 0)
    return pos


def _layer3_frame(header: bytes) -> tuple[int, int, int] | None:
    """(bytes, samples, sample rate) of the MPEG Layer III frame ``header`` starts, or None."""
    b1, b2 = header[1], header[2]
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 3
    if header[0] != 0xFF or b1 & 0xE0 != 0xE0 or version == 1 or layer != 1:
        return None  # not a frame sync, a reserved version, or not Layer III
    if bitrate_index in (0, 15) or rate_index == 3:
        return None  # free format (length unknown) or reserved values
    mpeg1 = version == 3
    rate = _MPEG_RATES[rate_index] >> (0 if mpeg1 else 1 if version == 2 else 2)
    kbps = (_LAYER3_KBPS_V1 if mpeg1 else _LAYER3_KBPS_V2)[bitrate_index]
    samples = MP3_FRAME_SAMPLES if mpeg1 else MP3_FRAME_SAMPLES // 2
    return samples // 8 * kbps * 1000 // rate + ((b2 >> 1) & 1), samples, rate


def mp3_seconds(data: bytes) -> tuple[float, float] | None:
    """The length of an MPEG Layer III stream (after its ID3v2 tags) from its frames' headers:
    (shortest, longest), as the last frame may be mostly the encoder's padding.

    Counts the frames that follow one another from the first; what follows them (an ID3v1 tag,
    junk) is ignored. None when no frame starts right after the tags (free format, Layers I/II, ...).
    """
    pos, seconds, last = _after_id3(data), 0.0, 0.0
    while len(data) >= pos + 4:
        frame = _layer3_frame(data[pos : pos + 4])
        if frame is None:
            break
        size, samples, rate = frame
        last = samples / rate
        seconds += last
        pos += size
    return (seconds - last, seconds) if seconds else None


def audio_seconds(data: bytes) -> tuple[float, float] | None:
    """The length of an input clip in seconds, (shortest, longest): exact for a 16-bit PCM WAV,
    within one frame for MPEG Layer III, None for anything else."""
    if data[:4] == b"RIFF":
        seconds = wav_seconds(data)
        return None if seconds is None else (seconds, seconds)
    return mp3_seconds(data)


def decode_wav(data: bytes) -> array[int] | None:
    """The interleaved 44.1 kHz stereo samples of a 16-bit PCM WAV (resampled by nearest frame), or None."""
    found = _pcm16_format(data)
    if found is None:
        return None
    channels, rate, offset, size = found
    size -= size % (channels * SAMPLE_WIDTH)
    samples = array("h", data[offset : offset + size])
    if sys.byteorder == "big":
        samples.byteswap()
    if channels == 1:
        stereo = array("h", bytes(2 * len(samples) * SAMPLE_WIDTH))
        stereo[0::2] = samples
        stereo[1::2] = samples
        samples = stereo
    if rate != SAMPLE_RATE:
        frames = len(samples) // 2 * SAMPLE_RATE // rate
        resampled = array("h", bytes(frames * CHANNELS * SAMPLE_WIDTH))
        picks = [i * rate // SAMPLE_RATE for i in range(frames)]
        resampled[0::2] = array("h", [samples[2 * j] for j in picks])
        resampled[1::2] = array("h", [samples[2 * j + 1] for j in picks])
        samples = resampled
    return samples


def frames_of(duration: float) -> int:
    return round(duration * SAMPLE_RATE)


def tones(prompt: str, seed: int, frames: int) -> array[int]:
    """The emulator's tones for a prompt and seed: ``frames`` interleaved stereo frames."""
    wav = synthesize_wav(f"{prompt}\n#seed={seed}", math.ceil(frames / SAMPLE_RATE))
    samples = array("h", wav[HEADER_SIZE : HEADER_SIZE + frames * CHANNELS * SAMPLE_WIDTH])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def fit(samples: array[int], frames: int) -> array[int]:
    """``samples`` cut, or padded with silence, to ``frames`` stereo frames."""
    wanted = frames * CHANNELS
    if len(samples) >= wanted:
        return samples[:wanted]
    return samples + array("h", bytes((wanted - len(samples)) * SAMPLE_WIDTH))


def mix(source: array[int], tone: array[int], strength: float) -> array[int]:
    """The audio-to-audio mix (see the module docstring), block by block to bound memory."""
    k = round(strength * 512)
    keep = 1024 - k
    out = array("h")
    for start in range(0, len(source), _BLOCK):
        pairs = zip(source[start : start + _BLOCK], tone[start : start + _BLOCK], strict=True)
        out.extend([(a * keep + b * k) >> 10 for a, b in pairs])
    return out


def inpaint(source: array[int], tone: array[int], mask_start: float, mask_end: float) -> array[int]:
    """``source`` with the masked frames replaced by ``tone``'s (see the module docstring)."""
    frames = len(source) // CHANNELS
    start, end = (min(frames, frames_of(t)) * CHANNELS for t in (mask_start, mask_end))
    out = array("h", source)
    out[start:end] = tone[start:end]
    return out


def wav_file(samples: array[int]) -> bytes:
    """A 44.1 kHz stereo 16-bit PCM WAV file of interleaved ``samples``."""
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return wav_header(len(samples) * SAMPLE_WIDTH, SAMPLE_RATE) + samples.tobytes()


def _syncsafe(value: int) -> bytes:
    return bytes((value >> shift) & 0x7F for shift in (21, 14, 7, 0))


def mp3_file(frames: int, wav_sha256: str) -> bytes:
    """An ID3v2.4 tag naming ``wav_sha256``, then silent MPEG frames covering ``frames`` samples."""
    text = b"\x03" + MP3_TAG_DESCRIPTION.encode() + b"\x00" + wav_sha256.encode()
    tag_frame = b"TXXX" + _syncsafe(len(text)) + b"\x00\x00" + text
    tag = b"ID3\x04\x00\x00" + _syncsafe(len(tag_frame)) + tag_frame
    # Zero side information and no main data: every decoder plays the frame as silence.
    silent = MP3_FRAME_HEADER + bytes(MP3_FRAME_BYTES - len(MP3_FRAME_HEADER))
    return tag + silent * math.ceil(frames / MP3_FRAME_SAMPLES)


def render(request: StabilityRequest, seed: int, filtered: bool) -> tuple[bytes, str, bool]:
    """Return the file a request produces, its SHA-256 and whether it derives from the input audio.

    Runs off the event loop (pure: reads only its arguments). ``filtered`` gives silence.
    """
    frames = frames_of(request.duration)
    source = decode_wav(request.audio) if request.audio is not None else None
    derived = source is not None and not filtered
    if filtered:
        samples = array("h", bytes(frames * CHANNELS * SAMPLE_WIDTH))
    elif source is None:
        samples = tones(request.prompt, seed, frames)
    elif request.mode == "audio-to-audio":
        strength = request.number("strength")  # 0 is a strength (the input alone), not "unset"
        tone = tones(request.prompt, seed, frames)
        samples = mix(fit(source, frames), tone, 1 if strength is None else strength)
    else:
        start, end = request.number("mask_start") or 0, request.number("mask_end") or 0
        samples = inpaint(fit(source, frames), tones(request.prompt, seed, frames), start, end)
    data = wav_file(samples)
    if request.output_format == "mp3":
        data = mp3_file(frames, hashlib.sha256(data).hexdigest())
    return data, hashlib.sha256(data).hexdigest(), derived
