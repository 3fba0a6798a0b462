"""The input clip of ``audio-to-audio`` and ``inpaint``: checked before anything is paid for, streamed.

``init_audio`` is a local path, a URI (through fsspec: ``memory://``, ``s3://`` with its fsspec
package installed, ...) or an ``ObjectStoragePath`` (anything with ``.fs`` and ``.path``; the scheme's
Airflow connection then applies). No Airflow imports.

:meth:`InputAudio.open` checks that the clip exists, is mp3 or wav (from its first bytes) and, given a
model's :class:`InputAudioLimits`, that its size is within the model's limit and its length, where the
headers tell it cheaply (:mod:`~airflow_provider_stableaudio.audio_length`), within the model's range:
so a clip the model would refuse fails before the upload. A length that cannot be measured is accepted
(the service judges). Without limits, the clip is checked against :data:`MAX_INPUT_BYTES` only and its
length is not measured (the behaviour before the limits were per model).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio.audio_length import measure_seconds
from airflow_provider_stableaudio.exceptions import StableAudioValidationError

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The largest input clip :meth:`InputAudio.open` takes without limits: 50 MB, read as 50 * 10**6 bytes,
#: the stricter reading of the contract's "50 MB" (a clip this accepts is within either reading).
MAX_INPUT_BYTES = 50 * 1000 * 1000
CHUNK_SIZE = 1 << 16
#: How far beyond ``max_seconds`` a measured length may go and still be left to the service: an mp3's
#: frames (without a LAME tag to say so) hold the encoder's delay and padding besides the audio, some
#: hundredths of a second at 44.1 kHz, and where the service rounds at the bound is unknown. None below
#: ``min_seconds``: a measured length is not shorter than what plays (a WAV's is exact; an mp3's counts
#: whole frames), so a clip measured too short is too short.
MAX_SECONDS_ALLOWANCE = 0.1
_FIELD = "init_audio"


@dataclass(frozen=True)
class InputAudioLimits:
    """What one model takes as ``init_audio``.

    :param model: the model, for messages, such as ``"stable-audio-3"``.
    :param max_bytes: the largest file, in bytes (``100 * 10**6`` for 100 MB).
    :param min_seconds: the shortest clip.
    :param max_seconds: the longest clip.
    """

    model: str
    max_bytes: int
    min_seconds: float
    max_seconds: float

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or not 0 <= self.min_seconds <= self.max_seconds:
            raise ValueError(f"inconsistent input audio limits: {self!r}")


def sniff_content_type(head: bytes) -> str | None:
    """``audio/wav`` or ``audio/mpeg`` from a file's first bytes; ``None`` for anything else.

    WAV: ``RIFF....WAVE``; MP3: an ID3 tag, or an MPEG audio frame sync (11 bits set: ``0xFF 0xE?``).
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    return None


def _invalid(message: str) -> StableAudioValidationError:
    return StableAudioValidationError(message, field=_FIELD)


def _megabytes(size: int) -> str:
    return f"{size / 10**6:g} MB"


def _seconds_outside(seconds: float, bound: float) -> str:
    """``seconds`` with the fewest decimals (at least one) that still show it beyond ``bound``."""
    for decimals in range(1, 7):
        text = f"{seconds:.{decimals}f}"
        if (float(text) < bound) == (seconds < bound) and float(text) != bound:
            return text
    return repr(seconds)


def _filesystem(value: Any) -> tuple[Any, str, str]:
    """``(fsspec filesystem, path on it, location as the user wrote it)`` for ``value``."""
    if hasattr(value, "fs") and hasattr(value, "path"):  # an ObjectStoragePath
        return value.fs, value.path, str(value)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise _invalid(
            f"init_audio must be a local path, a URI or an ObjectStoragePath, got {value!r} "
            f"({type(value).__name__})"
        )
    import fsspec.core  # only when there is a clip to read: DAG files parse without it

    if "://" in value and not value.startswith("file://"):
        try:
            fs, path = fsspec.core.url_to_fs(value)
        except (ImportError, ValueError) as exc:
            raise _invalid(
                f"init_audio {value!r}: no filesystem for this scheme ({exc}); install its fsspec "
                "implementation, or pass an ObjectStoragePath"
            ) from exc
        return fs, path, value
    local = os.path.abspath(os.path.expanduser(value.removeprefix("file://")))
    return fsspec.filesystem("file"), local, value


def _check_length(location: str, seconds: float, limits: InputAudioLimits) -> None:
    if seconds < limits.min_seconds:
        shown = _seconds_outside(seconds, limits.min_seconds)
    elif seconds > limits.max_seconds + MAX_SECONDS_ALLOWANCE:
        shown = _seconds_outside(seconds, limits.max_seconds)
    else:
        return
    raise _invalid(
        f"init_audio {location!r} is {shown} s long; {limits.model} takes input clips of "
        f"{limits.min_seconds:g} to {limits.max_seconds:g} s"
    )


@dataclass(frozen=True)
class InputAudio:
    """A checked input clip: it exists, is mp3 or wav, and is within the limits it was opened with.

    Build it with :meth:`open`. Holds no audio in memory: :meth:`chunks` reads the file anew each time.
    Two clips are equal when they are the same file of the same size and type: ``seconds`` is left out.

    :param location: where the clip is, as the user wrote it (path or URI).
    :param size: its size in bytes, when checked.
    :param file_name: its name, sent as the file part's ``filename``.
    :param content_type: ``audio/wav`` or ``audio/mpeg``, from its first bytes.
    :param fs: the fsspec filesystem that holds it.
    :param path: its path on ``fs``.
    :param seconds: its length in seconds as measured from its headers, or ``None``: not measured
        (opened without limits, or :meth:`described`) or not measurable cheaply (see
        :mod:`~airflow_provider_stableaudio.audio_length`).
    """

    location: str
    size: int
    file_name: str
    content_type: str
    fs: Any = field(repr=False, compare=False)
    path: str = field(repr=False)
    seconds: float | None = field(default=None, compare=False)

    @classmethod
    def open(cls, value: Any, limits: InputAudioLimits | None = None) -> InputAudio:
        """Check the clip at ``value`` (a local path, a URI or an ``ObjectStoragePath``).

        :param value: the clip; an :class:`InputAudio` is taken as it is without ``limits``, and opened
            anew to be checked against them with ``limits``.
        :param limits: the model's limits: the size is checked against ``max_bytes``, and the length,
            when it can be measured, against ``min_seconds`` to ``max_seconds`` (see
            :data:`MAX_SECONDS_ALLOWANCE`). ``None``: the size against :data:`MAX_INPUT_BYTES`, and
            the length neither measured nor checked.
        :raises StableAudioValidationError: (``field="init_audio"``) it does not exist, is a folder,
            cannot be read, is not mp3 or wav, is larger than the limit, or is measured as shorter or
            longer than the model takes.
        """
        if isinstance(value, InputAudio):
            if limits is None:
                return value
            fs, path, location = value.fs, value.path, value.location
        else:
            fs, path, location = _filesystem(value)
        if not fs.exists(path):
            raise _invalid(f"init_audio {location!r} does not exist")
        if fs.isdir(path):
            raise _invalid(f"init_audio {location!r} is a folder: give the path of an mp3 or wav file")
        size = int(fs.size(path))
        # The file alone is compared with the limit, though Stability's 100 MB (Stable Audio 3) bounds the
        # whole request: the form fields beside it take at most some 41 kB (a 10,000-character prompt in
        # UTF-8, the numbers, the part headers), under 0.05 % of it. Refusing a 99.99 MB file as "over
        # 100 MB" would be wrong by what the user sees, and would refuse files the service takes if its
        # "MB" is a MiB (4.8 % more); a file within 41 kB of the limit that the service does refuse fails
        # with a 413 before any generation, which is not charged.
        if limits is None and size > MAX_INPUT_BYTES:
            raise _invalid(
                f"init_audio {location!r} is {size:,} bytes; the limit is 50 MB ({MAX_INPUT_BYTES:,} bytes)"
            )
        if limits is not None and size > limits.max_bytes:
            raise _invalid(
                f"init_audio {location!r} is {size:,} bytes; {limits.model} takes at most "
                f"{_megabytes(limits.max_bytes)} ({limits.max_bytes:,} bytes)"
            )
        try:
            with fs.open(path, "rb") as file:
                head = file.read(12)
                content_type = sniff_content_type(head)
                seconds = None
                if content_type is not None and limits is not None:
                    seconds = measure_seconds(file, size, content_type)  # never raises: None if unknown
        except OSError as exc:
            raise _invalid(f"init_audio {location!r} cannot be read: {exc}") from exc
        if content_type is None:
            raise _invalid(
                f"init_audio {location!r} is not mp3 or wav audio: its first bytes {head[:12]!r} are none of "
                "'RIFF....WAVE', 'ID3' or an MPEG frame sync"
            )
        if limits is not None and seconds is not None:
            _check_length(location, seconds, limits)
        file_name = posixpath.basename(str(path).rstrip("/")) or "audio"
        return cls(location, size, file_name, content_type, fs, path, seconds)

    @classmethod
    def described(cls, value: Any) -> InputAudio:
        """The clip at ``value`` as the request named it, neither opened nor checked (``size`` -1).

        For describing a request whose clip was already sent (lineage, the asset event): the worker
        that resumes a task may not reach the file the submitting one read.
        """
        if isinstance(value, InputAudio):
            return value
        fs, path, location = _filesystem(value)
        file_name = posixpath.basename(str(path).rstrip("/")) or "audio"
        return cls(location, -1, file_name, "", fs, path)

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The clip's bytes, ``chunk_size`` at a time, from a new read of the file on each call.

        :raises StableAudioValidationError: the file no longer has the size it was checked with (a
            body announced with that length would be cut short or overrun).
        """
        sent = 0
        with self.fs.open(self.path, "rb") as file:
            while sent < self.size:
                chunk = file.read(min(chunk_size, self.size - sent))
                if not chunk:
                    break
                sent += len(chunk)
                yield chunk
            overrun = file.read(1) if sent == self.size else b""
        if sent != self.size or overrun:
            now = "more" if overrun else f"{sent:,}"
            raise _invalid(
                f"init_audio {self.location!r} changed while being sent: checked at {self.size:,} bytes, "
                f"now {now} bytes"
            )
