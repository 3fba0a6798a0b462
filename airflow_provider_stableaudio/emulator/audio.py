"""Deterministic, fast WAV synthesis for the emulator (standard library only)."""

from __future__ import annotations

import hashlib
import math
import struct
import sys
from array import array

CHANNELS = 2
SAMPLE_WIDTH = 2  # bytes: PCM 16-bit
HEADER_SIZE = 44

_PEAK = 16384  # about -6 dBFS
_TABLE_SIZE = 4096
_SCALES = ((0, 2, 4, 7, 9), (0, 3, 5, 7, 10))  # major and minor pentatonic
_NOTE_SECONDS = (0.2, 0.25, 0.3, 0.375)
_PATTERN_LENGTH = 16


def wav_size(seconds: int, *, sample_rate: int = 44100) -> int:
    """Return the byte length of the file :func:`synthesize_wav` produces."""
    return HEADER_SIZE + seconds * sample_rate * CHANNELS * SAMPLE_WIDTH


def _wavetable() -> list[float]:
    # One cycle of a soft, slightly bright tone, normalised to a peak of 1.0.
    cycle = [
        math.sin(x) + 0.35 * math.sin(2 * x) + 0.15 * math.sin(3 * x)
        for x in (2 * math.pi * i / _TABLE_SIZE for i in range(_TABLE_SIZE))
    ]
    peak = max(abs(v) for v in cycle)
    return [v / peak for v in cycle]


_TABLE = _wavetable()


def _envelope(frames: int, sample_rate: int) -> list[float]:
    # Short linear attack, exponential decay to about 25 % (never silent), and a short
    # release to zero so consecutive notes join without clicks.
    attack = max(1, int(0.01 * sample_rate))
    release = max(1, int(0.008 * sample_rate))
    decay = math.log(0.25) / max(1, frames - attack)
    return [
        (i / attack if i < attack else math.exp(decay * (i - attack))) * min(1.0, (frames - i) / release)
        for i in range(frames)
    ]


def _note_bytes(freq: float, pan: float, env: list[float], sample_rate: int) -> bytes:
    """Render one note as interleaved little-endian stereo frames."""
    step = freq * _TABLE_SIZE / sample_rate
    table, mask = _TABLE, _TABLE_SIZE - 1
    mono = [table[int(i * step) & mask] * e for i, e in enumerate(env)]
    # The louder side sits at full gain, so the peak stays near -6 dBFS.
    left_gain, right_gain = _PEAK * min(1.0, 1.0 - pan), _PEAK * min(1.0, 1.0 + pan)
    frames = array("h", bytes(len(mono) * CHANNELS * SAMPLE_WIDTH))
    frames[0::2] = array("h", [int(v * left_gain) for v in mono])
    frames[1::2] = array("h", [int(v * right_gain) for v in mono])
    if sys.byteorder == "big":
        frames.byteswap()
    return frames.tobytes()


def synthesize_wav(prompt: str, seconds: int, *, sample_rate: int = 44100) -> bytes:
    """Return a stereo 16-bit PCM WAV file of exactly ``seconds`` seconds.

    The melody (scale, root, tempo, notes and panning) is derived from a SHA-256 of the
    prompt, so the same prompt always gives the same bytes.
    """
    if seconds < 0 or sample_rate <= 0:
        raise ValueError("seconds must be >= 0 and sample_rate > 0")
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    scale = _SCALES[digest[0] % len(_SCALES)]
    root = 57 + digest[1] % 12  # A3 .. G#4
    note_frames = max(1, round(_NOTE_SECONDS[digest[2] % len(_NOTE_SECONDS)] * sample_rate))
    pattern = [digest[3 + i] % (2 * len(scale)) for i in range(_PATTERN_LENGTH)]

    env = _envelope(note_frames, sample_rate)
    notes: dict[int, bytes] = {}
    for degree in set(pattern):  # each distinct note is rendered once
        octave, index = divmod(degree, len(scale))
        midi = root + 12 * octave + scale[index]
        pan = (digest[20 + degree] / 255.0 - 0.5) * 1.2  # -0.6 .. 0.6
        notes[degree] = _note_bytes(440.0 * 2 ** ((midi - 69) / 12), pan, env, sample_rate)

    total_frames = seconds * sample_rate
    full, rest = divmod(total_frames, note_frames)
    chunks = [notes[pattern[k % _PATTERN_LENGTH]] for k in range(full)]
    if rest:
        chunks.append(notes[pattern[full % _PATTERN_LENGTH]][: rest * CHANNELS * SAMPLE_WIDTH])
    return b"".join([wav_header(total_frames * CHANNELS * SAMPLE_WIDTH, sample_rate), *chunks])


def wav_header(data_size: int, sample_rate: int = 44100) -> bytes:
    """The 44-byte header of a stereo 16-bit PCM WAV file holding ``data_size`` bytes of samples."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        HEADER_SIZE - 8 + data_size,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        CHANNELS,
        sample_rate,
        sample_rate * CHANNELS * SAMPLE_WIDTH,
        CHANNELS * SAMPLE_WIDTH,
        SAMPLE_WIDTH * 8,
        b"data",
        data_size,
    )
