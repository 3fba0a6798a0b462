"""The hook: the API connection, and every call the provider makes to the API."""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_stableaudio import __version__, download
from airflow_provider_stableaudio.api_errors import (
    error_from_response,
    redact,
    submission_was_rejected,
)
from airflow_provider_stableaudio.exceptions import (
    StableAudioConnectionError,
    StableAudioGenerationFailed,
    StableAudioResponseError,
    StableAudioRetryableError,
    StableAudioSubmissionUnknownError,
    StableAudioTimeoutError,
)
from airflow_provider_stableaudio.generation_result import (
    Generation,
    GenerationState,
    accepted_id,
    is_json_object,
    poll_answer,
    read_generation,
)
from airflow_provider_stableaudio.retry_policy import RetryPolicy, poll_delay
from airflow_provider_stableaudio.settings import ApiSettings, settings_from_connection

if TYPE_CHECKING:
    import requests

    from airflow_provider_stableaudio.generation_request import GenerationRequest
    from airflow_provider_stableaudio.storage import OutputPath

GENERATE_PATH = "/v2/generate/audio"
USER_AGENT = f"airflow-provider-stableaudio/{__version__}"
# An id no generation has: polling it proves the key is accepted without paying for anything.
PROBE_GENERATION_ID = "airflow-connection-test"


class StableAudioHook(BaseHook):
    """Talks to the AI/ML API's Stable Audio endpoint (``/v2/generate/audio``).

    The connection's password holds the API key; its host the Base URL (default
    ``https://api.aimlapi.com``; a host without a scheme gets https); the optional ``timeout``
    extra the seconds allowed for each API call (default 30).

    :param conn_id: the Airflow connection to use.
    :param max_retries: how many times a transient failure (429, 5xx, connection error) of one
        call is retried, with exponential backoff that honours ``Retry-After``; a call given a
        ``timeout`` never waits past it.
    """

    conn_name_attr = "conn_id"
    default_conn_name = "stableaudio_default"
    conn_type = "stableaudio"
    hook_name = "Stable Audio"

    def __init__(self, conn_id: str = default_conn_name, *, max_retries: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.max_retries = max_retries
        self._async_settings: ApiSettings | None = None
        self._poll_requests: dict[str, tuple[Any, dict[str, str], Any]] = {}

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form for Airflow versions that do not read it from the provider info."""
        from airflow_provider_stableaudio.get_provider_info import UI_FIELD_BEHAVIOUR

        return UI_FIELD_BEHAVIOUR

    # -- connection ---------------------------------------------------------------------------

    def _settings_from(self, conn: Any, extra: dict[str, Any]) -> ApiSettings:
        return settings_from_connection(
            conn_id=self.conn_id, host=conn.host, port=conn.port, password=conn.password, extra=extra
        )

    @cached_property
    def settings(self) -> ApiSettings:
        """The connection's settings, looked up once (synchronously: not for use inside triggers)."""
        conn = self.get_connection(self.conn_id)
        settings = self._settings_from(conn, conn.extra_dejson)
        _mask(settings.api_key)
        return settings

    async def aget_settings(self) -> ApiSettings:
        """The connection's settings, looked up once without blocking the event loop."""
        if self._async_settings is None:
            from airflow.providers.common.compat.connection import (
                get_async_connection,
                get_async_extra_dejson,
            )

            conn = await get_async_connection(self.conn_id, hook=self)
            # Not conn.extra_dejson: it masks through a synchronous call to the supervisor, which
            # blocks the triggerer's loop (and before Airflow 3.3.2 can raise DeadlockImminentError).
            settings = self._settings_from(conn, await get_async_extra_dejson(conn))
            await _amask(settings.api_key)
            self._async_settings = settings
        return self._async_settings

    def _api_headers(self, settings: ApiSettings) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {settings.api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }

    def get_conn(self) -> requests.Session:
        """The reused ``requests.Session`` (no credentials on it: they go only to API calls)."""
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
        import requests  # deferred: DAG files that import the provider should not pay for it

        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        return session

    # -- synchronous API calls ----------------------------------------------------------------

    def _send(
        self, method: str, *, action: str, params: dict | None = None, body: dict | None = None
    ) -> tuple[int, bytes, str | None]:
        """One API call; returns ``(status, body bytes, Retry-After)`` or raises a transport error.

        A transport failure raises :class:`StableAudioConnectionError`, whose ``request_sent`` tells
        whether the request may have reached the server.
        """
        import requests

        settings = self.settings
        try:
            response = self.get_conn().request(
                method,
                settings.base_url + GENERATE_PATH,
                params=params,
                json=body,
                headers=self._api_headers(settings),
                timeout=settings.request_timeout,
            )
        except requests.RequestException as exc:
            raise StableAudioConnectionError(
                redact(f"could not {action}: {type(exc).__name__}: {exc}", settings.api_key),
                request_sent=not _never_connected(exc),
            ) from None
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
        policy = RetryPolicy(max_retries=self.max_retries if max_retries is None else max_retries)
        remaining = None if deadline is None else deadline - time.monotonic()
        delay = policy.delay(failures, retry_after=error.retry_after, remaining=remaining)
        if delay is None:
            raise error
        self.log.warning("%s failed (%d in a row), retrying in %.1fs: %s", action, failures, delay, error)
        time.sleep(delay)

    def submit_generation(self, request: GenerationRequest, *, timeout: float | None = None) -> Generation:
        """Create a generation; retried only while the API provably created nothing.

        :param request: a validated body, from :meth:`GenerationRequest.build`.
        :param timeout: seconds after which a rejected submission is no longer retried (no wait
            between attempts runs past it); ``None``: only ``max_retries`` limits the retries.
        :raises StableAudioSubmissionUnknownError: the request may have created a generation but
            no answer came back; it is not sent again, since that could pay twice.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        action = f"submit a {request.model} generation"
        unknown = (
            "The request may have created a generation, so it was not sent again: check the "
            "generations on your AI/ML API account before retrying, or you may pay twice."
        )
        failures = 0
        while True:
            try:
                status, content, retry_after = self._send("POST", action=action, body=request.to_json())
            except StableAudioConnectionError as failure:
                if failure.request_sent:
                    raise StableAudioSubmissionUnknownError(f"{failure}. {unknown}") from None
                retryable: StableAudioRetryableError = failure
            else:
                if 200 <= status < 300:
                    try:
                        return read_generation(content, action=action)
                    except StableAudioResponseError as bad_body:
                        accepted = accepted_id(content)
                        if accepted is None:
                            raise StableAudioSubmissionUnknownError(f"{bad_body}. {unknown}") from None
                        # The API took it and said which id: wait for it, whatever status it reported.
                        return Generation(id=accepted, status="submitted", state=GenerationState.PENDING)
                rejection = error_from_response(
                    status, content, action=action, retry_after=retry_after, secret=self.settings.api_key
                )
                if not submission_was_rejected(status, content):
                    raise StableAudioSubmissionUnknownError(
                        f"{rejection}. {unknown}", status_code=status, request_id=rejection.request_id
                    ) from None
                if not isinstance(rejection, StableAudioRetryableError):
                    raise rejection
                retryable = rejection
            failures += 1
            self._retry_or_raise(failures, retryable, action=action, deadline=deadline)

    def get_generation(
        self, generation_id: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> Generation:
        """Read a generation's current state, retrying transient failures.

        :param generation_id: the generation to read.
        :param timeout: seconds after which a transient failure is no longer retried (no wait
            between attempts runs past it); ``None``: only ``max_retries`` limits the retries.
        :param max_retries: this call's retries, instead of the hook's (``0``: one attempt).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        action = f"poll generation {generation_id}"
        failures = 0
        while True:
            try:
                status, content, retry_after = self._send(
                    "GET", action=action, params={"generation_id": generation_id}
                )
                return poll_answer(status, content, retry_after, generation_id, secret=self.settings.api_key)
            except StableAudioRetryableError as error:
                failures += 1
                self._retry_or_raise(
                    failures, error, action=action, deadline=deadline, max_retries=max_retries
                )

    def wait_for_generation(
        self, generation_id: str, *, poll_interval: float = 10, timeout: float = 900
    ) -> Generation:
        """Poll until the generation completes; transient errors are retried until ``timeout``.

        Polls and retries follow the same policy as the trigger's, and no wait runs past ``timeout``.

        :raises StableAudioGenerationFailed: the API reports the generation failed.
        :raises StableAudioTimeoutError: it was still unfinished after ``timeout`` seconds.
        """
        started = time.monotonic()
        deadline = started + timeout
        last_status = "unknown"
        failures = 0
        while True:
            retry_after = None
            try:
                generation = self.get_generation(generation_id, max_retries=0)
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
                    raise StableAudioGenerationFailed.for_generation(generation_id, generation.error_message)
                self.log.info("Generation %s is %s", generation_id, generation.status)
            remaining = deadline - time.monotonic()
            delay = poll_delay(poll_interval, failures=failures, retry_after=retry_after, remaining=remaining)
            if delay is None:
                raise StableAudioTimeoutError(
                    f"Stable Audio generation {generation_id} was still {last_status!r} after "
                    f"{time.monotonic() - started:.0f}s (timeout {timeout:g}s)"
                )
            time.sleep(delay)

    def test_connection(self) -> tuple[bool, str]:
        """Prove the key is accepted by polling an id that does not exist: free, unlike a generation."""
        try:
            status, content, retry_after = self._send(
                "GET", action="test the connection", params={"generation_id": PROBE_GENERATION_ID}
            )
        except Exception as exc:
            return False, str(exc)
        if status in (401, 403) or status >= 500 or status == 429:
            error = error_from_response(
                status,
                content,
                action="test the connection",
                retry_after=retry_after,
                secret=self.settings.api_key,
            )
            return False, str(error)
        # A JSON 404 (or 400/200) means the API authenticated the key and looked for the generation;
        # anything else is not this API (a web server answering 404 to every path, say).
        if accepted_id(content) is None and not is_json_object(content):
            return False, f"{self.settings.base_url} answered HTTP {status} without the API's JSON body"
        return True, f"Connected to {self.settings.base_url}: the API accepted the key."

    # -- downloads ----------------------------------------------------------------------------

    def download_audio(self, url: str, path: OutputPath, *, expected_size: int | None = None) -> str:
        """Stream the file at ``url`` to ``path``: whole, or not at all.

        Streamed through a temporary file moved into place once complete; a transient failure
        (a dropped or timed-out connection, 429, 5xx, a body cut short) is retried with backoff,
        up to ``max_retries`` times; an expired URL (403, 404, 410) is not (see
        ``airflow_provider_stableaudio.download``).

        :param url: the audio URL (a CDN URL: sent without the API key).
        :param path: a local path (its folder is created), a URI such as ``s3://bucket/clip.wav``
            or an ``ObjectStoragePath``.
        :param expected_size: the ``file_size`` the API reported, if any.
        :return: where the file was written, as a path or URI.
        :raises StableAudioDownloadError: the file could not be fetched, written, or arrived incomplete.
        """
        location, received = download.download_file(
            self.get_conn(),
            url,
            path,
            timeout=self.settings.request_timeout,
            expected_size=expected_size,
            max_retries=self.max_retries,
            log=self.log,
        )
        self.log.info("Downloaded %d bytes to %s", received, location)
        return location

    # -- asynchronous API calls (triggers) ----------------------------------------------------

    async def aget_generation(self, generation_id: str) -> Generation:
        """Read a generation's state once, without blocking the loop; the trigger owns retries.

        Uses the event loop's shared ``aiohttp`` session (see :mod:`.async_session`).

        :raises StableAudioRetryableError: a transient failure (429, 5xx, network, malformed body).
        :raises StableAudioPermanentError: 401, 403, 404 and other 4xx.
        """
        from airflow_provider_stableaudio.hooks.async_session import import_aiohttp, shared_client_session

        await import_aiohttp()
        import aiohttp

        settings = await self.aget_settings()
        action = f"poll generation {generation_id}"
        poll = self._poll_requests.get(generation_id)
        if poll is None:
            # Built once per generation, not per poll: a trigger polls the same URL many times.
            import yarl

            poll = self._poll_requests[generation_id] = (
                yarl.URL(settings.base_url + GENERATE_PATH).with_query(generation_id=generation_id),
                self._api_headers(settings),
                aiohttp.ClientTimeout(total=settings.request_timeout),
            )
        url, headers, timeout = poll
        try:
            async with (
                shared_client_session() as session,
                session.get(url, headers=headers, timeout=timeout) as response,
            ):
                content = await response.read()
                status, retry_after = response.status, response.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise StableAudioConnectionError(
                redact(f"could not {action}: {type(exc).__name__}: {exc}", settings.api_key),
                request_sent=True,
            ) from None
        return poll_answer(status, content, retry_after, generation_id, secret=settings.api_key)


def _never_connected(exc: Exception) -> bool:
    """Whether ``requests`` failed before the connection was made, so nothing was sent."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)


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
