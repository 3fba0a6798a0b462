"""Fetching a clip from its audio URL into storage: streamed, checked, whole or not at all.

The URL comes from the API's answer and is not trusted (:mod:`.untrusted_url`): a scheme other than
https (http only for a connection that is itself http) fails at once; every address of its host is
checked before a connection is made, and the connection goes to those checked addresses
(:mod:`.pinned_http`), so a second lookup cannot swap them; each redirect is checked the same way,
and loses the API's key when it leaves the host; an answer that is not audio is refused before
anything is stored; the bytes are capped (the API's ``file_size``, else the connection's
``max_download_bytes``), and so is the whole download's time.

A transient failure (a dropped or timed-out connection, 429, 5xx, a body cut short) is retried
here, with the provider's backoff: on Airflow before 3.3 a task retry would pay for a new
generation. An expired URL (403, 404, 410) is not retried, nor is a refused one. No Airflow imports;
``requests`` is imported when a download runs, not with this module.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from airflow_provider_stableaudio import storage, untrusted_url
from airflow_provider_stableaudio.api_errors import RETRYABLE_STATUSES, parse_retry_after
from airflow_provider_stableaudio.exceptions import StableAudioDownloadError, StableAudioStorageError
from airflow_provider_stableaudio.retry_policy import RetryPolicy
from airflow_provider_stableaudio.settings import DEFAULT_MAX_DOWNLOAD_BYTES
from airflow_provider_stableaudio.untrusted_url import UrlPolicy, check_audio_answer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager
    from pathlib import Path

    import requests

    from airflow_provider_stableaudio.storage import OutputPath

    # One request through the key's budget: yields record(status, Retry-After header) for its answer.
    Gate = Callable[[], AbstractContextManager[Callable[[int, str | None], None]]]

# 128 KiB: steady throughput whether memory is warm or cold (docs/performance.md), tiny RSS.
DOWNLOAD_CHUNK_BYTES = 128 * 1024
# The file is gone for good at these: another request cannot fetch it.
EXPIRED_STATUSES = frozenset({403, 404, 410})
# Failed attempts are retried for at most this long in all: a CDN down for longer fails the try.
RETRY_WINDOW_SECONDS = 300.0
# A whole download, every attempt and wait included, ends after this long: the timeout between two
# chunks alone never ends a body that trickles in a byte at a time.
DOWNLOAD_TIME_LIMIT_SECONDS = 1800.0
# Redirects followed (each one checked as the URL was); requests' own default is 30.
MAX_REDIRECTS = 5


def _unrecorded(status: int, retry_after: str | None) -> None:
    """A URL fetched without the key: its answers are no one's budget."""


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
    base_url: str,
    expected_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    time_limit: float = DOWNLOAD_TIME_LIMIT_SECONDS,
    max_retries: int = 5,
    log: Any = None,
    headers: dict[str, str] | None = None,
    lockout: float | None = None,
    gate: Gate | None = None,
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
    :param base_url: the connection's Base URL: its scheme and its host's kind of address say
        which URLs may be fetched (see :class:`~.untrusted_url.UrlPolicy`).
    :param expected_size: the ``file_size`` the API reported, if any: no more bytes are read.
    :param max_bytes: the most bytes read when the API reported no size.
    :param time_limit: seconds the whole download may take, attempts and waits included.
    :param max_retries: retries of a transient failure, within :data:`RETRY_WINDOW_SECONDS`.
    :param log: where to warn about a retried failure (a ``logging.Logger``), if anywhere.
    :param headers: headers to send besides ``Accept-Encoding`` (the API's, for a result fetched
        from the API itself; a redirect to another host drops ``Authorization``).
    :param lockout: seconds the server refuses the key after a 429 without ``Retry-After`` (a
        result fetched from Stability's API: 60).
    :param gate: the key's request budget, for a result fetched from the API with its key: each
        attempt waits for a slot in it, and reports its status (a 429 pauses the key).
    :raises StableAudioDownloadError: the file could not be fetched, written, or arrived whole, or
        the URL or its answer was refused.
    """
    policy = UrlPolicy.for_connection(base_url)
    policy.check_url(url)  # before storage is touched, and never retried
    limits = _Limits(url, expected_size, max_bytes, time_limit, policy)
    target = storage.prepare(path)
    location = storage.describe(path, target)
    retries = RetryPolicy(max_retries=max_retries)
    deadline = min(time.monotonic() + RETRY_WINDOW_SECONDS, limits.end)
    failures = 0
    while True:
        try:
            return location, _fetch(
                session,
                url,
                target,
                location,
                timeout=timeout,
                limits=limits,
                headers={**(headers or {}), "Accept-Encoding": "identity"},
                lockout=lockout,
                gate=gate,
            )
        except _TransientFailure as failure:
            failures += 1
            delay = retries.delay(
                failures, retry_after=failure.retry_after, remaining=deadline - time.monotonic()
            )
            if delay is None:
                attempts = f"{failures} attempts" if failures > 1 else "1 attempt"
                raise StableAudioDownloadError(f"{failure} (gave up after {attempts})") from None
            if log is not None:
                log.warning("Download failed (%d in a row), retrying in %.1fs: %s", failures, delay, failure)
            time.sleep(delay)


class _Limits:
    """What one download may fetch: from where (``policy``), how many bytes, until when."""

    def __init__(
        self, url: str, expected_size: int | None, max_bytes: int, time_limit: float, policy: UrlPolicy
    ) -> None:
        if expected_size is not None and expected_size > max_bytes:
            raise StableAudioDownloadError(
                f"refused to fetch {url}: the API reports {expected_size} bytes, more than the "
                f"{max_bytes} the connection allows (its max_download_bytes extra)"
            )
        self.policy = policy
        self.expected_size = expected_size
        self.max_bytes = max_bytes if expected_size is None else expected_size
        self.which = (
            "the connection's max_download_bytes"
            if expected_size is None
            else "the file_size the API reported"
        )
        self.time_limit = time_limit
        self.end = time.monotonic() + time_limit

    def too_large(self, url: str, declared: int | None = None) -> StableAudioDownloadError:
        what = f"its Content-Length, {declared}, is" if declared is not None else "its body runs to"
        return StableAudioDownloadError(
            f"refused the answer of {url}: {what} more than {self.max_bytes} bytes ({self.which}); "
            "nothing was stored"
        )

    def too_slow(self, url: str) -> StableAudioDownloadError:
        return StableAudioDownloadError(
            f"downloading {url} took longer than {self.time_limit:g}s, the limit of a whole download; "
            "nothing was stored"
        )


def _fetch(
    session: requests.Session,
    url: str,
    target: Path | tuple[Any, str],
    location: str,
    *,
    timeout: float,
    limits: _Limits,
    headers: dict[str, str],
    lockout: float | None,
    gate: Gate | None,
) -> int:
    """One attempt; returns the bytes written, or raises :class:`_TransientFailure` or the final error."""
    import requests

    if time.monotonic() >= limits.end:
        raise limits.too_slow(url)
    try:
        # identity (in headers): the byte counts are of the file itself, never of a compressed body.
        with (
            gate() if gate is not None else contextlib.nullcontext(_unrecorded) as record,
            _opened(session, url, headers=headers, timeout=timeout, policy=limits.policy) as response,
        ):
            status = response.status_code
            record(status, response.headers.get("Retry-After"))
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
            return _store(response, url, target, location, limits)
    except requests.RequestException as exc:  # no answer at all
        raise _TransientFailure(f"downloading {url} failed: {exc}") from None


@contextlib.contextmanager
def _opened(
    session: requests.Session, url: str, *, headers: dict[str, str], timeout: float, policy: UrlPolicy
) -> Iterator[requests.Response]:
    """The answer to GET ``url``, redirects followed one at a time, each checked before it is fetched."""
    adapters: list[requests.adapters.HTTPAdapter] = []
    response = None
    try:
        for _ in range(MAX_REDIRECTS + 1):
            response = _get(session, url, headers=headers, timeout=timeout, policy=policy, adapters=adapters)
            if not response.is_redirect:
                yield response
                return
            target = urljoin(url, response.headers["Location"])
            response.close()
            if _origin(target) != _origin(url):  # the API's key stays with the API's host
                headers = {name: value for name, value in headers.items() if name.lower() != "authorization"}
            url = target
        raise StableAudioDownloadError(f"refused to fetch {url}: more than {MAX_REDIRECTS} redirects")
    finally:
        if response is not None:
            response.close()
        for adapter in adapters:
            adapter.close()


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:  # refused by the check before it is fetched
        port = None
    return scheme, parts.hostname, port


def _get(
    session: requests.Session,
    url: str,
    *,
    headers: dict[str, str],
    timeout: float,
    policy: UrlPolicy,
    adapters: list[requests.adapters.HTTPAdapter],
) -> requests.Response:
    """One GET of ``url``, checked first: sent to the checked addresses of its host.

    Through a proxy (``HTTPS_PROXY``), the proxy connects, to the addresses its own lookup finds:
    the addresses checked are those the worker's lookup finds, when it finds any.
    """
    import requests
    from requests.utils import select_proxy

    from airflow_provider_stableaudio.pinned_http import PinnedAdapter

    host, port = policy.check_url(url)
    prepared = session.prepare_request(requests.Request("GET", url, headers=headers))
    settings = session.merge_environment_settings(prepared.url, {}, None, None, None)
    proxy = select_proxy(prepared.url or url, settings["proxies"])
    try:
        addresses = untrusted_url.resolve(host, port)
    except (OSError, UnicodeError) as exc:
        if proxy is None:
            raise _TransientFailure(f"downloading {url} failed: could not resolve {host}: {exc}") from None
        addresses = []  # the worker cannot resolve it, its proxy may: the proxy's rules decide
    else:
        policy.check_addresses(url, host, addresses)
    options: dict[str, Any] = {
        "stream": True,
        "timeout": timeout,
        "verify": settings["verify"],
        "cert": settings["cert"],
    }
    if proxy is not None:
        return session.send(prepared, allow_redirects=False, proxies=settings["proxies"], **options)
    adapter = PinnedAdapter(addresses)
    adapters.append(adapter)
    return adapter.send(prepared, proxies={}, **options)


def _store(
    response: requests.Response, url: str, target: Path | tuple[Any, str], location: str, limits: _Limits
) -> int:
    """Check that ``response`` is a clip within the limits, then write it (see :func:`write_body`)."""
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limits.max_bytes:
        raise limits.too_large(url, int(declared))
    body = _CheckedBody(response, url, limits)
    with _cut_off_at(limits.end, body):
        try:
            body.check_head()
            return write_body(
                body,  # type: ignore[arg-type]  # a response, its body checked and capped
                target,
                location,
                sizes={"Content-Length": declared, "file_size": limits.expected_size},
                # A reset, a timeout or a body cut short: the next attempt may get it whole.
                broken=lambda what: _TransientFailure(f"downloading {url} {what}"),
                # The URL can be fetched again: a store that failed once may take the next attempt.
                unwritable=_TransientFailure,
            )
        except Exception:
            # Whatever write_body made of the refusal (a broken body, say), it is final.
            if body.refusal is not None:
                raise body.refusal from None
            raise


class _CheckedBody:
    """``response`` as :func:`write_body` reads it: its first chunk checked to be audio, its bytes
    capped, its time limited; :attr:`refusal` says why it was cut off, if it was."""

    def __init__(self, response: requests.Response, url: str, limits: _Limits) -> None:
        self._response = response
        self._url = url
        self._limits = limits
        self._chunks = response.iter_content(DOWNLOAD_CHUNK_BYTES)
        self._head = b""
        self.refusal: StableAudioDownloadError | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)

    def check_head(self) -> None:
        """Read the first chunk; refuse an answer that is not audio (an HTML page)."""
        self._head = next(self._chunks, b"")
        check_audio_answer(self._url, self._response.headers.get("Content-Type"), self._head)

    def iter_content(self, chunk_size: int = DOWNLOAD_CHUNK_BYTES) -> Iterator[bytes]:
        received = 0
        for chunk in itertools.chain((self._head,), self._chunks):
            received += len(chunk)
            if received > self._limits.max_bytes:
                self.refusal = self._limits.too_large(self._url)
                raise self.refusal
            if time.monotonic() > self._limits.end:
                raise self.time_out()
            yield chunk

    def time_out(self) -> StableAudioDownloadError:
        self.refusal = self._limits.too_slow(self._url)
        return self.refusal

    def cut(self) -> None:
        """Past the time limit: shut the socket, so that a read waiting for a trickle wakes up."""
        self.time_out()
        raw = self._response.raw
        with contextlib.suppress(Exception):  # already closed: nothing waits on it
            if hasattr(raw, "shutdown"):  # urllib3 2.3+, made for this
                raw.shutdown()
                return
            import socket

            raw.connection.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]  # older urllib3


@contextlib.contextmanager
def _cut_off_at(end: float, body: _CheckedBody) -> Iterator[None]:
    """Cut ``body`` off at ``end`` (``time.monotonic``), even while a read of it is waiting."""
    import threading

    timer = threading.Timer(max(0.0, end - time.monotonic()), body.cut)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


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
