"""Reading the API's answers about a generation into typed results: the status model. No Airflow imports."""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_stableaudio.api_errors import error_detail, error_from_response, redact, shorten
from airflow_provider_stableaudio.exceptions import (
    StableAudioContentRefusedError,
    StableAudioGenerationFailed,
    StableAudioKeyRefusedError,
    StableAudioPermanentError,
    StableAudioResponseError,
)


class GenerationState(enum.Enum):
    """Where a generation stands, whatever word the API used for it."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# The schema names queued/generating/completed/error; real clients also meet the others, and the
# vendor's prose for stable-audio says a finished generation is "complete".
STATUS_STATES: dict[str, GenerationState] = {
    "queued": GenerationState.PENDING,
    "generating": GenerationState.PENDING,
    "waiting": GenerationState.PENDING,
    "active": GenerationState.PENDING,
    "processing": GenerationState.PENDING,
    "completed": GenerationState.SUCCEEDED,
    "complete": GenerationState.SUCCEEDED,
    "error": GenerationState.FAILED,
    "failed": GenerationState.FAILED,
}


# Stability's finish reason (and so status) of a result its moderation filtered.
CONTENT_FILTERED = "CONTENT_FILTERED"


def quote_body(body: Any) -> str:
    """A short, single-line rendering of a response body for error messages."""
    return shorten(body if isinstance(body, str) else json.dumps(body, default=str))


_SERVICE_SPECIFIC = frozenset({"seed", "finish_reason"})


@dataclass(frozen=True)
class AudioFile:
    """The generated file, with what the service said of it.

    :param url: where to download it (the AI/ML API's only guaranteed field); ``None`` for Stability
        AI, whose answer is the audio itself.
    :param file_name: the file's name, when sent.
    :param content_type: its media type, when sent.
    :param file_size: its size in bytes, when known.
    :param seed: the seed the service used (Stability AI).
    :param finish_reason: ``SUCCESS`` or ``CONTENT_FILTERED`` (Stability AI).
    """

    url: str | None = None
    file_name: str | None = None
    content_type: str | None = None
    file_size: int | None = None
    seed: int | None = None
    finish_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every field; Stability AI's own (``seed``, ``finish_reason``) only when known, so the AI/ML
        API's ``audio_file`` XCom keeps its keys."""
        fields = asdict(self)
        return {k: v for k, v in fields.items() if v is not None or k not in _SERVICE_SPECIFIC}


@dataclass(frozen=True)
class Generation:
    """One reading of a generation's state.

    :param id: the generation id to poll with.
    :param status: the API's word for the status, as sent.
    :param state: what that word means.
    :param audio_file: the file, once completed.
    :param error_message: the API's reason, once failed.
    :param credits_used: ``meta.usage.credits_used`` when sent, as sent: an ``int``, or a ``float``
        for a fraction (the schema's type is ``number``); see :func:`credits_number`.
    :param stored_at: where its audio was stored, when the answer that reported it finished was
        the audio itself and went straight to storage (Stability AI).
    """

    id: str
    status: str
    state: GenerationState
    audio_file: AudioFile | None = None
    error_message: str | None = None
    credits_used: int | float | None = None
    stored_at: str | None = None


def _optional_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    # isdigit() alone admits "²", which int() refuses.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


def credits_number(value: Any) -> int | float | None:
    """A usage figure as a number: an ``int`` stays one, a ``float`` (``12.5``) stays one, a decimal
    string (``"12"``, ``"12.5"``) becomes one.

    Anything that is no cost reads as unknown (``None``) rather than failing the task over a figure:
    a bool, a negative number, NaN or infinity (neither fits in JSON, so neither could reach an XCom
    or a lineage event), any other string or type.
    """
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = float(value) if "." in value else int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if 0 <= value < math.inf else None


def _error_message(error: Any) -> str | None:
    if isinstance(error, dict):
        parts = [str(error[k]) for k in ("name", "message") if error.get(k)]
        return shorten(": ".join(parts) if parts else json.dumps(error))
    return shorten(str(error)) if error else None


def parse_generation(body: Any, *, generation_id: str | None = None) -> Generation:
    """Read a ``POST`` or ``GET`` body of ``/v2/generate/audio``.

    :param body: the decoded JSON body.
    :param generation_id: the id that was polled, used when the body omits it.
    :raises StableAudioResponseError: the body is not a generation, or its status is unknown.
    """
    if not isinstance(body, dict):
        raise StableAudioResponseError(f"expected a JSON object from the API, got: {quote_body(body)}")
    gen_id = body.get("id") or body.get("generation_id") or generation_id
    if not isinstance(gen_id, str) or not gen_id:
        raise StableAudioResponseError(f"the API's response has no generation id: {quote_body(body)}")
    status = body.get("status")
    state = STATUS_STATES.get(status) if isinstance(status, str) else None
    if state is None:
        raise StableAudioResponseError(
            f"the API reported an unknown status {status!r} for generation {gen_id}: {quote_body(body)}"
        )
    audio_file = None
    if state is GenerationState.SUCCEEDED:
        raw = body.get("audio_file")
        if not isinstance(raw, dict) or not isinstance(raw.get("url"), str) or not raw["url"]:
            raise StableAudioResponseError(
                f"generation {gen_id} is completed but has no audio_file.url: {quote_body(body)}"
            )
        audio_file = AudioFile(
            url=raw["url"],
            file_name=raw.get("file_name") or None,
            content_type=raw.get("content_type") or None,
            file_size=_optional_int(raw.get("file_size")),
        )
    meta = body.get("meta")
    usage = meta.get("usage") if isinstance(meta, dict) else None
    credits_used = credits_number(usage.get("credits_used")) if isinstance(usage, dict) else None
    return Generation(
        id=gen_id,
        status=str(status),
        state=state,
        audio_file=audio_file,
        error_message=_error_message(body.get("error")) if state is GenerationState.FAILED else None,
        credits_used=credits_used,
    )


def read_generation(content: bytes, *, action: str, generation_id: str | None = None) -> Generation:
    """Parse a 2xx body of ``/v2/generate/audio``.

    :param action: what was being done, for the message.
    :raises StableAudioResponseError: the body is not JSON or not a generation.
    """
    try:
        body = json.loads(content)
    except ValueError:
        raise StableAudioResponseError(
            f"the API's answer to {action} is not JSON: {content[:200]!r}"
        ) from None
    return parse_generation(body, generation_id=generation_id)


def poll_answer(
    status: int, content: bytes, retry_after: str | None, generation_id: str, *, secret: str
) -> Generation:
    """The generation in the answer to a poll, or the error it reports (sync and async paths alike).

    :raises StableAudioRetryableError: a transient failure (429, 5xx, a malformed body).
    :raises StableAudioKeyRefusedError: 401, 403: the key was refused.
    :raises StableAudioPermanentError: 404 and other 4xx.
    """
    action = f"poll generation {generation_id}"
    if 200 <= status < 300:
        return read_generation(content, action=action, generation_id=generation_id)
    if status in (401, 403):
        credits = " and the account's credits" if status == 403 else ""
        raise key_refused(
            status, content, generation_id, secret=secret, api="Stable Audio API", check=credits
        )
    error = error_from_response(status, content, action=action, retry_after=retry_after, secret=secret)
    if status == 404:
        raise StableAudioPermanentError(
            f"{error}. Generation {generation_id} is unknown to the API (wrong id, another account, "
            "or expired).",
            status_code=404,
            request_id=error.request_id,
        )
    raise error


def key_refused(
    status: int, content: bytes, generation_id: str, *, secret: str, api: str, check: str = ""
) -> StableAudioKeyRefusedError:
    """The error for a poll answered 401/403: about the key, not the generation (a user who rotated
    the key must not go looking at the generation). ``check``: what else to check, if anything."""
    detail, request_id = error_detail(content, secret=secret)
    reference = f", requestId {request_id}" if request_id else ""
    message = (
        f"{api} refused the connection's API key (HTTP {status}: {detail}{reference}) while polling "
        f"generation {generation_id}. Check the API key in the connection's password field{check}; "
        "nothing is known to be wrong with the generation."
    )
    return StableAudioKeyRefusedError(redact(message, secret), status_code=status, request_id=request_id)


def is_json_object(content: bytes) -> bool:
    """Whether ``content`` is a JSON object (the shape of every answer of the API)."""
    try:
        return isinstance(json.loads(content), dict)
    except ValueError:
        return False


def accepted_id(content: bytes) -> str | None:
    """The generation id in a 2xx body that is otherwise unreadable, if there is one."""
    try:
        body = json.loads(content)
    except ValueError:
        return None
    gen_id = (body.get("id") or body.get("generation_id")) if isinstance(body, dict) else None
    return gen_id if isinstance(gen_id, str) and gen_id else None


def generation_failure(generation: Generation) -> StableAudioGenerationFailed:
    """The error for a generation that ended ``FAILED``: a refusal of its content, or a failure."""
    if generation.status == CONTENT_FILTERED:
        return StableAudioContentRefusedError(generation.error_message or "the content was filtered")
    return StableAudioGenerationFailed.for_generation(generation.id, generation.error_message)
