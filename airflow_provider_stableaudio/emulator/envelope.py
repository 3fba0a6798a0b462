"""The API's error envelope, shared by the API, admin and fault responses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Mapping


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_response(
    request: web.Request, status: int, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Return the API's error envelope (never containing request headers)."""
    body = {
        "message": message,
        "path": request.path,
        "requestId": str(uuid.uuid4()),
        "statusCode": status,
        "timestamp": now_iso(),
    }
    return web.json_response(body, status=status, headers=headers)
