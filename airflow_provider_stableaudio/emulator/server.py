"""The emulator's aiohttp application (routes, fault middleware) and a threaded runner."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from . import admin, api, faults, ratelimit, stability
from .envelope import error_response
from .faults import FaultConfig
from .ratelimit import RateLimitConfig
from .stability_form import MAX_BODY_BYTES
from .state import STATE_KEY, EmulatorConfig, EmulatorState
from .variants import VariantConfig

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from typing_extensions import Unpack

    from .faults import FaultSettings
    from .ratelimit import RateLimitSettings
    from .variants import VariantSettings

__all__ = ["STATE_KEY", "EmulatorConfig", "EmulatorServer", "EmulatorState", "build_app", "make_runner"]

_T = TypeVar("_T")


async def _enveloped(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        if exc.status in (404, 405):  # like the real (NestJS) API: unknown route = 404
            return error_response(request, 404, f"Cannot {request.method} {request.path}")
        return error_response(request, exc.status, exc.reason)
    except ConnectionError:  # the client left before its body was read: nothing to answer
        return faults.drop(request)
    return response


def _route(path: str) -> str | None:
    if path == api.GENERATION_PATH:
        return faults.ROUTE_GENERATE
    if path.startswith(api.FILES_PREFIX):
        return faults.ROUTE_FILES
    return stability.fault_route(path)


def _rate_limited(request: web.Request, state: EmulatorState, route: str | None) -> web.Response | None:
    """The rate limit's 429 for this request, or None: it passes, or no limit applies to it."""
    config = state.config.rate_limit
    if config.limit_requests is None or route is None or route == faults.ROUTE_FILES:
        return None
    key = api.accepted_key(request, state.config.api_keys)
    if key is None:
        return None  # the handler answers 401; a refused key counts for nothing
    wait = state.limiter.admit(key, config)
    return None if wait is None else ratelimit.refusal(request, config, wait)


@web.middleware
async def _faults_and_record(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """Apply the key's rate limit and the drawn fault, turn routing errors into the API's envelope,
    record the request.

    Admin routes are neither limited, faulted nor recorded, except the benchmark blob (recorded only).
    """
    path = request.path
    if path.startswith(admin.ADMIN_PREFIX) and path != admin.BLOB_PATH:
        return await _enveloped(request, handler)
    state = request.app[STATE_KEY]
    route = _route(path)
    refused = _rate_limited(request, state, route)
    if refused is not None:  # in front of the API, as a gateway's: no fault is drawn
        state.record(request.method, path, refused.status, None)
        return refused
    epoch, config = state.epoch, state.config.faults
    kind = state.faults.pick(config, route, request.method) if route else None
    status: int | None = 500
    applied: str | None = None
    try:
        response, applied = await faults.serve(
            request, lambda: _enveloped(request, handler), kind, config, state.faults
        )
        status = None if isinstance(response, faults.DroppedResponse) else response.status
        return response
    finally:
        if state.epoch == epoch:  # a request spanning a reset stays out of the new ledger
            state.record(request.method, path, status, applied)


async def _wake_slow_requests(app: web.Application) -> None:
    app[STATE_KEY].faults.wake()  # else shutdown would wait for them


def build_app(config: EmulatorConfig | None = None) -> web.Application:
    """Return the emulator's aiohttp application (state under ``app[STATE_KEY]``)."""
    # Stable Audio 3 requests run to 100 MB (the AI/ML routes keep aiohttp's 1 MiB: api.MAX_JSON_BYTES).
    app = web.Application(middlewares=[_faults_and_record], client_max_size=MAX_BODY_BYTES)
    app[STATE_KEY] = EmulatorState(config=config or EmulatorConfig())
    app.on_shutdown.append(_wake_slow_requests)
    app.router.add_post(api.GENERATION_PATH, api.create)
    app.router.add_get(api.GENERATION_PATH, api.poll)
    app.router.add_get(api.FILES_PREFIX + "{name}", api.download)
    stability.add_routes(app)
    app.router.add_get(admin.ADMIN_PREFIX + "ledger", admin.get_ledger)
    app.router.add_post(admin.ADMIN_PREFIX + "reset", admin.reset)
    app.router.add_get(admin.ADMIN_PREFIX + "config", admin.config)
    app.router.add_post(admin.ADMIN_PREFIX + "config", admin.config)
    app.router.add_get(admin.BLOB_PATH, admin.blob)
    return app


def make_runner(app: web.Application, *, shutdown_timeout: float = 2.0) -> web.AppRunner:
    """Return an AppRunner without access logging (it must stay cheap per request)."""
    return web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout)


class EmulatorServer:
    """Run the emulator in a background thread with its own event loop.

    :param config: the emulator's configuration.
    :param host: address to listen on.
    :param port: port to listen on; 0 picks a free one.
    :param backlog: listen backlog.
    :param startup_timeout: seconds :meth:`start` waits for the socket.
    """

    def __init__(
        self,
        *,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        backlog: int = 4096,
        startup_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.app = build_app(config)
        self._requested_port = port
        self._backlog = backlog
        self._startup_timeout = startup_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._port: int | None = None

    @property
    def state(self) -> EmulatorState:
        return self.app[STATE_KEY]

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator is not running")
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Start listening; block until the socket is bound, raise if it cannot be."""
        if self._thread is not None or self._ready.is_set():
            raise RuntimeError("an EmulatorServer can be started only once")
        self._thread = threading.Thread(target=self._run, name="stableaudio-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._startup_timeout):
            self.stop()
            raise RuntimeError("the emulator did not start in time")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            where = f"{self.host}:{self._requested_port}"
            raise RuntimeError(f"the emulator could not listen on {where}") from self._error

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = make_runner(self.app)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(
                runner, self.host, self._requested_port, reuse_address=True, backlog=self._backlog
            )
            loop.run_until_complete(site.start())
            self._port = int(runner.addresses[0][1])
        except BaseException as exc:  # reported to start()
            self._error = exc
        self._ready.set()
        try:
            if self._error is None:
                loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def stop(self) -> None:
        """Stop the loop and join the thread; idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None

    def _call(self, func: Callable[[], _T]) -> _T:
        # State belongs to the loop thread: run there while it is alive.
        loop = self._loop
        if self._thread is None or loop is None or loop.is_closed():
            return func()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(func())
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    def ledger(self) -> dict[str, Any]:
        """Return a snapshot of the ledger (the body of ``GET /_emulator/ledger``)."""
        return self._call(self.state.ledger)

    def reset(self) -> None:
        """Forget generations, requests, fault counts and the rate limit's windows, lockouts and counts;
        end slow waits; re-seed the fault draws.

        Settings are kept: :meth:`clear_faults` turns the faults off, :meth:`clear_rate_limit` the limit.
        """
        self._call(self.state.reset)

    def set_generation_seconds(self, seconds: float, generation_seconds_max: float | None = None) -> None:
        """Change how long generations take (applies to pending ones too).

        :param seconds: every generation's time; with ``generation_seconds_max``, the shortest.
        :param generation_seconds_max: each generation takes its own time, drawn uniformly from
            ``seconds`` to this, the same on every run (see ``state.generation_draw``); ``None``
            (default) turns that off.

        Raises ``ValueError`` for a bad value, or a maximum below ``seconds``.
        """

        value, upper = admin.parse_seconds(seconds), admin.parse_seconds_max(generation_seconds_max)

        def apply() -> None:  # replace() checks the pair; the error reaches the caller
            self.state.config = replace(
                self.state.config, generation_seconds=value, generation_seconds_max=upper
            )

        self._call(apply)

    def set_faults(self, **settings: Unpack[FaultSettings]) -> None:
        """Change the given fault settings, keep the others (see :mod:`.faults` for the names).

        Raises ``ValueError`` for a bad value and ``TypeError`` for an unknown name; giving
        ``seed`` re-seeds the draws.
        """

        def apply() -> None:
            changes: dict[str, Any] = dict(settings)
            self.state.set_faults(replace(self.state.config.faults, **changes), reseed="seed" in changes)

        self._call(apply)

    def clear_faults(self) -> None:
        """Turn every fault off and restore the default settings (unseeded); lift the rate limit too."""

        def apply() -> None:
            self.state.set_faults(FaultConfig(), reseed=True)
            self.state.configure(replace(self.state.config, rate_limit=RateLimitConfig()))

        self._call(apply)

    @property
    def faults(self) -> FaultConfig:
        """The current fault settings."""
        return self.state.config.faults

    def set_variants(self, **settings: Unpack[VariantSettings]) -> None:
        """Change the given API variants, keep the others (see :mod:`.variants` for the names).

        Raises ``ValueError`` for a bad value and ``TypeError`` for an unknown name.
        """

        def apply() -> None:
            changes: dict[str, Any] = dict(settings)
            config = self.state.config
            self.state.config = replace(config, variants=replace(config.variants, **changes))

        self._call(apply)

    def clear_variants(self) -> None:
        """Answer as the API's current schema does again (every variant at its default)."""

        def apply() -> None:
            self.state.config = replace(self.state.config, variants=VariantConfig())

        self._call(apply)

    @property
    def variants(self) -> VariantConfig:
        """The current API variants."""
        return self.state.config.variants

    def set_rate_limit(self, **settings: Unpack[RateLimitSettings]) -> None:
        """Change the given rate-limit settings, keep the others (see :mod:`.ratelimit` for the names).

        ``set_rate_limit(limit_requests=150)`` is Stability's documented limit. A change starts every
        key's window afresh. Raises ``ValueError`` for a bad value and ``TypeError`` for an unknown name.
        """

        def apply() -> None:
            changes: dict[str, Any] = dict(settings)
            config = self.state.config
            self.state.configure(replace(config, rate_limit=replace(config.rate_limit, **changes)))

        self._call(apply)

    def clear_rate_limit(self) -> None:
        """Lift the rate limit (every setting at its default)."""
        self._call(lambda: self.state.configure(replace(self.state.config, rate_limit=RateLimitConfig())))

    @property
    def rate_limit(self) -> RateLimitConfig:
        """The current rate-limit settings."""
        return self.state.config.rate_limit

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
