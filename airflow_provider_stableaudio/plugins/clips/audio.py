"""Serving a clip's audio: only from where the provider recorded it, checked, with HTTP Range support.

The location comes from the clip's ``local_path`` XCom, never from the request. XComs can be written
by any task of the DAG (and through the REST API), so a recorded location is still checked before a
byte is served: a local path must be absolute, without ``..``, a regular file that starts like audio
and, when the record says its size, is that size; a remote one must be on object storage (``s3://``,
``gs://``, ...), never ``http(s)://`` or another scheme that would make the server fetch a URL (SSRF).
A clip known only by its URL is played by the browser from that URL; the server never fetches it.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio.audio_length import measure_seconds
from airflow_provider_stableaudio.input_audio import sniff_content_type

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: Object stores whose clips stream through the server (schemes of fsspec filesystems). Not http(s),
#: ftp, sftp, ...: those would have the server fetch whatever a record names.
REMOTE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oss", "memory"})
CHUNK = 256 * 1024
_HEAD = 16
_RANGE = re.compile(r"bytes=(?P<start>[0-9]{0,18})-(?P<end>[0-9]{0,18})")


class ClipUnavailable(Exception):
    """The clip cannot be served; the message says why, for the person at the page.

    :param message: what happened, without the location (the page is no place to map a file system).
    :param status: the HTTP status for it.
    """

    def __init__(self, message: str, *, status: int = 404) -> None:
        super().__init__(message)
        self.status = status


def sniff(head: bytes) -> str | None:
    """The media type of audio starting with ``head`` (WAV, MP3, FLAC, Ogg), else ``None``."""
    if head[:4] == b"fLaC":
        return "audio/flac"
    if head[:4] == b"OggS":
        return "audio/ogg"
    return sniff_content_type(head)


@dataclass
class AudioSource:
    """A recorded clip, checked and ready to read.

    :param size: its size in bytes.
    :param content_type: its media type, from its first bytes.
    :param opener: opens it for binary reading.
    """

    size: int
    content_type: str
    opener: Callable[[], Any]

    def seconds(self) -> float | None:
        """Its length, from its header (WAV, MP3), or ``None``."""
        try:
            with self.opener() as file:
                return measure_seconds(file, self.size, self.content_type)
        except OSError:
            raise ClipUnavailable("The clip's file cannot be read.") from None

    def stream(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (inclusive), in chunks."""
        with self.opener() as file:
            file.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = file.read(min(CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk


def _scheme(location: str) -> str:
    return location.split("://", 1)[0].lower() if "://" in location else ""


def is_remote(location: str) -> bool:
    return bool(_scheme(location)) and _scheme(location) != "file"


def open_recorded(location: str, *, recorded_size: Any = None) -> AudioSource:
    """The clip at ``location`` (a ``local_path`` record), after the checks of this module's docstring.

    :param recorded_size: the ``file_size`` the provider recorded, when it did.
    :raises ClipUnavailable: it is gone, or not something this page serves.
    """
    source = _remote(location) if is_remote(location) else _local(location.removeprefix("file://"))
    if (
        isinstance(recorded_size, int)
        and not isinstance(recorded_size, bool)
        and recorded_size != source.size
    ):
        raise ClipUnavailable("The file was replaced since the clip was made (its size differs).", status=409)
    return source


def _local(path: str) -> AudioSource:
    if not os.path.isabs(path) or ".." in PurePosixPath(path).parts or "\x00" in path:
        raise ClipUnavailable("The clip's recorded location is not an absolute path.", status=403)
    try:
        # O_NOFOLLOW is not enough (it checks the last part only); a symlinked file is judged by
        # its content like any other, below.
        stat = os.stat(path)
    except OSError:
        raise ClipUnavailable("The clip's file is gone.") from None
    if not os.path.isfile(path):
        raise ClipUnavailable("The clip's recorded location is not a file.", status=403)
    try:
        with open(path, "rb") as file:
            head = file.read(_HEAD)
    except OSError:  # unreadable by the api-server, or gone since the stat: never a 500 for the listing
        raise ClipUnavailable("The clip's file cannot be read.") from None
    content_type = sniff(head)
    if content_type is None:
        raise ClipUnavailable("The file at the clip's recorded location is not audio.", status=403)
    return AudioSource(size=stat.st_size, content_type=content_type, opener=lambda: open(path, "rb"))


def _remote(location: str) -> AudioSource:
    if _scheme(location) not in REMOTE_SCHEMES:
        raise ClipUnavailable("The clip's recorded location is not on object storage.", status=403)
    if "@" in location.split("://", 1)[1].split("/", 1)[0]:
        # A connection id in the URI (s3://conn@bucket/key) would read through any connection.
        raise ClipUnavailable("The clip's recorded location names a connection.", status=403)
    from airflow_provider_stableaudio import storage

    try:
        resolved = storage.resolve(location)
    except Exception:
        raise ClipUnavailable("No file system serves the clip's recorded location.", status=403) from None
    if not isinstance(resolved, tuple):
        raise ClipUnavailable("The clip's recorded location is not on object storage.", status=403)
    fs, path = resolved
    try:
        size = int(fs.size(path))
        with fs.open(path, "rb") as file:
            head = file.read(_HEAD)
    except FileNotFoundError:
        raise ClipUnavailable("The clip's file is gone from its store.") from None
    except Exception:
        raise ClipUnavailable("The clip's store did not answer.", status=502) from None
    content_type = sniff(head)
    if content_type is None:
        raise ClipUnavailable("The object at the clip's recorded location is not audio.", status=403)
    return AudioSource(size=size, content_type=content_type, opener=lambda: fs.open(path, "rb"))


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(start, end)`` a ``Range`` header asks of ``size`` bytes; ``None``: all of it.

    Several ranges are answered with the whole file (allowed by RFC 9110, and no player asks so).

    :raises ClipUnavailable: (416) a range outside the file.
    """
    if not header or "," in header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None  # not a byte range: ignored, as RFC 9110 says
    first, last = match["start"], match["end"]
    if not first and not last:
        return None
    if not first:  # the last N bytes
        count = int(last)
        if count == 0:
            raise ClipUnavailable("Range not satisfiable.", status=416)
        return max(0, size - count), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None  # an invalid range is ignored (RFC 9110): the whole file
    if start >= size:
        raise ClipUnavailable("Range not satisfiable.", status=416)
    return start, end


def measured_seconds(location: str | None) -> float | None:
    """The length of a stored local clip, from its header; ``None`` when not local or unreadable."""
    if not location or is_remote(location):
        return None
    with contextlib.suppress(ClipUnavailable, OSError):
        return _local(location.removeprefix("file://")).seconds()
    return None
