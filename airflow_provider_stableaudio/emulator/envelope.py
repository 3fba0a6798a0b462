"""The APIs' error envelopes, shared by the API, admin and fault responses.

Paths of Stability AI's API (``/v2beta/...``, ``/v1/...``) get Stability's envelope
``{"id", "name", "errors"}``, its ``id`` also in the ``x-request-id`` header (every Stability answer
carries a fresh one: :func:`request_id_header`); every other path gets the AI/ML API's.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

STABILITY_PREFIXES = ("/v2beta/", "/v1/")
TOO_MANY_REQUESTS = "Too Many Requests"  # the AI/ML API's 429 message (a fault's and the rate limit's)
# Stability's error names by status (its docs name 400, 401, 403, 404, 413, 422, 429 and 500).
_STABILITY_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    413: "payload_too_large",
    422: "invalid_request",
    429: "rate_limit_exceeded",
    500: "internal_error",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_stability(path: str) -> bool:
    return path.startswith(STABILITY_PREFIXES)


def request_id_header(request_id: str | None = None) -> dict[str, str]:
    """Stability's ``x-request-id`` header: ``request_id``, or a fresh id for each answer."""
    return {"x-request-id": request_id or uuid.uuid4().hex}


def stability_json(body: object, status: int = 200) -> web.Response:
    """A Stability JSON answer (not an error) with its ``x-request-id``."""
    return web.json_response(body, status=status, headers=request_id_header())


def stability_error(
    status: int,
    errors: Sequence[str],
    *,
    name: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """Return Stability's error envelope: a request id, an error name and the messages."""
    request_id = uuid.uuid4().hex
    body = {"id": request_id, "name": name or _STABILITY_NAMES.get(status, "error"), "errors": list(errors)}
    headers = {**(headers or {}), **request_id_header(request_id)}
    return web.json_response(body, status=status, headers=headers)


def error_response(
    request: web.Request, status: int, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Return the envelope of the API the path belongs to (never containing request headers)."""
    if is_stability(request.path):
        return stability_error(status, [message], headers=headers)
    body = {
        "message": message,
        "path": request.path,
        "requestId": str(uuid.uuid4()),
        "statusCode": status,
        "timestamp": now_iso(),
    }
    return web.json_response(body, status=status, headers=headers)
