"""Turning HTTP failures into the provider's exceptions, and reading ``Retry-After``.

Shared by the synchronous (requests) and asynchronous (aiohttp) paths. No Airflow imports.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from typing import Any

from airflow_provider_stableaudio.exceptions import (
    StableAudioAPIError,
    StableAudioPermanentError,
    StableAudioRetryableError,
)

REDACTED = "***"
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# A server asking for more than this is not waited on longer: the caller's own deadline decides.
MAX_RETRY_AFTER = 600.0
# Text the API sent is cut to this many characters before it reaches a message, an event or a log.
DETAIL_LIMIT = 500


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced."""
    return text.replace(secret, REDACTED) if secret else text


def shorten(text: str, limit: int = DETAIL_LIMIT) -> str:
    """``text`` on one line, cut to ``limit`` characters (saying so) when longer."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit] + "...(truncated)"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return min(max(0.0, seconds), MAX_RETRY_AFTER) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when.timestamp() - (time.time() if now is None else now)), MAX_RETRY_AFTER)


def _decode_envelope(body: bytes | str) -> dict[str, Any] | None:
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded if isinstance(decoded, dict) else None


def error_detail(body: bytes | str, *, secret: str | None = None) -> tuple[str, str | None]:
    """What an error body says, redacted and shortened, and the API's ``requestId`` if it sent one."""
    envelope = _decode_envelope(body)
    request_id = None
    if envelope is not None and isinstance(envelope.get("errors"), list):
        # Stability AI's envelope: {"id", "name", "errors": [...]}.
        messages = "; ".join(str(message) for message in envelope["errors"])
        detail = ": ".join(str(part) for part in (envelope.get("name"), messages) if part)
        request_id = envelope.get("id")
        request_id = shorten(str(request_id), 100) if request_id else None
    elif envelope is not None:
        detail = envelope.get("message") or envelope.get("error") or json.dumps(envelope)
        request_id = envelope.get("requestId")
        request_id = shorten(str(request_id), 100) if request_id else None
    else:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        detail = text.strip() or "(empty body)"
    if not isinstance(detail, str):
        detail = json.dumps(detail)
    # Redacted before it is cut: a cut must never leave part of the key behind.
    return shorten(redact(detail, secret)), request_id


def error_from_response(
    status: int,
    body: bytes | str,
    *,
    action: str,
    retry_after: str | None = None,
    secret: str | None = None,
    api: str = "Stable Audio API",
    lockout: float | None = None,
) -> StableAudioAPIError:
    """The exception for a non-2xx answer.

    :param status: the HTTP status code.
    :param body: the raw body; the AI/ML API's envelope is ``{message, requestId, statusCode, ...}``,
        Stability AI's ``{id, name, errors}``.
    :param action: what was being done, for the message (e.g. ``"poll generation abc"``).
    :param retry_after: the ``Retry-After`` header, if sent.
    :param secret: a value to strip from the message (the API key), should the API echo it.
    :param api: which API answered, for the message.
    :param lockout: seconds the API refuses the key after a 429 that carries no ``Retry-After``
        (Stability: 60); the error's ``retry_after`` then says so, and no retry comes sooner.
    """
    detail, request_id = error_detail(body, secret=secret)
    message = f"{api} answered HTTP {status} to {action}: {detail}"
    if request_id:
        message += f" (requestId {request_id})"
    if status == 401:
        message += ". Check the API key in the connection's password field."
    elif status == 403:
        message += ". The account may be out of credits or not allowed to use this model."
    wait = parse_retry_after(retry_after)
    if status == 429 and wait is None and lockout is not None:
        wait = lockout
        message += f". The API locks the key out for {lockout:g} s after a 429: nothing is retried sooner"
    message = redact(message, secret)
    if status in RETRYABLE_STATUSES:
        return StableAudioRetryableError(message, status_code=status, request_id=request_id, retry_after=wait)
    return StableAudioPermanentError(message, status_code=status, request_id=request_id)


def submission_was_rejected(status: int, body: bytes | str) -> bool:
    """Whether a failed ``POST`` provably created nothing, so that sending it again cannot pay twice.

    Any 4xx (429 included) is a rejection. A 5xx is one only when the API itself answered with its
    error envelope; a gateway's bare 502/504 or the API's 504 ("Generation timeout") may hide a
    generation that was created.
    """
    if 400 <= status < 500:
        return True
    envelope = _decode_envelope(body)
    if envelope is None or status < 500 or status == 504:
        return False
    return "statusCode" in envelope or isinstance(envelope.get("errors"), list)
