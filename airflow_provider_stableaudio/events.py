"""The trigger's event payloads, and reading them back in ``execute_complete``. No Airflow imports.

Payloads are plain JSON: the triggerer msgpack-encodes them, and another provider version may read them.
"""

from __future__ import annotations

import time
from typing import Any

from airflow_provider_stableaudio.api_errors import shorten
from airflow_provider_stableaudio.exceptions import (
    StableAudioConfigError,
    StableAudioContentRefusedError,
    StableAudioGenerationFailed,
    StableAudioKeyRefusedError,
    StableAudioPermanentError,
    StableAudioResponseError,
    StableAudioResultGoneError,
    StableAudioTimeoutError,
)
from airflow_provider_stableaudio.generation_result import (
    AudioFile,
    Generation,
    GenerationState,
    credits_number,
)
from airflow_provider_stableaudio.services import AIMLAPI
from airflow_provider_stableaudio.stability_result import RESULT_TTL_HOURS


def success_event(generation: Generation, *, service: str = AIMLAPI) -> dict[str, Any]:
    """The payload for a completed generation.

    :param service: the service that holds the result; Stability's events carry no URL (the worker
        fetches the result by id) but when the trigger saw it finished, for an expiry message.
    """
    if generation.audio_file is None:
        raise ValueError(f"generation {generation.id} has no audio file")
    event = {
        "status": "success",
        "generation_id": generation.id,
        **generation.audio_file.to_dict(),
        "credits_used": generation.credits_used,
    }
    if service != AIMLAPI:
        event.update(service=service, finished_at=time.time())
    return event


# An error event's ``reason``: why the wait ended. Events without one (from older provider
# versions) are read as a failed generation.
GENERATION_FAILED = "generation_failed"
KEY_REFUSED = "key_refused"
POLL_REFUSED = "poll_refused"
CONNECTION_UNUSABLE = "connection_unusable"
CONTENT_REFUSED = "content_refused"
RESULT_GONE = "result_gone"
# Event messages are stored in the metadata database and logged: kept to a sane length.
EVENT_MESSAGE_LIMIT = 1000


def error_event(generation_id: str, message: str, *, reason: str = GENERATION_FAILED) -> dict[str, Any]:
    """The payload for a generation that failed, or a wait that cannot go on (see ``reason``)."""
    return {
        "status": "error",
        "generation_id": generation_id,
        "reason": reason,
        "message": shorten(message, EVENT_MESSAGE_LIMIT),
    }


def refusal_event(
    generation_id: str,
    error: StableAudioPermanentError
    | StableAudioConfigError
    | StableAudioResultGoneError
    | StableAudioContentRefusedError,
) -> dict[str, Any]:
    """The payload for a poll the API refused for good (the key, or the content), a result gone,
    or a connection that cannot be used."""
    if isinstance(error, StableAudioConfigError):
        reason = CONNECTION_UNUSABLE
    elif isinstance(error, StableAudioContentRefusedError):
        reason = CONTENT_REFUSED
    elif isinstance(error, StableAudioResultGoneError):
        reason = RESULT_GONE
    else:
        reason = KEY_REFUSED if isinstance(error, StableAudioKeyRefusedError) else POLL_REFUSED
    return error_event(generation_id, str(error), reason=reason)


def timeout_event(generation_id: str, message: str) -> dict[str, Any]:
    """The payload for a generation still unfinished at the deadline."""
    return {
        "status": "timeout",
        "generation_id": generation_id,
        "message": shorten(message, EVENT_MESSAGE_LIMIT),
    }


def generation_from_event(event: Any, *, generation_id: str | None = None) -> Generation:
    """Turn a trigger event into the completed generation, or raise the failure it reports.

    :param event: the payload passed to ``execute_complete``.
    :param generation_id: the id the task waited for, named in errors when the event lacks it.
    :raises StableAudioGenerationFailed: the event is ``error``: the generation failed.
    :raises StableAudioKeyRefusedError: the event is ``error``: the API refused the key.
    :raises StableAudioPermanentError: the event is ``error``: the API refused the poll (404, ...).
    :raises StableAudioConfigError: the event is ``error``: the connection cannot be used.
    :raises StableAudioTimeoutError: the event is ``timeout``.
    :raises StableAudioResponseError: anything else; never treated as success.
    """
    if not isinstance(event, dict):
        raise StableAudioResponseError(f"unexpected trigger event for generation {generation_id}: {event!r}")
    gen_id = event.get("generation_id") or generation_id
    status = event.get("status")
    if status == "error":
        message = event.get("message")
        reason = event.get("reason", GENERATION_FAILED)
        if reason == KEY_REFUSED:
            raise StableAudioKeyRefusedError(str(message))
        if reason == POLL_REFUSED:
            raise StableAudioPermanentError(str(message))
        if reason == CONNECTION_UNUSABLE:
            raise StableAudioConfigError(str(message))
        if reason == CONTENT_REFUSED:
            raise StableAudioContentRefusedError(str(message))
        if reason == RESULT_GONE:
            raise StableAudioResultGoneError(str(message))
        raise StableAudioGenerationFailed.for_generation(gen_id, message)
    if status == "timeout":
        raise StableAudioTimeoutError(f"Stable Audio generation {gen_id} timed out: {event.get('message')}")
    url = event.get("url")
    # Only the AI/ML API hands over a URL; Stability's result is fetched from the API by its id.
    has_result = event.get("service", AIMLAPI) != AIMLAPI or (isinstance(url, str) and bool(url))
    if status != "success" or not isinstance(gen_id, str) or not has_result:
        raise StableAudioResponseError(f"unexpected trigger event for generation {gen_id}: {event!r}")
    return Generation(
        id=gen_id,
        status="completed",
        state=GenerationState.SUCCEEDED,
        audio_file=AudioFile(
            url=url,
            file_name=event.get("file_name"),
            content_type=event.get("content_type"),
            file_size=event.get("file_size"),
            seed=event.get("seed"),
            finish_reason=event.get("finish_reason"),
        ),
        credits_used=credits_number(event.get("credits_used")),
    )


# Results are kept about RESULT_TTL_HOURS: one gone an hour sooner was not kept, it was served once.
_KEPT_HOURS = RESULT_TTL_HOURS - 1


def result_gone_hint(event: Any) -> str:
    """What a result no longer served means, from when the trigger saw it finished."""
    finished_at = event.get("finished_at") if isinstance(event, dict) else None
    if isinstance(finished_at, bool) or not isinstance(finished_at, (int, float)):
        return ""
    hours = (time.time() - finished_at) / 3600
    if hours >= _KEPT_HOURS:
        return f" It finished {hours:.1f} hours before the task resumed: it expired."
    return (
        f" It finished {hours * 60:.0f} minutes before the task resumed, well within the time results "
        "are kept: the service seems to serve a result once only, and the trigger's check used it "
        'up. Set the connection\'s extra {"results_served_once": true}: the poll that finds a '
        "result ready then stores it (the wait runs on the worker)."
    )
