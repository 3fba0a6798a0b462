"""The input clip of ``audio-to-audio`` and ``inpaint``: checked before anything is paid for, streamed.

``init_audio`` is a local path, a URI (through fsspec: ``memory://``, ``s3://`` with its fsspec
package installed, ...) or an ``ObjectStoragePath`` (anything with ``.fs`` and ``.path``; the scheme's
Airflow connection then applies). No Airflow imports.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio.exceptions import StableAudioValidationError

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The largest input clip the API takes: 50 MB, read as 50 * 10**6 bytes, the stricter reading of the
#: contract's "50 MB" (a clip this accepts is within either reading).
MAX_INPUT_BYTES = 50 * 1000 * 1000
CHUNK_SIZE = 1 << 16
_FIELD = "init_audio"


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


@dataclass(frozen=True)
class InputAudio:
    """A checked input clip: it exists, is mp3 or wav, and is at most :data:`MAX_INPUT_BYTES`.

    Build it with :meth:`open`. Holds no audio in memory: :meth:`chunks` reads the file anew each time.

    :param location: where the clip is, as the user wrote it (path or URI).
    :param size: its size in bytes, when checked.
    :param file_name: its name, sent as the file part's ``filename``.
    :param content_type: ``audio/wav`` or ``audio/mpeg``, from its first bytes.
    :param fs: the fsspec filesystem that holds it.
    :param path: its path on ``fs``.
    """

    location: str
    size: int
    file_name: str
    content_type: str
    fs: Any = field(repr=False, compare=False)
    path: str = field(repr=False)

    @classmethod
    def open(cls, value: Any) -> InputAudio:
        """Check the clip at ``value`` (a local path, a URI or an ``ObjectStoragePath``).

        :raises StableAudioValidationError: (``field="init_audio"``) it does not exist, is a folder,
            cannot be read, is not mp3 or wav, or is larger than :data:`MAX_INPUT_BYTES`.
        """
        if isinstance(value, InputAudio):
            return value
        fs, path, location = _filesystem(value)
        if not fs.exists(path):
            raise _invalid(f"init_audio {location!r} does not exist")
        if fs.isdir(path):
            raise _invalid(f"init_audio {location!r} is a folder: give the path of an mp3 or wav file")
        size = int(fs.size(path))
        if size > MAX_INPUT_BYTES:
            raise _invalid(
                f"init_audio {location!r} is {size:,} bytes; the limit is 50 MB ({MAX_INPUT_BYTES:,} bytes)"
            )
        try:
            with fs.open(path, "rb") as file:
                head = file.read(12)
        except OSError as exc:
            raise _invalid(f"init_audio {location!r} cannot be read: {exc}") from exc
        content_type = sniff_content_type(head)
        if content_type is None:
            raise _invalid(
                f"init_audio {location!r} is not mp3 or wav audio: its first bytes {head[:12]!r} are none of "
                "'RIFF....WAVE', 'ID3' or an MPEG frame sync"
            )
        file_name = posixpath.basename(str(path).rstrip("/")) or "audio"
        return cls(location, size, file_name, content_type, fs, path)

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
