"""What both services' hooks share: the connection, the session, retries, the "outcome unknown" rule."""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from airflow.sdk import BaseHook

from airflow_provider_stableaudio import __version__, download
from airflow_provider_stableaudio.api_errors import (
    error_from_response,
    parse_retry_after,
    redact,
    submission_was_rejected,
)
from airflow_provider_stableaudio.exceptions import (
    StableAudioConnectionError,
    StableAudioResponseError,
    StableAudioRetryableError,
    StableAudioSubmissionUnknownError,
    StableAudioTimeoutError,
)
from airflow_provider_stableaudio.generation_result import Generation, GenerationState, generation_failure
from airflow_provider_stableaudio.request_budget import KeyBudget, Slot, budget_for
from airflow_provider_stableaudio.retry_policy import RetryPolicy, poll_delay
from airflow_provider_stableaudio.services import SERVICES
from airflow_provider_stableaudio.settings import ApiSettings, settings_from_connection

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import requests

    from airflow_provider_stableaudio.generation_request import GenerationRequest
    from airflow_provider_stableaudio.services import Service
    from airflow_provider_stableaudio.storage import OutputPath

USER_AGENT = f"airflow-provider-stableaudio/{__version__}"
# The most of an API answer read into memory (a poll, an error, a submit's answer; never a clip): a
# JSON answer is a few hundred bytes, and a longer one is cut here rather than fill the worker's or
# the triggerer's memory.
MAX_ANSWER_BYTES = 1024 * 1024
# Triggers that start together (a fan-out deferring) read their connection once per event loop: a
# lookup is reused this long, so a changed connection reaches triggers that start after it.
SETTINGS_REUSE_SECONDS = 30.0
_SharedSettings = tuple[float, "asyncio.Task[ApiSettings] | ApiSettings"]  # (looked up at, result)
_SettingsKey = tuple[str, str]  # (service, connection id)
_LOOP_SETTINGS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_SettingsKey, _SharedSettings]] = (
    weakref.WeakKeyDictionary()
)
_T = TypeVar("_T")


class StableAudioBaseHook(BaseHook):
    """The parts of a Stable Audio hook that do not depend on the service.

    The connection's password holds the API key; its host the Base URL (the service's own when
    empty; a host without a scheme gets https); the optional ``timeout`` extra the seconds allowed
    for each API call (default 30).

    :param conn_id: the Airflow connection to use.
    :param max_retries: how many times a transient failure (429, 5xx, connection error) of one
        call is retried, with exponential backoff that honours ``Retry-After``; a call given a
        ``timeout`` never waits past it.
    """

    conn_name_attr = "conn_id"
    #: The service this hook talks to (a key of :data:`airflow_provider_stableaudio.services.SERVICES`).
    service_name: ClassVar[str]

    def __init__(self, conn_id: str | None = None, *, max_retries: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id or self.service.default_conn_id
        self.max_retries = max_retries
        self._async_settings: ApiSettings | None = None
        self._budget: tuple[ApiSettings, KeyBudget] | None = None  # the last settings' budget
        # When the current call gives up (monotonic): waiting for the key's budget never runs past it.
        self._deadline: float | None = None

    @property
    def service(self) -> Service:
        return SERVICES[self.service_name]

    # -- connection ---------------------------------------------------------------------------

    def _settings_from(self, conn: Any, extra: dict[str, Any]) -> ApiSettings:
        return settings_from_connection(
            conn_id=self.conn_id,
            host=conn.host,
            port=conn.port,
            password=conn.password,
            extra=extra,
            service=self.service,
        )

    @cached_property
    def settings(self) -> ApiSettings:
        """The connection's settings, looked up once (synchronously: not for use inside triggers)."""
        conn = self.get_connection(self.conn_id)
        settings = self._settings_from(conn, conn.extra_dejson)
        _mask(settings.api_key)
        return settings

    async def aget_settings(self) -> ApiSettings:
        """The connection's settings, looked up without blocking the event loop; the triggers of one
        loop that start within :data:`SETTINGS_REUSE_SECONDS` of each other share one lookup."""
        if self._async_settings is None:
            loop = asyncio.get_running_loop()
            shared = _LOOP_SETTINGS.setdefault(loop, {})
            key = (self.service_name, self.conn_id)
            entry = shared.get(key)
            now = time.monotonic()
            if entry is None or now - entry[0] >= SETTINGS_REUSE_SECONDS:
                lookup = loop.create_task(self._look_up_settings())
                entry = shared[key] = (now, lookup)
                lookup.add_done_callback(functools.partial(_settle, shared, key, entry))
            found = entry[1]
            # Shielded: a trigger cancelled while it waits leaves the lookup to the others.
            self._async_settings = found if isinstance(found, ApiSettings) else await asyncio.shield(found)
        return self._async_settings

    async def _look_up_settings(self) -> ApiSettings:
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

        conn = await get_async_connection(self.conn_id, hook=self)
        # Not conn.extra_dejson: it masks through a synchronous call to the supervisor, which
        # blocks the triggerer's loop (and before Airflow 3.3.2 can raise DeadlockImminentError).
        settings = self._settings_from(conn, await get_async_extra_dejson(conn))
        await _amask(settings.api_key)
        return settings

    def _api_headers(self, settings: ApiSettings, *, accept: str = "application/json") -> dict[str, str]:
        return {"Authorization": f"Bearer {settings.api_key}", "User-Agent": USER_AGENT, "Accept": accept}

    def get_conn(self) -> requests.Session:
        """The reused ``requests.Session`` (no credentials on it: they go only to API calls)."""
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
        session = _session_without_netrc()
        session.headers["User-Agent"] = USER_AGENT
        return session

    # -- the key's request budget --------------------------------------------------------------

    def key_budget(self, settings: ApiSettings) -> KeyBudget:
        """This process's request budget for the connection's key (see :mod:`.request_budget`);
        kept for the settings it was found for (a trigger asks on every poll)."""
        if self._budget is not None and self._budget[0] is settings:
            return self._budget[1]
        budget = budget_for(
            settings.base_url,
            settings.api_key,
            max_rate=settings.max_requests_per_second,
            service=self.service,
            machine_directory=machine_budget_directory,
        )
        self._budget = (settings, budget)
        return budget

    def _take_slot(self, budget: KeyBudget, *, action: str) -> Slot:
        """Wait for the key's budget to let a request go (a 429 paused it: till the pause ends).

        :raises StableAudioRetryableError: (429) the wait would run past the current call's deadline.
        """
        announced = False
        while True:
            granted = budget.take(time.monotonic())
            if isinstance(granted, Slot):
                return granted
            if self._deadline is not None and time.monotonic() + granted > self._deadline:
                raise StableAudioRetryableError(
                    f"could not {action}: the API's rate limit has {budget.label} paused for "
                    f"{granted:.0f}s more, past this call's deadline",
                    status_code=429,
                    retry_after=granted,
                )
            paused = budget.paused_for(time.monotonic())
            if paused > 1 and not announced:
                self.log.info(
                    "%s waits %.0fs: the API answered 429, %s is paused", action, paused, budget.label
                )
                announced = True
            time.sleep(granted)

    @contextmanager
    def _until(self, timeout: float | None) -> Iterator[float | None]:
        """The deadline (monotonic) of a call given ``timeout`` seconds, for the calls inside it too."""
        outer = self._deadline
        deadline = None if timeout is None else time.monotonic() + timeout
        if outer is not None and (deadline is None or outer < deadline):
            deadline = outer
        self._deadline = deadline
        try:
            yield deadline
        finally:
            self._deadline = outer

    @contextmanager
    def _budget_gate(self) -> Iterator[Callable[[int, str | None], None]]:
        """One request of the key through its budget, for callers that send it themselves (a fetch
        of a result from the API): yields ``record(status, retry_after_header)`` for its answer."""
        budget = self.key_budget(self.settings)
        slot = self._take_slot(budget, action="fetch a result")
        answered = False

        def record(status: int, retry_after: str | None) -> None:
            nonlocal answered
            answered = True
            budget.answered(
                slot, time.monotonic(), limited=status == 429, retry_after=parse_retry_after(retry_after)
            )

        try:
            yield record
        finally:
            if not answered:
                budget.unanswered(slot)

    # -- synchronous calls --------------------------------------------------------------------

    def _request(self, method: str, path: str, *, action: str, **kwargs: Any) -> requests.Response:
        """One API call; raises :class:`StableAudioConnectionError` when no answer arrived.

        Its ``request_sent`` tells whether the request may have reached the server. Keyword
        arguments go to ``requests`` (``headers`` defaults to the API headers). The answer's body is
        read up to :data:`MAX_ANSWER_BYTES`, except a ``stream=True`` 200's (audio, streamed by the
        caller).

        :raises StableAudioResponseError: a 2xx answer longer than :data:`MAX_ANSWER_BYTES`.
        """
        import requests

        settings = self.settings
        kwargs.setdefault("headers", self._api_headers(settings))
        kwargs.setdefault("timeout", settings.request_timeout)
        stream = kwargs.pop("stream", False)
        budget = self.key_budget(settings)
        slot = self._take_slot(budget, action=action)
        try:
            response = self.get_conn().request(method, settings.base_url + path, stream=True, **kwargs)
        except requests.RequestException as exc:
            budget.unanswered(slot)
            raise self._connection_error(action, exc) from None
        except BaseException:  # a task timeout, say: the slot (a probe's, perhaps) is freed all the same
            budget.unanswered(slot)
            raise
        budget.answered(
            slot,
            time.monotonic(),
            limited=response.status_code == 429,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
        try:
            if not (stream and response.status_code == 200):
                _read_bounded(response, action=action)
        except requests.RequestException as exc:
            raise self._connection_error(action, exc) from None
        return response

    def _connection_error(self, action: str, exc: Exception) -> StableAudioConnectionError:
        sent = not _never_connected(exc)
        unsent = "" if sent else " (the connection failed before the request was sent)"
        return StableAudioConnectionError(
            redact(f"could not {action}{unsent}: {type(exc).__name__}: {exc}", self.settings.api_key),
            request_sent=sent,
        )

    def _send(self, method: str, path: str, *, action: str, **kwargs: Any) -> tuple[int, bytes, str | None]:
        """:meth:`_request`, read whole: ``(status, body, Retry-After)``."""
        response = self._request(method, path, action=action, **kwargs)
        return response.status_code, response.content, response.headers.get("Retry-After")

    def _retry_or_raise(
        self,
        failures: int,
        error: StableAudioRetryableError,
        *,
        action: str,
        deadline: float | None,
        max_retries: int | None = None,
    ) -> None:
        """Sleep before the next attempt, or raise ``error`` when the retry policy gives up."""
        remaining = None if deadline is None else deadline - time.monotonic()
        if error.status_code == 429 and remaining is not None:
            # The 429 paused the key's budget: the next attempt waits the pause out in _take_slot,
            # and every other request of the key with it. Retried until the deadline, as no 429
            # created anything; never into a pause that outlasts the deadline.
            paused = self.key_budget(self.settings).paused_for(time.monotonic())
            if max(paused, error.retry_after or 0) > remaining:
                raise error
            self.log.warning(
                "%s was refused with HTTP 429 (%d in a row), retrying: %s", action, failures, error
            )
            return
        policy = RetryPolicy(max_retries=self.max_retries if max_retries is None else max_retries)
        delay = policy.delay(failures, retry_after=error.retry_after, remaining=remaining)
        if delay is None:
            raise error
        self.log.warning("%s failed (%d in a row), retrying in %.1fs: %s", action, failures, delay, error)
        time.sleep(delay)

    def _unknown_hint(self) -> str:
        return (
            "The request may have created a generation, so it was not sent again: check the "
            f"generations on your {self.service.title} account before retrying, or you may pay twice."
        )

    def _refusal(self, status: int, content: bytes, retry_after: str | None, *, action: str) -> Exception:
        """The error for a failed submission: the API's, when it provably created nothing, else
        :class:`StableAudioSubmissionUnknownError` (never retried)."""
        error = error_from_response(
            status,
            content,
            action=action,
            retry_after=retry_after,
            secret=self.settings.api_key,
            api=self.service.title,
            lockout=self.service.lockout_seconds,
        )
        if submission_was_rejected(status, content):
            return error
        return StableAudioSubmissionUnknownError(
            f"{error}. {self._unknown_hint()}", status_code=status, request_id=error.request_id
        )

    def _unknown(self, what: str) -> StableAudioSubmissionUnknownError:
        """The error for a submission whose outcome cannot be known: ``what`` happened instead."""
        return StableAudioSubmissionUnknownError(f"{what}. {self._unknown_hint()}")

    def _submit(self, attempt: Callable[[], _T], *, action: str, timeout: float | None) -> _T:
        """Run ``attempt`` (one submission) until it answers; retried only while the service provably
        created nothing: a connection never made, or a retryable rejection (429, the API's own 5xx).

        ``attempt`` raises :class:`StableAudioConnectionError` for a lost answer, the error of
        :meth:`_refusal` for a failed one, and turns anything else it cannot read into
        :class:`StableAudioSubmissionUnknownError` itself.
        """
        with self._until(timeout) as deadline:
            return self._submit_until(attempt, action=action, deadline=deadline)

    def _submit_until(self, attempt: Callable[[], _T], *, action: str, deadline: float | None) -> _T:
        failures = 0
        while True:
            try:
                return attempt()
            except StableAudioConnectionError as failure:
                if failure.request_sent:
                    raise self._unknown(str(failure)) from None
                retryable: StableAudioRetryableError = failure
            except StableAudioResponseError as unreadable:  # a 2xx nobody could read: it may be paid
                raise self._unknown(str(unreadable)) from None
            except StableAudioRetryableError as rejection:
                retryable = rejection
            failures += 1
            self._retry_or_raise(failures, retryable, action=action, deadline=deadline)

    # -- what each service implements ---------------------------------------------------------

    def submit_generation(self, request: GenerationRequest, *, timeout: float | None = None) -> Generation:
        """Create a generation to wait for; retried only while the service provably created nothing."""
        raise NotImplementedError

    def generate_to(self, request: GenerationRequest, path: OutputPath, *, timeout: float) -> Generation:
        """Generate synchronously, the answer streamed to ``path`` (models whose answer is the audio)."""
        raise NotImplementedError(f"{self.service.title} has no synchronous model")

    # -- waiting (both services: the subclass reads one state with get_generation) ---------------

    def get_generation(
        self,
        generation_id: str,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        store_to: OutputPath | None = None,
    ) -> Generation:
        """Read a generation's current state, retrying transient failures.

        :param generation_id: the generation to read.
        :param timeout: seconds after which a transient failure is no longer retried (no wait
            between attempts runs past it); ``None``: only ``max_retries`` limits the retries.
        :param max_retries: this call's retries, instead of the hook's (``0``: one attempt).
        :param store_to: where to store the audio when the answer that reports it finished is the
            audio itself and cannot be asked for again (see ``results_served_once``).
        """
        action = f"poll generation {generation_id}"
        failures = 0
        with self._until(timeout) as deadline:
            while True:
                try:
                    return self._poll(generation_id, store_to=store_to)
                except StableAudioRetryableError as error:
                    failures += 1
                    self._retry_or_raise(
                        failures, error, action=action, deadline=deadline, max_retries=max_retries
                    )

    def _poll(self, generation_id: str, *, store_to: OutputPath | None = None) -> Generation:
        """One reading of the generation's state (the service's own call)."""
        raise NotImplementedError

    async def aget_generation(self, generation_id: str, *, priority: float | None = None) -> Generation:
        """One reading of the generation's state without blocking the loop; the trigger owns retries.

        :param priority: when the poll fell due (wall-clock seconds): while the key's budget holds
            polls back, the one due longest goes first.
        """
        raise NotImplementedError

    async def _aget(
        self,
        url: Any,
        *,
        headers: dict[str, str],
        timeout: Any,
        action: str,
        unread: int | None = None,
        priority: float | None = None,
    ) -> tuple[int, Any, bytes]:
        """One GET on the event loop's shared ``aiohttp`` session: ``(status, headers, body)``.

        :param timeout: an ``aiohttp.ClientTimeout`` (the caller imported aiohttp off the loop
            with :func:`~.async_session.import_aiohttp`).
        :param unread: a status whose body is left unread, its connection closed (a finished
            Stability result: the clip stays on the server).
        :param priority: when the request fell due (wall-clock seconds): while the key's budget
            holds requests back, the one due longest goes first (default: now).
        :raises StableAudioConnectionError: no answer (it may have reached the server).
        """
        import aiohttp

        from airflow_provider_stableaudio.budget_queue import queue_for
        from airflow_provider_stableaudio.hooks.async_session import proxy_for, shared_client_session

        proxy = await proxy_for(str(url))  # the one the worker's requests would use
        settings = await self.aget_settings()
        budget = queue_for(self.key_budget(settings))
        slot = await budget.take(time.time() if priority is None else priority)
        answered = False
        try:
            async with (
                shared_client_session() as session,
                session.get(url, headers=headers, timeout=timeout, proxy=proxy) as response,
            ):
                answered = True
                budget.answered(
                    slot,
                    limited=response.status == 429,
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )
                if response.status == unread:
                    response.close()
                    body = b""
                else:
                    body = await _aread_bounded(response, action=action)
                # A copy keeps case-insensitive lookup: aiohttp keeps "Finish-Reason" as sent.
                return response.status, response.headers.copy(), body
        except (TimeoutError, aiohttp.ClientError) as exc:
            secret = self._async_settings.api_key if self._async_settings else None
            raise StableAudioConnectionError(
                redact(f"could not {action}: {type(exc).__name__}: {exc}", secret), request_sent=True
            ) from None
        finally:
            if not answered:
                budget.unanswered(slot)

    def wait_for_generation(
        self,
        generation_id: str,
        *,
        poll_interval: float = 10,
        timeout: float = 900,
        store_to: OutputPath | None = None,
    ) -> Generation:
        """Poll until the generation ends; transient errors are retried until ``timeout``.

        Polls and retries follow the same policy as the trigger's, and no wait runs past ``timeout``.
        ``store_to``: as for :meth:`get_generation`.

        :raises StableAudioGenerationFailed: the API reports the generation failed
            (:class:`StableAudioContentRefusedError` when its result was filtered).
        :raises StableAudioTimeoutError: it was still unfinished after ``timeout`` seconds.
        """
        started = time.monotonic()
        deadline = started + timeout
        last_status = "unknown"
        failures = 0
        with self._until(timeout):
            while True:
                retry_after = None
                try:
                    generation = self.get_generation(generation_id, max_retries=0, store_to=store_to)
                except StableAudioRetryableError as error:
                    failures += 1
                    retry_after = error.retry_after
                    self.log.warning(
                        "Polling generation %s failed (%d in a row), will retry: %s",
                        generation_id,
                        failures,
                        error,
                    )
                else:
                    failures = 0
                    last_status = generation.status
                    if generation.state is GenerationState.SUCCEEDED:
                        return generation
                    if generation.state is GenerationState.FAILED:
                        # A filtered result is a refusal of the content, as in the trigger's event.
                        raise generation_failure(generation)
                    self.log.info("Generation %s is %s", generation_id, generation.status)
                remaining = deadline - time.monotonic()
                delay = poll_delay(
                    poll_interval, failures=failures, retry_after=retry_after, remaining=remaining
                )
                if delay is None:
                    raise StableAudioTimeoutError(
                        f"Stable Audio generation {generation_id} was still {last_status!r} after "
                        f"{time.monotonic() - started:.0f}s (timeout {timeout:g}s)"
                    )
                time.sleep(delay)

    # -- the clip -----------------------------------------------------------------------------

    @property
    def stores_while_polling(self) -> bool:
        """Whether a finished result must be stored by the poll that finds it: the service serves
        it once only, so waiting happens where the clip is stored (the worker), never in a trigger."""
        return False

    def store_result(self, generation: Generation, path: OutputPath) -> str:
        """Write a completed generation's audio to ``path``, whole or not at all; return where."""
        raise NotImplementedError

    def _download(self, url: str, path: OutputPath, **kwargs: Any) -> str:
        location, received = download.download_file(
            self.get_conn(),
            url,
            path,
            timeout=self.settings.request_timeout,
            base_url=self.settings.base_url,
            max_bytes=self.settings.max_download_bytes,
            max_retries=self.max_retries,
            log=self.log,
            **kwargs,
        )
        self.log.info("Downloaded %d bytes to %s", received, location)
        return location


def _settle(
    shared: dict[_SettingsKey, _SharedSettings],
    key: _SettingsKey,
    entry: _SharedSettings,
    lookup: asyncio.Task[ApiSettings],
) -> None:
    """A lookup ended: keep its settings (not the task: it holds the loop), or forget a failure."""
    if shared.get(key) is not entry:
        return
    if lookup.cancelled() or lookup.exception() is not None:
        del shared[key]  # its waiters raise the error; the next trigger looks again
    else:
        shared[key] = (entry[0], lookup.result())


def machine_budget_directory() -> str | None:
    """Where a machine's processes share each key's request schedule: ``[stableaudio] budget_dir``
    (``AIRFLOW__STABLEAUDIO__BUDGET_DIR``; empty: each process keeps its own budget)."""
    from airflow.configuration import conf

    from airflow_provider_stableaudio.machine_schedule import default_directory

    return conf.get("stableaudio", "budget_dir", fallback=default_directory()) or None


def _read_bounded(response: requests.Response, *, action: str) -> None:
    """Read ``response``'s body, at most :data:`MAX_ANSWER_BYTES` of it, as its ``content``.

    Longer, an error's body is cut there (its text is cut shorter still before any message), and the
    rest is left unread, its connection closed.

    :raises StableAudioResponseError: a 2xx answer is longer: it cannot be read whole.
    """
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            response.close()
            break
    # requests' .content returns _content once it is set: the body is read here, bounded, instead.
    response._content = b"".join(chunks)[:MAX_ANSWER_BYTES]
    if size > MAX_ANSWER_BYTES and 200 <= response.status_code < 300:
        raise _too_long(action)


async def _aread_bounded(response: Any, *, action: str) -> bytes:
    """:func:`_read_bounded` for an ``aiohttp`` answer: its body, at most :data:`MAX_ANSWER_BYTES`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            response.close()
            if 200 <= response.status < 300:
                raise _too_long(action)
            break
    return b"".join(chunks)[:MAX_ANSWER_BYTES]


def _too_long(action: str) -> StableAudioResponseError:
    return StableAudioResponseError(
        f"the answer to {action} is longer than {MAX_ANSWER_BYTES} bytes: not an answer of the API"
    )


def _session_without_netrc() -> requests.Session:
    """A ``requests`` session that reads the environment (proxies, ``REQUESTS_CA_BUNDLE``) but not
    ``~/.netrc``, whose login requests would put on each request it matches (a ``default`` entry:
    every host), over the API's key and on the audio host's requests too."""
    import requests  # deferred: DAG files that import the provider should not pay for it

    class Session(requests.Session):
        def rebuild_auth(
            self, prepared_request: requests.PreparedRequest, response: requests.Response
        ) -> None:
            """On a redirect: requests' own, without the ~/.netrc lookup of the new host."""
            headers, old, new = prepared_request.headers, str(response.request.url), str(prepared_request.url)
            if "Authorization" in headers and self.should_strip_auth(old, new):
                del headers["Authorization"]

    session = Session()
    session.auth = _as_is  # requests looks in ~/.netrc only when a request has no auth
    return session


def _as_is(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def _never_connected(exc: BaseException) -> bool:
    """Whether ``requests`` failed while opening the connection, so no byte of the request was sent.

    That is the TCP connect, a proxy's tunnel and the TLS handshake (an untrusted certificate, a
    server that does not speak TLS, a reset mid-handshake): urllib3 does all of them in its
    connection's ``connect``. A failure on an open connection, a TLS error on a read included, may
    come after the server got the request.
    """
    from urllib3.exceptions import ConnectTimeoutError  # NewConnectionError is one too

    return any(
        isinstance(error, ConnectTimeoutError) or _raised_while_connecting(error) for error in _causes(exc)
    )


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it wraps (requests and urllib3 nest them in ``args`` and ``reason``)."""
    found: list[BaseException] = []
    pending: list[object] = [exc]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseException) and not any(error is seen for seen in found):
            found.append(error)
            pending += [error.__cause__, getattr(error, "reason", None), *error.args]
    return found


def _raised_while_connecting(error: BaseException) -> bool:
    from urllib3.connection import HTTPConnection, HTTPSConnection

    connecting = {HTTPConnection.connect.__code__, HTTPSConnection.connect.__code__}
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code in connecting:
            return True
        frame = frame.tb_next
    return False


def _mask(secret: str) -> None:
    """Register the key with Airflow's log masker (a no-op outside Airflow's logging)."""
    from airflow.providers.common.compat.sdk import mask_secret

    mask_secret(secret)


async def _amask(secret: str) -> None:
    """:func:`_mask` for an event loop: never a synchronous call to the supervisor on the loop."""
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:
        # Before Airflow 3.3: the synchronous masker in asgiref's thread, which hands its supervisor
        # call back to this loop. A plain thread (asyncio.to_thread) runs that call on a loop of its
        # own, past the comms lock: on 3.1.2 the trigger runner then reads the supervisor's answers
        # out of order and dies ("Response read out of order").
        from asgiref.sync import sync_to_async

        await sync_to_async(_mask)(secret)
    else:
        await amask_secret(secret)
