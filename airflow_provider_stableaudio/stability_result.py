"""Reading Stability AI's answers (submit, results, audio) into the status model. No Airflow imports.

Stability answers with the audio itself, so a finished result is read from its status and headers
only: the body (the clip) is streamed to storage by whoever fetches it, never read here. Points of
the contract that no client confirms are data below, easy to change.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio.api_errors import error_detail, error_from_response, redact
from airflow_provider_stableaudio.exceptions import (
    StableAudioContentRefusedError,
    StableAudioModelAccessError,
    StableAudioPermanentError,
    StableAudioResponseError,
    StableAudioResultNotFoundError,
)
from airflow_provider_stableaudio.generation_result import (
    CONTENT_FILTERED,
    AudioFile,
    Generation,
    GenerationState,
    key_refused,
)
from airflow_provider_stableaudio.services import SERVICES, STABILITY

if TYPE_CHECKING:
    from collections.abc import Mapping

API = SERVICES[STABILITY].title
# After a 429 (no Retry-After is sent), the key is refused for this long.
LOCKOUT_SECONDS = SERVICES[STABILITY].lockout_seconds
RESULTS_PATH = "/v2beta/audio/results/{id}"
BALANCE_PATH = "/v1/user/balance"
# Ask for the bytes (streamed to storage), not base64 in JSON (the clip three times in memory).
ACCEPT_AUDIO = "audio/*"
# Sent with an audio answer. Confirmed for the image endpoints; unconfirmed for audio: when absent,
# the finish reason is unknown (not assumed filtered) and the seed is not reported.
FINISH_REASON_HEADER = "finish-reason"
SEED_HEADER = "seed"
MODERATION_ERROR = "content_moderation"
# A model whose paths are gated per account (ModelSpec.access_flag) is refused to an account without
# the flag (the status is unconfirmed: 403 or 404 of another name than moderation); this one is not.
UNGATED_MODEL = "stable-audio-2.5"
# Results are kept about this long (the contract's "about 24 hours").
RESULT_TTL_HOURS = 24
_GENERATION_ID = re.compile(r"[0-9a-zA-Z_-]{1,128}")


def _int_header(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def audio_file_from_headers(headers: Mapping[str, str]) -> AudioFile:
    """What an audio answer's headers say of the clip (its bytes are not read here)."""
    return AudioFile(
        content_type=(headers.get("Content-Type") or "").split(";")[0].strip() or None,
        file_size=_int_header(headers.get("Content-Length")),
        seed=_int_header(headers.get(SEED_HEADER)),
        finish_reason=headers.get(FINISH_REASON_HEADER) or None,
    )


def finished(generation_id: str, headers: Mapping[str, str]) -> Generation:
    """The generation whose finished result (an audio answer) carried ``headers``."""
    audio = audio_file_from_headers(headers)
    if audio.finish_reason == CONTENT_FILTERED:
        return Generation(
            id=generation_id,
            status=CONTENT_FILTERED,
            state=GenerationState.FAILED,
            audio_file=audio,
            error_message=content_filtered_message(generation_id),
        )
    return Generation(id=generation_id, status="complete", state=GenerationState.SUCCEEDED, audio_file=audio)


def content_filtered_message(generation_id: str | None) -> str:
    which = f"the result of generation {generation_id}" if generation_id else "the result"
    return (
        f"Stability AI filtered {which} (finish_reason {CONTENT_FILTERED}): the content was refused "
        "by its moderation"
    )


def _error_name(body: bytes) -> str | None:
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    name = envelope.get("name") if isinstance(envelope, dict) else None
    return name if isinstance(name, str) else None


def submit_refusal(
    status: int, body: bytes, *, access_flag: str | None, action: str, secret: str
) -> StableAudioContentRefusedError | StableAudioPermanentError | None:
    """What Stability means by a refused submit, where it differs from the shared reading; else ``None``.

    A 403 is its moderation (``content_moderation``), never the key (that is 401). On a path gated
    per account by ``access_flag``, a 403 or 404 of another name says the account lacks access.
    """
    if access_flag and status in (403, 404) and _error_name(body) != MODERATION_ERROR:
        return access_refused(status, body, access_flag=access_flag, action=action, secret=secret)
    if status == 403:
        return content_refused(status, body, action=action, secret=secret)
    return None


def _answered(status: int, body: bytes, *, secret: str) -> tuple[str, str | None]:
    """``(HTTP <status>: <what the body says>) (request id ...)``, redacted, and the request id."""
    detail, request_id = error_detail(body, secret=secret)
    reference = f" (request id {request_id})" if request_id else ""
    return redact(f"(HTTP {status}: {detail}){reference}", secret), request_id


def access_refused(
    status: int, body: bytes, *, access_flag: str, action: str, secret: str
) -> StableAudioModelAccessError:
    """The error for a gated path refused to the account (not moderation, not a bad key)."""
    answered, request_id = _answered(status, body, secret=secret)
    return StableAudioModelAccessError(
        f"Stability AI refused to {action} {answered}: the account may lack access to the model, which "
        f"Stability grants per account (feature {access_flag}). Ask Stability AI for access, or use "
        f"model={UNGATED_MODEL!r}. Nothing was generated.",
        status_code=status,
        request_id=request_id,
    )


def content_refused(status: int, body: bytes, *, action: str, secret: str) -> StableAudioContentRefusedError:
    """The error for a 403: Stability's moderation (``content_moderation``) flagged the content."""
    answered, _ = _answered(status, body, secret=secret)
    return StableAudioContentRefusedError(
        f"Stability AI refused the content while trying to {action} {answered}: its moderation flagged "
        "the prompt or the input audio. Nothing was generated; change the request before trying again."
    )


def submitted_id(content: bytes, *, action: str) -> str:
    """The id in a Stable Audio 3 submit's 202 body.

    :raises StableAudioResponseError: no readable id (the caller treats the outcome as unknown).
    """
    try:
        body: Any = json.loads(content)
    except ValueError:
        body = None
    generation_id = body.get("id") if isinstance(body, dict) else None
    if not isinstance(generation_id, str) or not _GENERATION_ID.fullmatch(generation_id):
        raise StableAudioResponseError(
            f"the {API}'s answer to {action} has no generation id: {content[:200]!r}"
        )
    return generation_id


def result_answer(
    status: int, headers: Mapping[str, str], body: bytes, generation_id: str, *, secret: str
) -> Generation:
    """The generation in the answer to ``GET /v2beta/audio/results/{id}``, or the error it reports.

    :param body: the body of anything but a 200 (a 200's body is the clip: pass ``b""``).
    :raises StableAudioRetryableError: a transient failure (429: after the 60 s lockout; 5xx).
    :raises StableAudioKeyRefusedError: 401: the key was refused.
    :raises StableAudioContentRefusedError: 403: moderation flagged the prompt or the input audio.
    :raises StableAudioResultNotFoundError: 404: unknown, or its result expired or was served.
    :raises StableAudioPermanentError: other 4xx.
    """
    action = f"poll generation {generation_id}"
    if status == 202:
        return Generation(id=generation_id, status="in-progress", state=GenerationState.PENDING)
    if status == 200:
        content_type = headers.get("Content-Type") or ""
        if not content_type.startswith("audio/"):  # asked for audio/*: not Stability's answer
            raise StableAudioResponseError(
                f"the {API} answered HTTP 200 with {content_type!r}, not audio, to {action}"
            )
        return finished(generation_id, headers)
    if status == 401:
        raise key_refused(status, body, generation_id, secret=secret, api=API)
    if status == 403:  # Stability's 403 is its moderation: the key works
        raise content_refused(status, body, action=action, secret=secret)
    if 200 <= status < 300:
        raise StableAudioResponseError(f"the {API} answered HTTP {status} to {action}")
    error = error_from_response(
        status,
        body,
        action=action,
        retry_after=headers.get("Retry-After"),
        secret=secret,
        api=API,
        lockout=LOCKOUT_SECONDS,
    )
    if status == 404:
        # For a generation this provider submitted, the result is gone: retrying cannot bring it back.
        raise StableAudioResultNotFoundError(
            f"{error}. Generation {generation_id} is unknown to Stability AI: a result past its "
            f"{RESULT_TTL_HOURS} hours (or served once only), a wrong id, or another account."
        )
    raise error
