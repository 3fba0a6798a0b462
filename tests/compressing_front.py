"""A compressing front on loopback: what a CDN or proxy does to an answer when the client accepts gzip.

It passes each request to ``upstream`` (the emulator) and gzips the whole answer whenever the
request's ``Accept-Encoding`` allows gzip (or always, with ``force``), with ``Content-Length`` the
compressed size, as such a front does.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from dataclasses import dataclass, field

# Hop-by-hop, or recomputed here: never copied from one side to the other.
_DROPPED = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


@dataclass
class Passed:
    path: str
    accept_encoding: str | None
    compressed: bool


@dataclass
class CompressingFront:
    upstream: str
    force: bool = False
    seen: list[Passed] = field(default_factory=list)

    def __enter__(self) -> CompressingFront:
        from aiohttp import web

        self._loop = asyncio.new_event_loop()
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._pass)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _pass(self, request):  # type: ignore[no-untyped-def]
        import aiohttp
        from aiohttp import web

        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in _DROPPED | {"accept-encoding"}
        }
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                self.upstream + request.path_qs,
                headers={**headers, "Accept-Encoding": "identity"},
                data=await request.read(),
            ) as answer,
        ):
            body = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _DROPPED}
        accepted = request.headers.get("Accept-Encoding")
        compress = self.force or "gzip" in (accepted or "")
        if compress:
            body = gzip.compress(body)
            out["Content-Encoding"] = "gzip"
        self.seen.append(Passed(request.path, accepted, compress))
        return web.Response(status=answer.status, headers=out, body=body)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
