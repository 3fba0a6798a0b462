"""One ``aiohttp.ClientSession`` per event loop, shared by every trigger of a triggerer.

A session per loop gives connection pooling and keep-alive to the API across thousands of
deferred generations; reference counting closes it cleanly when the last user leaves, and a new
loop (tests, a restarted triggerer) simply gets its own.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
import weakref
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import aiohttp


@dataclass
class _LoopSession:
    session: aiohttp.ClientSession
    users: int = 0


_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSession] = weakref.WeakKeyDictionary()


_aiohttp_imported = False


async def import_aiohttp() -> None:
    """Import ``aiohttp`` in a worker thread, once per process.

    The triggerer creates triggers on its event loop: the ~220 ms (cold, far more) of importing
    aiohttp there would stall every other trigger and trip the "async thread was blocked" watchdog.
    A thread that meets an import in progress waits on the import lock; the loop never does.
    """
    global _aiohttp_imported
    if not _aiohttp_imported:
        await asyncio.to_thread(importlib.import_module, "aiohttp")
        _aiohttp_imported = True


async def proxy_for(url: str) -> str | None:
    """The proxy the worker's ``requests`` uses for ``url``, from the environment, or ``None``.

    ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` are read by requests' own
    functions, so a trigger goes the way the worker that submitted went. aiohttp's ``trust_env``
    reads them by other rules (no ``ALL_PROXY``, no CIDR block in ``NO_PROXY``) and reads
    ``~/.netrc`` too: a login there for the API's host (or a ``default`` one) makes every poll
    raise, the key being in the ``Authorization`` header already. In a thread: the first call
    imports requests, and outside Linux the lookup may read the system's proxy settings.

    The answer is reused for :data:`PROXY_REUSE_SECONDS` per scheme, host and port while those
    variables stay as they were: requests' lookup costs about 130 us of CPU, and the thread hop
    more, on every poll of every trigger.
    """
    parts = urlsplit(url)
    key = (parts.scheme, parts.hostname, parts.port, tuple(map(os.environ.get, _PROXY_VARIABLES)))
    now = time.monotonic()
    known = _PROXIES.get(key)
    if known is not None and now - known[0] < PROXY_REUSE_SECONDS:
        return known[1]
    proxy = await asyncio.to_thread(_environ_proxy, url)
    if len(_PROXIES) >= 256:  # hosts times settings seen: a handful; never unbounded
        _PROXIES.clear()
    _PROXIES[key] = (now, proxy)
    return proxy


# What requests' choice of a proxy for an http(s) URL reads from the environment (REQUEST_METHOD:
# under CGI, HTTP_PROXY is ignored).
_PROXY_VARIABLES = (
    "https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY",
    "no_proxy", "NO_PROXY", "REQUEST_METHOD",
)  # fmt: skip
# Outside Linux the system's proxy settings count too: they reach triggers within this long.
PROXY_REUSE_SECONDS = 30.0
_PROXIES: dict[tuple[object, ...], tuple[float, str | None]] = {}


def _environ_proxy(url: str) -> str | None:
    from requests.utils import get_environ_proxies, prepend_scheme_if_needed, select_proxy

    proxy = select_proxy(url, get_environ_proxies(url))
    return None if proxy is None else prepend_scheme_if_needed(proxy, "http")


def _new_session() -> aiohttp.ClientSession:
    import aiohttp  # imported already, off the loop, by import_aiohttp()

    connector = aiohttp.TCPConnector(
        limit=0,  # no pool-wide cap: concurrency is bounded by the number of triggers
        limit_per_host=0,
        ttl_dns_cache=300,  # resolution runs in a thread, and rarely
        keepalive_timeout=30,
    )
    # Per-request timeouts and proxies are set by the caller; cookies are meaningless for this API.
    # No trust_env: see proxy_for.
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


@asynccontextmanager
async def shared_client_session() -> AsyncIterator[aiohttp.ClientSession]:
    """Yield this loop's shared session, creating it on first use and closing it after the last."""
    loop = asyncio.get_running_loop()
    entry = _SESSIONS.get(loop)
    if entry is None or entry.session.closed:
        await import_aiohttp()
        # Another trigger may have made the session while this one waited for the import.
        entry = _SESSIONS.get(loop)
        if entry is None or entry.session.closed:
            entry = _SESSIONS[loop] = _LoopSession(session=_new_session())
    entry.users += 1
    try:
        yield entry.session
    finally:
        entry.users -= 1
        if entry.users == 0 and _SESSIONS.get(loop) is entry:
            del _SESSIONS[loop]
            await entry.session.close()
