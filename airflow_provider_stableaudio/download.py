"""Fetching a clip from its audio URL into storage: streamed, checked, whole or not at all.

A transient failure (a dropped or timed-out connection, 429, 5xx, a body cut short) is retried
here, with the provider's backoff: on Airflow before 3.3 a task retry would pay for a new
generation. An expired URL (403, 404, 410) is not retried. No Airflow imports; ``requests`` is
imported when a download runs, not with this module.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio import storage
from airflow_provider_stableaudio.api_errors import RETRYABLE_STATUSES, parse_retry_after
from airflow_provider_stableaudio.exceptions import StableAudioDownloadError, StableAudioStorageError
from airflow_provider_stableaudio.retry_policy import RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import requests

    from airflow_provider_stableaudio.storage import OutputPath

# 128 KiB: steady throughput whether memory is warm or cold (docs/performance.md), tiny RSS.
DOWNLOAD_CHUNK_BYTES = 128 * 1024
# The file is gone for good at these: another request cannot fetch it.
EXPIRED_STATUSES = frozenset({403, 404, 410})
# Failed attempts are retried for at most this long in all: a CDN down for longer fails the try.
RETRY_WINDOW_SECONDS = 300.0


class _TransientFailure(Exception):
    """One attempt failed in a way the next attempt may not."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def download_file(
    session: requests.Session,
    url: str,
    path: OutputPath,
    *,
    timeout: float,
    expected_size: int | None = None,
    max_retries: int = 5,
    log: Any = None,
    headers: dict[str, str] | None = None,
    lockout: float | None = None,
) -> tuple[str, int]:
    """Stream the file at ``url`` to ``path``; return ``(where it was written, bytes received)``.

    Chunks go to a temporary file beside ``path`` that is moved into place only once every byte
    arrived (checked against ``Content-Length`` and ``expected_size``); on any failure the
    temporary file is removed and nothing is left at ``path``. The file is never held whole in
    memory.

    :param session: the session to fetch with (it carries no API key: a CDN's URL gets none; a
        result fetched from the API itself gets it in ``headers``).
    :param url: the audio URL.
    :param path: a local path (its folder is created), a URI or an ``ObjectStoragePath``.
    :param timeout: seconds allowed to connect and between two chunks.
    :param expected_size: the ``file_size`` the API reported, if any.
    :param max_retries: retries of a transient failure, within :data:`RETRY_WINDOW_SECONDS`.
    :param log: where to warn about a retried failure (a ``logging.Logger``), if anywhere.
    :param headers: headers to send besides ``Accept-Encoding`` (the API's, for a result fetched
        from the API itself).
    :param lockout: seconds the server refuses the key after a 429 without ``Retry-After`` (a
        result fetched from Stability's API: 60).
    :raises StableAudioDownloadError: the file could not be fetched, written, or arrived whole.
    """
    target = storage.prepare(path)
    location = storage.describe(path, target)
    policy = RetryPolicy(max_retries=max_retries)
    deadline = time.monotonic() + RETRY_WINDOW_SECONDS
    failures = 0
    while True:
        try:
            return location, _fetch(
                session,
                url,
                target,
                location,
                timeout=timeout,
                expected_size=expected_size,
                headers={**(headers or {}), "Accept-Encoding": "identity"},
                lockout=lockout,
            )
        except _TransientFailure as failure:
            failures += 1
            delay = policy.delay(
                failures, retry_after=failure.retry_after, remaining=deadline - time.monotonic()
            )
            if delay is None:
                attempts = f"{failures} attempts" if failures > 1 else "1 attempt"
                raise StableAudioDownloadError(f"{failure} (gave up after {attempts})") from None
            if log is not None:
                log.warning("Download failed (%d in a row), retrying in %.1fs: %s", failures, delay, failure)
            time.sleep(delay)


def _fetch(
    session: requests.Session,
    url: str,
    target: Path | tuple[Any, str],
    location: str,
    *,
    timeout: float,
    expected_size: int | None,
    headers: dict[str, str],
    lockout: float | None,
) -> int:
    """One attempt; returns the bytes written, or raises :class:`_TransientFailure` or the final error."""
    import requests

    try:
        # identity (in headers): the byte counts are of the file itself, never of a compressed body.
        with session.get(url, stream=True, timeout=timeout, headers=headers) as response:
            status = response.status_code
            if status != 200:
                message = f"downloading {url} failed with HTTP {status}"
                if status in RETRYABLE_STATUSES:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    if status == 429 and retry_after is None:
                        retry_after = lockout
                    raise _TransientFailure(message, retry_after=retry_after)
                expired = status in EXPIRED_STATUSES
                hint = " (the URL may have expired)" if expired else ""
                raise StableAudioDownloadError(message + hint, url_expired=expired, status_code=status)
            return write_body(
                response,
                target,
                location,
                sizes={"Content-Length": response.headers.get("Content-Length"), "file_size": expected_size},
                # A reset, a timeout or a body cut short: the next attempt may get it whole.
                broken=lambda what: _TransientFailure(f"downloading {url} {what}"),
                # The URL can be fetched again: a store that failed once may take the next attempt.
                unwritable=_TransientFailure,
            )
    except requests.RequestException as exc:  # no answer at all
        raise _TransientFailure(f"downloading {url} failed: {exc}") from None


def write_body(
    response: requests.Response,
    target: Path | tuple[Any, str],
    location: str,
    *,
    sizes: dict[str, Any],
    broken: Callable[[str], Exception],
    unwritable: Callable[[str], Exception],
) -> int:
    """Stream ``response``'s body to ``target`` in chunks, whole or not at all; return its size.

    :param sizes: what each source (``Content-Length``, the API's ``file_size``) says the size is;
        a body of another size is ``broken``. ``Content-Length`` counts the bytes on the wire: a body
        sent compressed although ``identity`` was asked for is checked against those.
    :param broken: the error for a body that broke off or came short, given what happened.
    :param unwritable: the error for storage that failed ("could not store"), given what happened:
        any error its filesystem raised, not only ``OSError``.
    """
    import requests

    received = 0
    try:
        with storage.staged_write(target) as out:
            for chunk in response.iter_content(chunk_size=DOWNLOAD_CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
            for what, size in sizes.items():
                counted = _wire_bytes(response, received) if what == "Content-Length" else received
                if size is not None and str(size) != str(counted):
                    raise broken(f"got {counted} bytes but {what} says {size}: incomplete file")
    except requests.RequestException as exc:
        raise broken(f"failed after {received} bytes: {exc}") from None
    except StableAudioStorageError as exc:
        raise unwritable(f"writing the audio to {location} failed: {exc}") from exc
    return received


def _wire_bytes(response: requests.Response, received: int) -> int:
    """The body's bytes as sent: ``received`` unless it came encoded (``Content-Encoding``)."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return received
    return int(response.raw.tell())
