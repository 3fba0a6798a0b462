"""The AI/ML API's hook: every call the provider makes to ``/v2/generate/audio``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio.api_errors import error_from_response
from airflow_provider_stableaudio.exceptions import StableAudioResponseError
from airflow_provider_stableaudio.generation_result import (
    Generation,
    GenerationState,
    accepted_id,
    is_json_object,
    poll_answer,
    read_generation,
)
from airflow_provider_stableaudio.hooks.base import StableAudioBaseHook
from airflow_provider_stableaudio.services import AIMLAPI, SERVICES

if TYPE_CHECKING:
    from airflow_provider_stableaudio.generation_request import GenerationRequest
    from airflow_provider_stableaudio.storage import OutputPath

GENERATE_PATH = "/v2/generate/audio"
# An id no generation has: polling it proves the key is accepted without paying for anything.
PROBE_GENERATION_ID = "airflow-connection-test"


class StableAudioHook(StableAudioBaseHook):
    """Talks to the AI/ML API's Stable Audio endpoint (``/v2/generate/audio``).

    The connection (type ``stableaudio``) holds the API key in its password; its host the Base URL
    (default ``https://api.aimlapi.com``; a host without a scheme gets https); the optional
    ``timeout`` extra the seconds allowed for each API call (default 30); the optional
    ``max_download_bytes`` extra the most bytes a download reads when the API reports no size
    (default 4 GiB).

    :param conn_id: the Airflow connection to use (default ``stableaudio_default``).
    :param max_retries: how many times a transient failure (429, 5xx, connection error) of one
        call is retried, with exponential backoff that honours ``Retry-After``; a call given a
        ``timeout`` never waits past it.
    """

    service_name = AIMLAPI
    default_conn_name = SERVICES[AIMLAPI].default_conn_id
    conn_type = SERVICES[AIMLAPI].conn_type
    hook_name = "Stable Audio"

    def __init__(self, conn_id: str = default_conn_name, *, max_retries: int = 5, **kwargs: Any) -> None:
        super().__init__(conn_id, max_retries=max_retries, **kwargs)
        self._poll_requests: dict[str, tuple[Any, dict[str, str], Any]] = {}

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form for Airflow versions that do not read it from the provider info."""
        from airflow_provider_stableaudio.get_provider_info import UI_FIELD_BEHAVIOUR

        return UI_FIELD_BEHAVIOUR

    def submit_generation(self, request: GenerationRequest, *, timeout: float | None = None) -> Generation:
        """Create a generation; retried only while the API provably created nothing.

        :param request: a validated body, from :meth:`GenerationRequest.build`.
        :param timeout: seconds after which a rejected submission is no longer retried (no wait
            between attempts runs past it); ``None``: only ``max_retries`` limits the retries.
        :raises StableAudioSubmissionUnknownError: the request may have created a generation but
            no answer came back; it is not sent again, since that could pay twice.
        """
        action = f"submit a {request.model} generation"

        def attempt() -> Generation:
            status, content, retry_after = self._send(
                "POST", GENERATE_PATH, action=action, json=request.to_json()
            )
            if not 200 <= status < 300:
                raise self._refusal(status, content, retry_after, action=action)
            try:
                return read_generation(content, action=action)
            except StableAudioResponseError as bad_body:
                accepted = accepted_id(content)
                if accepted is None:
                    raise self._unknown(f"{bad_body}") from None
                # The API took it and said which id: wait for it, whatever status it reported.
                return Generation(id=accepted, status="submitted", state=GenerationState.PENDING)

        return self._submit(attempt, action=action, timeout=timeout)

    def _poll(self, generation_id: str, *, store_to: OutputPath | None = None) -> Generation:
        # The AI/ML API answers with a URL, fetched by store_result: store_to has nothing to do.
        status, content, retry_after = self._send(
            "GET",
            GENERATE_PATH,
            action=f"poll generation {generation_id}",
            params={"generation_id": generation_id},
        )
        return poll_answer(status, content, retry_after, generation_id, secret=self.settings.api_key)

    def test_connection(self) -> tuple[bool, str]:
        """Prove the key is accepted by polling an id that does not exist: free, unlike a generation."""
        try:
            status, content, retry_after = self._send(
                "GET",
                GENERATE_PATH,
                action="test the connection",
                params={"generation_id": PROBE_GENERATION_ID},
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

    # -- the clip -----------------------------------------------------------------------------

    def store_result(self, generation: Generation, path: OutputPath) -> str:
        """Download the completed generation's audio URL to ``path`` (see :meth:`download_audio`)."""
        audio = generation.audio_file
        if audio is None or not audio.url:
            raise ValueError(f"generation {generation.id} has no audio file")
        return self.download_audio(audio.url, path, expected_size=audio.file_size)

    def download_audio(self, url: str, path: OutputPath, *, expected_size: int | None = None) -> str:
        """Stream the file at ``url`` to ``path``: whole, or not at all.

        Streamed through a temporary file moved into place once complete; a transient failure
        (a dropped or timed-out connection, 429, 5xx, a body cut short) is retried with backoff,
        up to ``max_retries`` times; an expired URL (403, 404, 410) is not (see
        ``airflow_provider_stableaudio.download``).

        The URL is not trusted: only ``https`` is fetched (``http`` too when the connection's Base
        URL is http), never a loopback, link-local or private address unless the connection's own
        host is one, and an answer that is not audio (an HTML page) or runs past ``expected_size``
        (else the connection's ``max_download_bytes`` extra) is refused; none of these is retried.

        :param url: the audio URL (a CDN URL: sent without the API key).
        :param path: a local path (its folder is created), a URI such as ``s3://bucket/clip.wav``
            or an ``ObjectStoragePath``.
        :param expected_size: the ``file_size`` the API reported, if any.
        :return: where the file was written, as a path or URI.
        :raises StableAudioDownloadError: the file could not be fetched, written, or arrived
            incomplete, or the URL or its answer was refused.
        """
        return self._download(url, path, expected_size=expected_size)

    # -- asynchronous API calls (triggers) ----------------------------------------------------

    async def aget_generation(self, generation_id: str, *, priority: float | None = None) -> Generation:
        """Read a generation's state once, without blocking the loop; the trigger owns retries.

        Uses the event loop's shared ``aiohttp`` session (see :mod:`.async_session`).

        :raises StableAudioRetryableError: a transient failure (429, 5xx, network, malformed body).
        :raises StableAudioPermanentError: 401, 403, 404 and other 4xx.
        """
        from airflow_provider_stableaudio.hooks.async_session import import_aiohttp

        await import_aiohttp()
        import aiohttp

        settings = await self.aget_settings()
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
        status, answer_headers, content = await self._aget(
            url,
            headers=headers,
            timeout=timeout,
            action=f"poll generation {generation_id}",
            priority=priority,
        )
        retry_after = answer_headers.get("Retry-After")
        return poll_answer(status, content, retry_after, generation_id, secret=settings.api_key)
