"""Stability AI's hook: Stable Audio 3 (submit, then poll the result) and Stable Audio 2/2.5 (synchronous).

Stability answers with the audio itself. The clip is streamed from the answer to storage, whole or not
at all, and never read into memory: not on the worker, and not in the triggerer, which reads a
finished result's status and headers only and leaves its body to the worker (:meth:`store_result`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio import __version__, storage
from airflow_provider_stableaudio.api_errors import error_from_response
from airflow_provider_stableaudio.download import write_body
from airflow_provider_stableaudio.exceptions import (
    StableAudioContentRefusedError,
    StableAudioDownloadError,
    StableAudioResultGoneError,
)
from airflow_provider_stableaudio.generation_result import Generation, GenerationState
from airflow_provider_stableaudio.hooks.base import StableAudioBaseHook
from airflow_provider_stableaudio.models import MODELS
from airflow_provider_stableaudio.services import SERVICES, STABILITY
from airflow_provider_stableaudio.stability_result import (
    ACCEPT_AUDIO,
    API,
    BALANCE_PATH,
    RESULT_TTL_HOURS,
    RESULTS_PATH,
    finished,
    result_answer,
    submit_refusal,
    submitted_id,
)

if TYPE_CHECKING:
    from airflow_provider_stableaudio.generation_request import GenerationRequest
    from airflow_provider_stableaudio.settings import ApiSettings
    from airflow_provider_stableaudio.storage import OutputPath

# Why a lost answer fails for good (tasks fail without retries on StableAudioResultGoneError).
PAID = "The generation was paid for; a retry would pay for a new one, so the task is not retried"
# Names the calling application to Stability (optional headers of its API, at most 256 characters).
CLIENT_HEADERS = {
    "stability-client-id": "airflow-provider-stableaudio",
    "stability-client-version": __version__,
}


class StabilityAudioHook(StableAudioBaseHook):
    """Talks to Stability AI's Stable Audio API (``/v2beta/audio/...``).

    The connection (type ``stability``) holds the API key in its password; its host the Base URL
    (default ``https://api.stability.ai``); the optional ``timeout`` extra the seconds allowed for
    each API call (default 30; a synchronous generation may take longer: see :meth:`generate_to`).

    :param conn_id: the Airflow connection to use (default ``stability_default``).
    :param max_retries: how many times a transient failure (429, 5xx, connection error) of one
        call is retried, with exponential backoff that honours ``Retry-After``.
    """

    service_name = STABILITY
    default_conn_name = SERVICES[STABILITY].default_conn_id
    conn_type = SERVICES[STABILITY].conn_type
    hook_name = "Stability AI (Stable Audio)"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form for Airflow versions that do not read it from the provider info."""
        from airflow_provider_stableaudio.get_provider_info import STABILITY_UI_FIELD_BEHAVIOUR

        return STABILITY_UI_FIELD_BEHAVIOUR

    def _api_headers(self, settings: ApiSettings, *, accept: str = "application/json") -> dict[str, str]:
        headers = {**super()._api_headers(settings, accept=accept), **CLIENT_HEADERS}
        if accept == ACCEPT_AUDIO:
            # The answer is the clip: its bytes as they are, never compressed by a proxy on the way
            # (sizes are checked against Content-Length, and a lost answer is paid for).
            headers["Accept-Encoding"] = "identity"
        return headers

    @property
    def stores_while_polling(self) -> bool:
        """True when the connection says results are served once only (extra ``results_served_once``)."""
        return self.settings.results_served_once

    def _post_request(self, request: GenerationRequest, *, action: str, accept: str, **kwargs: Any) -> Any:
        """POST ``request`` as multipart form data, its input audio streamed from storage."""
        from airflow_provider_stableaudio.multipart import MultipartBody

        body = MultipartBody(request.form_fields(), file_field="audio", file=request.init_audio)
        headers = {
            **self._api_headers(self.settings, accept=accept),
            "Content-Type": body.content_type,
            "Content-Length": str(body.content_length),
        }
        return self._request(
            "POST", request.submit_path, action=action, data=body.iter_chunks(), headers=headers, **kwargs
        )

    def _failed_submission(self, request: GenerationRequest, response: Any, *, action: str) -> Exception:
        content = response.content
        refusal = submit_refusal(
            response.status_code,
            content,
            access_flag=MODELS[request.model].access_flag,
            action=action,
            secret=self.settings.api_key,
        )
        return refusal or self._refusal(
            response.status_code, content, response.headers.get("Retry-After"), action=action
        )

    # -- Stable Audio 3: submit, poll, fetch --------------------------------------------------

    def submit_generation(self, request: GenerationRequest, *, timeout: float | None = None) -> Generation:
        """Submit a Stable Audio 3 generation (``202`` and its id); retried only while Stability
        provably created nothing.

        :param request: a validated request, from :meth:`GenerationRequest.build`.
        :param timeout: seconds after which a rejected submission is no longer retried.
        :raises StableAudioSubmissionUnknownError: the request may have created a generation but
            no answer came back; it is not sent again, since that could pay twice.
        :raises StableAudioContentRefusedError: moderation flagged the prompt or the input audio.
        """
        action = f"submit a {request.model} {request.mode} generation"

        def attempt() -> Generation:
            response = self._post_request(request, action=action, accept="application/json")
            if response.status_code not in (200, 202):
                raise self._failed_submission(request, response, action=action)
            generation_id = submitted_id(response.content, action=action)
            return Generation(id=generation_id, status="in-progress", state=GenerationState.PENDING)

        return self._submit(attempt, action=action, timeout=timeout)

    def _poll(self, generation_id: str, *, store_to: OutputPath | None = None) -> Generation:
        # Streamed, and closed unread when finished: the poll learns the result is there, its
        # bytes are fetched by store_result. With store_to (a result served once only) the poll
        # that finds it finished is the fetch, and streams it to storage.
        action = f"poll generation {generation_id}"
        with self._request(
            "GET",
            RESULTS_PATH.format(id=generation_id),
            action=action,
            headers=self._api_headers(self.settings, accept=ACCEPT_AUDIO),
            stream=True,
        ) as response:
            body = b"" if response.status_code == 200 else response.content
            generation = result_answer(
                response.status_code, response.headers, body, generation_id, secret=self.settings.api_key
            )
            if store_to is None or generation.state is not GenerationState.SUCCEEDED:
                return generation
            # Served once: a result this answer did not deliver whole is gone for good.
            gone = f"the result of generation {generation_id}, served once only, is lost"
            try:
                # Probed before the first poll (by the operator or sensor): its folder only.
                target = storage.prepare(store_to, probe=False)
            except Exception as error:
                raise StableAudioResultGoneError(f"{gone}: {error}. {PAID}") from error
            location = storage.describe(store_to, target)
            received = write_body(
                response,
                target,
                location,
                sizes={"Content-Length": response.headers.get("Content-Length")},
                broken=lambda what: StableAudioResultGoneError(f"{gone}: its answer {what}. {PAID}"),
                unwritable=lambda what: StableAudioResultGoneError(f"{gone}: {what}. {PAID}"),
            )
        return _stored(generation, location, received)

    async def aget_generation(self, generation_id: str, *, priority: float | None = None) -> Generation:
        """Read a generation's state once, without blocking the loop and without reading a clip.

        A finished result's body is left unread (its connection closed): the triggerer never holds
        a clip. Uses the event loop's shared ``aiohttp`` session.
        """
        from airflow_provider_stableaudio.hooks.async_session import import_aiohttp

        await import_aiohttp()
        import aiohttp

        settings = await self.aget_settings()
        status, answer_headers, body = await self._aget(
            settings.base_url + RESULTS_PATH.format(id=generation_id),
            headers=self._api_headers(settings, accept=ACCEPT_AUDIO),
            timeout=aiohttp.ClientTimeout(total=settings.request_timeout),
            action=f"poll generation {generation_id}",
            unread=200,  # the clip stays on the server for the worker to fetch
            priority=priority,
        )
        return result_answer(status, answer_headers, body, generation_id, secret=settings.api_key)

    def store_result(self, generation: Generation, path: OutputPath) -> str:
        """Fetch a finished Stable Audio 3 result and stream it to ``path``, whole or not at all.

        :raises StableAudioResultGoneError: Stability no longer serves it (expired after about
            24 hours, or not served a second time).
        :raises StableAudioContentRefusedError: 403: its moderation flagged the result.
        """
        try:
            return self._download(
                self.settings.base_url + RESULTS_PATH.format(id=generation.id),
                path,
                headers=self._api_headers(self.settings, accept=ACCEPT_AUDIO),
                lockout=self.service.lockout_seconds,
                gate=self._budget_gate,
            )
        except StableAudioDownloadError as error:
            if error.status_code == 403:  # Stability's 403 is its moderation, on a result as on a submit
                raise StableAudioContentRefusedError(
                    f"Stability AI refused the content of generation {generation.id} ({error}): its "
                    "moderation flagged the prompt or the input audio. Nothing was stored; change the "
                    "request before trying again."
                ) from None
            if error.url_expired:
                raise StableAudioResultGoneError(
                    f"Stability AI no longer serves the result of generation {generation.id} ({error}): "
                    f"results are kept about {RESULT_TTL_HOURS} hours and may not be served twice. "
                    "The generation was paid for, so the task fails without retries (a retry would "
                    "pay for a new one); clear it to generate anew."
                ) from None
            raise

    # -- Stable Audio 2 / 2.5: the answer is the clip -----------------------------------------

    def generate_to(self, request: GenerationRequest, path: OutputPath, *, timeout: float) -> Generation:
        """Generate synchronously and stream the answer to ``path``; return the generation
        (``stored_at`` says where).

        The call itself is the wait: its answer may take ``timeout`` seconds to begin. Retried only
        while Stability provably created nothing; an answer lost or cut short is never sent again.

        :raises StableAudioSubmissionUnknownError: the answer was lost after the request was sent.
        :raises StableAudioContentRefusedError: moderation refused the content, or filtered the result.
        :raises StableAudioResultGoneError: the answer could not be stored (it cannot be asked again).
        """
        action = f"generate with {request.model} ({request.mode})"
        target = storage.prepare(path)
        location = storage.describe(path, target)

        def attempt() -> Generation:
            connect = self.settings.request_timeout
            with self._post_request(
                request,
                action=action,
                accept=ACCEPT_AUDIO,
                stream=True,
                timeout=(connect, max(connect, timeout)),
            ) as response:
                if response.status_code != 200:
                    raise self._failed_submission(request, response, action=action)
                generation = finished("", response.headers)
                if generation.state is GenerationState.FAILED:
                    raise StableAudioContentRefusedError(generation.error_message or "content filtered")
                content_type = generation.audio_file.content_type if generation.audio_file else None
                if not (content_type or "").startswith("audio/"):
                    raise self._unknown(
                        f"the answer to {action} is HTTP 200 with {content_type!r}, not audio"
                    )
                # Lost, cut short or not storable, the answer was paid for: never sent again.
                received = write_body(
                    response,
                    target,
                    location,
                    sizes={"Content-Length": response.headers.get("Content-Length")},
                    broken=lambda what: self._unknown(f"the answer to {action} {what}"),
                    unwritable=lambda what: StableAudioResultGoneError(f"{what}. {PAID}"),
                )
            return _stored(generation, location, received)

        return self._submit(attempt, action=action, timeout=timeout)

    # -- the connection's Test button ---------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Prove the key with the account's balance: free, and the message shows the credits left."""
        try:
            status, content, retry_after = self._send("GET", BALANCE_PATH, action="test the connection")
        except Exception as exc:
            return False, str(exc)
        if status != 200:
            error = error_from_response(
                status,
                content,
                action="test the connection",
                retry_after=retry_after,
                secret=self.settings.api_key,
                api=API,
                lockout=self.service.lockout_seconds,
            )
            return False, str(error)
        import json

        try:
            credits = json.loads(content).get("credits")
        except (ValueError, AttributeError):
            return False, f"{self.settings.base_url} answered HTTP 200 without the API's balance"
        balance = f"; balance: {credits:g} credits" if isinstance(credits, (int, float)) else ""
        return True, f"Connected to {self.settings.base_url}: Stability AI accepted the key{balance}."


def _stored(generation: Generation, location: str, received: int) -> Generation:
    """``generation``, its audio stored at ``location`` (``received`` bytes)."""
    audio = generation.audio_file
    return replace(generation, audio_file=audio and replace(audio, file_size=received), stored_at=location)
