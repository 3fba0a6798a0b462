"""The key's rate limit: the emulator refuses a key's requests as the real services do (off by default).

Stability AI documents, for every audio POST: "You have exceeded the rate limit of 150 requests within
a 10 second period, and have been timed out for 60 seconds", with no ``Retry-After`` header; the
AI/ML API limits per plan. Settings, with the same names everywhere (keyword arguments of
``EmulatorServer.set_rate_limit(...)`` and fields of :class:`RateLimitConfig`, keys of
``POST /_emulator/config``, CLI flags with dashes):

* ``limit_requests``: requests a key may make within a window; ``None`` (default): no limit.
* ``limit_window_seconds``: the window's length (default 10, > 0).
* ``limit_lockout_seconds``: how long a key is refused after it went over the limit (default 60;
  ``0``: no lockout, only the requests over the limit are refused).
* ``limit_retry_after``: send ``Retry-After`` with the limit's 429 (default ``false``, as Stability
  documents): the whole seconds, rounded up, until a request of the key would pass again.
* ``limit_lockout_extends``: a request during the lockout starts the lockout again from that request
  (default ``false``: the lockout is a fixed ``limit_lockout_seconds`` from the request that went over
  the limit, as "timed out for 60 seconds" reads; the contract's "a retry sooner only extends the wait"
  is this option).

So ``limit_requests=150`` alone is Stability's documented limit.

What counts: per API key (the Bearer token of a request the emulator accepts; a request without a
valid key gets its 401 and counts for nothing), every request on the API routes: the AI/ML API's
``/v2/generate/audio`` (submits and polls) and Stability's routes (submits, synchronous calls, result
fetches, the balance). Not the audio downloads of ``/files/...`` (the AI/ML API's CDN-like URLs,
which take no key), nor ``/_emulator/...``. The limit sits in front of the API, as a gateway's would:
it is checked before faults are drawn (a refused request draws none) and before the body is read.

The window slides: a request passes when fewer than ``limit_requests`` of the key's passed requests
lie within the last ``limit_window_seconds`` ("150 requests within a 10 second period" is any
period, not one aligned on a clock). The request that would be one too many is answered 429 and
starts the lockout: every request of that key until it ends is answered 429 too. A 429 creates no
generation and costs nothing. After the lockout the window starts empty. With
``limit_lockout_seconds=0`` a request over the limit is refused and not counted, and the window
keeps sliding.

The 429 carries the service's envelope: Stability's ``{"id", "name": "rate_limit_exceeded",
"errors": [<its documented message, with the settings' figures>]}``, the AI/ML API's
``{"message": "Too Many Requests", ...}`` (the same as the ``429`` fault's).

Changing the settings starts every key's window afresh and ends its lockout; a ledger reset does
that too and zeroes the counts, but keeps the settings. ``EmulatorServer.clear_rate_limit()`` or
``"clear_rate_limit": true`` lifts the limit; so does clearing the faults (``clear_faults()``,
``"clear_faults": true``), so a test's emulator that was told to never say no does not.

Ledger (``ledger()["rate_limit"]``): ``requests_limited`` (429s the limit answered),
``lockouts``, ``settings``, and ``keys``: per key, in the order first seen, its ``index`` (never the
key itself), ``requests`` (seen while a limit was set), ``requests_limited``, ``lockouts`` and
``locked_out`` (now). Each request's status is in ``requests`` as for any other; a 429 of the limit
has ``fault: null``.

The clock is ``time.monotonic`` (``KeyLimiter.clock``, which a test may replace to drive the time).
Like the rest of the state, the limiter is used only from the app's loop; per request it costs a
dict lookup and a few deque operations on the key's timestamps.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypedDict, TypeGuard

from .envelope import TOO_MANY_REQUESTS, error_response, is_stability

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp import web


def _parse_limit(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be an integer >= 1, or null for no limit")
    return value


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_window(value: object) -> float:
    if not _finite(value) or value <= 0:
        raise ValueError("must be a finite number > 0")
    return float(value)


def _parse_lockout(value: object) -> float:
    if not _finite(value) or value < 0:
        raise ValueError("must be a finite number >= 0")
    return float(value)


def _parse_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


_PARSERS: dict[str, Callable[[object], Any]] = {
    "limit_requests": _parse_limit,
    "limit_window_seconds": _parse_window,
    "limit_lockout_seconds": _parse_lockout,
    "limit_retry_after": _parse_bool,
    "limit_lockout_extends": _parse_bool,
}
RATE_LIMIT_NAMES = frozenset(_PARSERS)


@dataclass(frozen=True, kw_only=True)
class RateLimitConfig:
    """The key's rate limit (none by default); see the module docstring.

    Values are validated on construction (and by ``dataclasses.replace``): a bad value raises
    ``ValueError`` naming the setting.
    """

    limit_requests: int | None = None
    limit_window_seconds: float = 10.0
    limit_lockout_seconds: float = 60.0
    limit_retry_after: bool = False
    limit_lockout_extends: bool = False

    def __post_init__(self) -> None:
        for item in fields(self):
            try:
                value = _PARSERS[item.name](getattr(self, item.name))
            except ValueError as exc:
                raise ValueError(f"{item.name}: {exc}") from None
            object.__setattr__(self, item.name, value)

    def stability_message(self) -> str:
        """Stability's documented message, with these settings' figures."""
        message = (
            f"You have exceeded the rate limit of {self.limit_requests} requests within a "
            f"{self.limit_window_seconds:g} second period"
        )
        if self.limit_lockout_seconds:
            message += f", and have been timed out for {self.limit_lockout_seconds:g} seconds"
        return message + "."

    def to_json(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


class RateLimitSettings(TypedDict, total=False):
    """Keyword arguments of ``EmulatorServer.set_rate_limit`` (any subset)."""

    limit_requests: int | None
    limit_window_seconds: float
    limit_lockout_seconds: float
    limit_retry_after: bool
    limit_lockout_extends: bool


class _Key:
    """One key's window (monotonic times of its passed requests), lockout and counts."""

    __slots__ = ("index", "limited", "locked_until", "lockouts", "requests", "times")

    def __init__(self, index: int) -> None:
        self.index = index
        self.times: deque[float] = deque()
        self.locked_until = -math.inf
        self.requests = 0
        self.limited = 0
        self.lockouts = 0


class KeyLimiter:
    """Every key's sliding window and lockout; used only from the app's loop.

    :param clock: monotonic seconds (``time.monotonic``); replaceable, so a test can drive the time.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._keys: dict[str, _Key] = {}

    def admit(self, key: str, config: RateLimitConfig) -> float | None:
        """Count one request of ``key``: None if it passes, else the seconds until one would pass."""
        limit = config.limit_requests
        assert limit is not None  # only called while a limit is set
        now = self.clock()
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = _Key(len(self._keys))
        entry.requests += 1
        if now < entry.locked_until:
            entry.limited += 1
            if config.limit_lockout_extends:
                entry.locked_until = now + config.limit_lockout_seconds
            return entry.locked_until - now
        times, window = entry.times, config.limit_window_seconds
        while times and times[0] <= now - window:
            times.popleft()
        if len(times) < limit:
            times.append(now)
            return None
        entry.limited += 1
        if not config.limit_lockout_seconds:
            return times[0] + window - now
        entry.lockouts += 1
        entry.locked_until = now + config.limit_lockout_seconds
        times.clear()  # after the lockout the window starts empty
        return config.limit_lockout_seconds

    def restart(self) -> None:
        """Start every window afresh and end every lockout (new settings); keep the counts."""
        for entry in self._keys.values():
            entry.times.clear()
            entry.locked_until = -math.inf

    def reset(self) -> None:
        """Forget every key: windows, lockouts and counts."""
        self._keys.clear()

    def ledger(self, config: RateLimitConfig) -> dict[str, Any]:
        """The ``rate_limit`` part of the ledger (the module docstring lists the keys)."""
        now = self.clock()
        keys = [
            {
                "index": entry.index,
                "requests": entry.requests,
                "requests_limited": entry.limited,
                "lockouts": entry.lockouts,
                "locked_out": now < entry.locked_until,
            }
            for entry in self._keys.values()
        ]
        return {
            "requests_limited": sum(k["requests_limited"] for k in keys),
            "lockouts": sum(k["lockouts"] for k in keys),
            "settings": config.to_json(),
            "keys": keys,
        }


def refusal(request: web.Request, config: RateLimitConfig, wait: float) -> web.Response:
    """The 429 of the limit, in the envelope of the service the path belongs to."""
    headers = {"Retry-After": str(math.ceil(wait))} if config.limit_retry_after else None
    message = config.stability_message() if is_stability(request.path) else TOO_MANY_REQUESTS
    return error_response(request, 429, message, headers=headers)
