"""Fault injection: make the emulator fail the way the real API and networks do, on purpose.

Everything is off by default. The settings have the same names everywhere: keyword arguments of
``EmulatorServer.set_faults(...)`` and fields of :class:`FaultConfig`, keys of
``POST /_emulator/config`` (JSON), and CLI flags with dashes (``rate_5xx`` is ``--rate-5xx``).

* ``rate_429``, ``rate_5xx``, ``rate_drop``, ``rate_slow``, ``rate_malformed``,
  ``rate_generation_error``, ``rate_download_404``, ``rate_download_truncated``,
  ``rate_post_lost_response``: probabilities 0..1 (default 0).
* ``retry_after``: integer seconds sent in ``Retry-After`` with a 429 (default 1, 0 allowed);
  ``null`` sends none, as Stability AI documents its 429.
* ``slow_seconds``: delay of a ``slow`` fault (default 30, longer than a client's timeout).
* ``seed``: integer seed of the ``random.Random`` the draws use (default None: unseeded).
  Giving ``seed`` (even the same value) re-seeds; so does a ledger reset.
* ``fault_methods``: the API methods that may be faulted (``/v2`` and Stability's routes), a
  subset of GET and POST (default both; a comma-separated string is accepted too). Download
  faults ignore it.

Setting some names keeps the others. ``EmulatorServer.clear_faults()``, or
``"clear_faults": true`` in the JSON (applied before the body's other keys), restores all
defaults; ``GET /_emulator/config`` reports the current values. A ledger reset keeps the
settings. Applied faults are recorded in the ledger: each request's ``fault`` (a kind of
:data:`FAULT_KINDS`, or null) and a ``faults`` count per kind.

Per request at most one fault applies: the route's candidate faults (listed below, in draw order)
are drawn independently, one ``random()`` each for those with a rate above 0, and the first hit
wins; a 5xx hit draws its status uniformly from 500, 502, 503 and 504. Faults whose rate is 0
draw nothing, so they do not shift the sequence of the others. Faults are drawn before
authentication and validation, as by a gateway in front of the API.

What each fault does. On ``POST /v2/generate/audio`` what matters is whether a generation (the
expensive, billed thing) exists afterwards, so a client can be tested to never pay twice:

* ``drop`` (close the connection, no response), ``429``, ``500``, ``502``, ``503``: answered
  BEFORE the body is read: nothing is created.
* ``slow``: reads the body, waits ``slow_seconds``, then handles the request normally, so the
  generation is created although the client has probably timed out: a POST timeout is
  ambiguous, as with the real API. A ledger reset or the server's shutdown ends the wait by
  dropping the connection, and then nothing is created.
* ``504`` ("Generation timeout", like the real gateway timeout that may hide a created
  generation), ``malformed`` (200 whose JSON body is cut in half) and ``post_lost_response``
  (connection dropped): the request is handled FIRST, and the fault replaces the answer only if
 the generation was created (2xx); an invalid request gets its normal 400/401 and no fault.
  So a 504 on POST always means one generation was created; a 429/500/502/503 never does.
* ``generation_error``: created normally (200); the generation later ends in ``status: "error"``.

On ``GET /v2/generate/audio`` (polls): ``drop``, ``429``, ``5xx`` (any of the four) answer
without looking at the generation (the poll is not counted); ``slow`` delays a normal answer;
``malformed`` answers the normal poll (counted) with its 200 JSON body cut in half.

On ``GET /files/{name}`` (downloads): ``drop``, ``download_404`` (the API's "File not found"
envelope, as for an expired URL) and ``slow`` as above; ``download_truncated`` sends the full
``Content-Length`` but only the first half of the bytes, then closes the connection (applied
only when the file exists). ``HEAD`` gets the same faults except truncation.

Stability's routes (``stability_submit``, ``stability_generate``, ``stability_result``,
``stability_balance``) draw the same way; their candidates and what each fault means there are
in :mod:`.stability`'s docstring. ``fault_methods`` limits them too.

Never faulted: ``/_emulator/*``, including the ``/_emulator/blob`` benchmark download, and other
methods or paths.

Candidates in draw order: POST ``drop, 429, 5xx, slow, malformed, post_lost_response,
generation_error``; GET poll ``drop, 429, 5xx, slow, malformed``; GET file ``drop,
download_404, download_truncated, slow``; HEAD file ``drop, download_404, slow``.
"""

from __future__ import annotations

import asyncio
import math
import random
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypedDict

from aiohttp import web

from .envelope import TOO_MANY_REQUESTS, error_response

BODY_CHUNK = 256 * 1024  # bounds what the transport may copy per write

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection

RATE_NAMES = (
    "rate_429",
    "rate_5xx",
    "rate_drop",
    "rate_slow",
    "rate_malformed",
    "rate_generation_error",
    "rate_download_404",
    "rate_download_truncated",
    "rate_post_lost_response",
)
# The kinds recorded in the ledger (a request's "fault", and the keys of the "faults" summary).
FAULT_KINDS = (
    "429",
    "500",
    "502",
    "503",
    "504",
    "drop",
    "slow",
    "malformed",
    "post_lost_response",
    "generation_error",
    "download_404",
    "download_truncated",
)
ROUTE_GENERATE = "generate"
ROUTE_FILES = "files"
# Stability's routes: what each fault means there is in stability.py's docstring.
ROUTE_STABILITY_SUBMIT = "stability_submit"
ROUTE_STABILITY_GENERATE = "stability_generate"
ROUTE_STABILITY_RESULT = "stability_result"
ROUTE_STABILITY_BALANCE = "stability_balance"
_METHODS = frozenset({"GET", "POST"})
_5XX = ("500", "502", "503", "504")
_CANDIDATES: dict[tuple[str, str], tuple[str, ...]] = {
    (ROUTE_GENERATE, "POST"): (
        "drop",
        "429",
        "5xx",
        "slow",
        "malformed",
        "post_lost_response",
        "generation_error",
    ),
    (ROUTE_GENERATE, "GET"): ("drop", "429", "5xx", "slow", "malformed"),
    (ROUTE_FILES, "GET"): ("drop", "download_404", "download_truncated", "slow"),
    (ROUTE_FILES, "HEAD"): ("drop", "download_404", "slow"),
    (ROUTE_STABILITY_SUBMIT, "POST"): ("drop", "429", "5xx", "slow", "malformed", "post_lost_response"),
    (ROUTE_STABILITY_GENERATE, "POST"): (
        "drop",
        "429",
        "5xx",
        "slow",
        "post_lost_response",
        "download_truncated",
    ),
    (ROUTE_STABILITY_RESULT, "GET"): ("drop", "429", "5xx", "slow", "download_truncated"),
    (ROUTE_STABILITY_BALANCE, "GET"): ("drop", "429", "5xx", "slow"),
}
# On POST these need the request handled first (see the module docstring; download_truncated:
# Stability's synchronous answer); elsewhere only the handler-side ones do.
_AFTER_POST = frozenset({"504", "malformed", "post_lost_response", "generation_error", "download_truncated"})
_AFTER = frozenset({"malformed", "download_truncated"})
_GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_ENVELOPE_MESSAGES = {
    "429": TOO_MANY_REQUESTS,
    "500": "Internal server error",
    "503": "Service Unavailable",
    "504": "Generation timeout",
    "download_404": "File not found",
}

# The fault of the request being handled, for the handlers that apply one themselves.
_CURRENT: ContextVar[str | None] = ContextVar("stableaudio_emulator_fault", default=None)


def current() -> str | None:
    """Return the fault the running handler must apply itself (generation_error, download_truncated)."""
    return _CURRENT.get()


def _parse_rate(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError("must be a number from 0 to 1")
    return float(value)


def _parse_retry_after(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be an integer >= 0, or null")
    return value


def _parse_seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError("must be a finite number >= 0")
    return float(value)


def _parse_seed(value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError("must be an integer or null")
    return value


def _parse_methods(value: object) -> frozenset[str]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(m, str) for m in value):
        raise ValueError("must be a list of methods")
    methods = frozenset(m.strip().upper() for m in value if m.strip())
    if not methods <= _METHODS:
        raise ValueError("may contain only GET and POST")
    return methods


_PARSERS: dict[str, Callable[[object], Any]] = {
    **dict.fromkeys(RATE_NAMES, _parse_rate),
    "retry_after": _parse_retry_after,
    "slow_seconds": _parse_seconds,
    "seed": _parse_seed,
    "fault_methods": _parse_methods,
}
SETTING_NAMES = frozenset(_PARSERS)


@dataclass(frozen=True, kw_only=True)
class FaultConfig:
    """Fault injection settings (all off by default); see the module docstring.

    Values are validated and normalised on construction (and by ``dataclasses.replace``):
    a bad value raises ``ValueError`` naming the setting.
    """

    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_drop: float = 0.0
    rate_slow: float = 0.0
    rate_malformed: float = 0.0
    rate_generation_error: float = 0.0
    rate_download_404: float = 0.0
    rate_download_truncated: float = 0.0
    rate_post_lost_response: float = 0.0
    retry_after: int | None = 1
    slow_seconds: float = 30.0
    seed: int | None = None
    fault_methods: frozenset[str] = field(default=_METHODS)

    def __post_init__(self) -> None:
        for item in fields(self):
            try:
                value = _PARSERS[item.name](getattr(self, item.name))
            except ValueError as exc:
                raise ValueError(f"{item.name}: {exc}") from None
            object.__setattr__(self, item.name, value)

    def to_json(self) -> dict[str, Any]:
        settings = {item.name: getattr(self, item.name) for item in fields(self)}
        settings["fault_methods"] = sorted(self.fault_methods)
        return settings


class FaultSettings(TypedDict, total=False):
    """Keyword arguments of ``EmulatorServer.set_faults`` (any subset)."""

    rate_429: float
    rate_5xx: float
    rate_drop: float
    rate_slow: float
    rate_malformed: float
    rate_generation_error: float
    rate_download_404: float
    rate_download_truncated: float
    rate_post_lost_response: float
    retry_after: int | None
    slow_seconds: float
    seed: int | None
    fault_methods: Collection[str] | str


class FaultInjector:
    """Draws faults and holds the waits of ``slow`` ones; used only from the app's loop.

    :param seed: seed of the draws; None: unseeded.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._wake = asyncio.Event()

    def reseed(self, seed: int | None) -> None:
        self._rng.seed(seed)

    def pick(self, config: FaultConfig, route: str, method: str) -> str | None:
        """Draw the fault (a kind of :data:`FAULT_KINDS`) for one request, or None."""
        if route != ROUTE_FILES and method not in config.fault_methods:
            return None
        for name in _CANDIDATES.get((route, method), ()):
            rate: float = getattr(config, f"rate_{name}")
            if rate > 0 and self._rng.random() < rate:
                return self._rng.choice(_5XX) if name == "5xx" else name
        return None

    async def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; return False if :meth:`wake` cut the wait short."""
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            return True
        return False

    def wake(self) -> None:
        """End every pending wait (on reset and shutdown), so no slow request outlives them."""
        self._wake.set()
        self._wake = asyncio.Event()


class DroppedResponse(web.Response):
    """Returned after the connection was closed: aiohttp's write then fails quietly."""


def close_connection(request: web.Request) -> None:
    """Close the connection after what was already written (aiohttp's next write fails quietly)."""
    if request.transport is not None:
        request.transport.close()


async def write_body(
    request: web.Request, response: web.StreamResponse, data: bytes, counted: Callable[[int], None]
) -> bool:
    """Write ``data`` in chunks (half of it, then close, under a ``download_truncated`` fault);
    ``counted`` hears of each chunk sent. True when the body went out whole."""
    truncated = current() == "download_truncated"
    end = len(data) // 2 if truncated else len(data)
    view = memoryview(data)  # slices share the cached bytes instead of copying them
    try:
        for offset in range(0, end, BODY_CHUNK):
            chunk = view[offset : min(offset + BODY_CHUNK, end)]
            await response.write(chunk)
            counted(len(chunk))
        if truncated:
            close_connection(request)  # the client sees fewer bytes than Content-Length
            return False
        await response.write_eof()
    except ConnectionError:
        return False  # the client went away; what was counted says how far it got
    return True


def drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer (aiohttp logs no traceback for that)."""
    close_connection(request)
    return DroppedResponse()


def _fault_response(request: web.Request, kind: str, config: FaultConfig) -> web.StreamResponse:
    if kind == "502":  # a gateway's own page, not the API's envelope
        return web.Response(status=502, body=_GATEWAY_PAGE, content_type="text/html")
    status = 404 if kind == "download_404" else int(kind)
    sends_retry_after = kind == "429" and config.retry_after is not None
    headers = {"Retry-After": str(config.retry_after)} if sends_retry_after else None
    return error_response(request, status, _ENVELOPE_MESSAGES[kind], headers=headers)


def _malformed(response: web.StreamResponse) -> web.Response:
    # A JSON object cut before its closing brace is never valid JSON.
    body = response.body if isinstance(response, web.Response) else None
    data = body if isinstance(body, bytes) and len(body) > 1 else b'{"status": '
    return web.Response(body=data[: len(data) // 2], status=response.status, content_type="application/json")


async def serve(
    request: web.Request,
    handle: Callable[[], Awaitable[web.StreamResponse]],
    kind: str | None,
    config: FaultConfig,
    injector: FaultInjector,
) -> tuple[web.StreamResponse, str | None]:
    """Answer with fault ``kind`` applied around ``handle``; return (response, fault applied)."""
    if kind is None:
        return await handle(), None
    if kind == "drop":
        return drop(request), kind
    if kind == "slow":
        if request.method == "POST":
            try:  # read now: aiohttp fails a later read if the client has timed out meanwhile
                await request.read()
            except ConnectionError:
                return drop(request), kind
        if await injector.sleep(config.slow_seconds):
            return await handle(), kind
        return drop(request), kind
    after = _AFTER_POST if request.method == "POST" else _AFTER
    if kind not in after:
        return _fault_response(request, kind, config), kind
    token = _CURRENT.set(kind)
    try:
        response = await handle()
    finally:
        _CURRENT.reset(token)
    if not 200 <= response.status < 300:  # nothing was created or served: the fault does not apply
        return response, None
    if kind == "504":
        return _fault_response(request, kind, config), kind
    if kind == "malformed":
        return _malformed(response), kind
    if kind == "post_lost_response":
        return drop(request), kind
    return response, kind  # generation_error, download_truncated: applied by the handler
