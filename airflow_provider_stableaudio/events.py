"""The trigger's event payloads, and reading them back in ``execute_complete``. No Airflow imports.

Payloads are plain JSON: the triggerer msgpack-encodes them, and another provider version may read them.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_stableaudio.exceptions import (
    StableAudioGenerationFailed,
    StableAudioResponseError,
    StableAudioTimeoutError,
)
from airflow_provider_stableaudio.generation_result import AudioFile, Generation, GenerationState


def success_event(generation: Generation) -> dict[str, Any]:
    """The payload for a completed generation."""
    if generation.audio_file is None:
        raise ValueError(f"generation {generation.id} has no audio file")
    return {
        "status": "success",
        "generation_id": generation.id,
        **generation.audio_file.to_dict(),
        "credits_used": generation.credits_used,
    }


def error_event(generation_id: str, message: str) -> dict[str, Any]:
    """The payload for a generation that failed, or a wait that cannot go on."""
    return {"status": "error", "generation_id": generation_id, "message": message}


def timeout_event(generation_id: str, message: str) -> dict[str, Any]:
    """The payload for a generation still unfinished at the deadline."""
    return {"status": "timeout", "generation_id": generation_id, "message": message}


def generation_from_event(event: Any, *, generation_id: str | None = None) -> Generation:
    """Turn a trigger event into the completed generation, or raise the failure it reports.

    :param event: the payload passed to ``execute_complete``.
    :param generation_id: the id the task waited for, named in errors when the event lacks it.
    :raises StableAudioGenerationFailed: the event is ``error``.
    :raises StableAudioTimeoutError: the event is ``timeout``.
    :raises StableAudioResponseError: anything else; never treated as success.
    """
    if not isinstance(event, dict):
        raise StableAudioResponseError(f"unexpected trigger event for generation {generation_id}: {event!r}")
    gen_id = event.get("generation_id") or generation_id
    status = event.get("status")
    if status == "error":
        raise StableAudioGenerationFailed.for_generation(gen_id, event.get("message"))
    if status == "timeout":
        raise StableAudioTimeoutError(f"Stable Audio generation {gen_id} timed out: {event.get('message')}")
    url = event.get("url")
    if status != "success" or not isinstance(gen_id, str) or not isinstance(url, str) or not url:
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
        ),
        credits_used=event.get("credits_used"),
    )
