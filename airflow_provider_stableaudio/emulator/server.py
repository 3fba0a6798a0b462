"""aiohttp application imitating the AI/ML API's Stable Audio endpoint, and a threaded runner."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from .audio import synthesize_wav, wav_size

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

MODEL = "stable-audio"
ERROR_MARKER = "[emulator:error]"
GENERATION_ERROR = "The model failed to generate audio for this prompt"
CREDITS_PER_STEP = 252
GENERATION_PATH = "/v2/generate/audio"
ADMIN_PREFIX = "/_emulator/"
_CHUNK = 256 * 1024  # bounds what the transport may copy per write
_WAV_CACHE_BYTES = 256 * 1024 * 1024
_INT_FIELDS: dict[str, tuple[int, int, int | None]] = {
    "seconds_total": (1, 47, 30),
    "seconds_start": (0, 47, None),
    "steps": (1, 1000, 100),
}
_ALLOWED_FIELDS = frozenset({"model", "prompt", *_INT_FIELDS})
_T = TypeVar("_T")


@dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """Behaviour of the emulator.

    :param generation_seconds: time from creation until a generation is completed.
    :param api_keys: accepted Bearer keys; empty accepts any non-empty key.
    :param public_base_url: base of the audio URLs; default: derived from the request's Host.
    """

    generation_seconds: float = 3.0
    api_keys: frozenset[str] = frozenset()
    public_base_url: str | None = None


@dataclass(kw_only=True)
class _Generation:
    id: str
    file_name: str
    prompt: str
    seconds_total: int
    seconds_start: int | None
    steps: int
    created_at: str
    created: float  # time.monotonic() at creation
    terminal: str | None = None  # latched so a later config change cannot undo completion
    polls: int = 0
    downloads: int = 0
    bytes_served: int = 0


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EmulatorState:
    """Generations, the request ledger and the WAV cache; used only from the app's loop.

    :param config: the initial configuration (replaceable at run time).
    """

    def __init__(self, *, config: EmulatorConfig) -> None:
        self.config = config
        self.generations: dict[str, _Generation] = {}
        self.files: dict[str, _Generation] = {}
        self.requests: list[tuple[str, str, int]] = []
        self._wavs: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._wav_bytes = 0

    def create(
        self, *, prompt: str, seconds_total: int, seconds_start: int | None, steps: int
    ) -> _Generation:
        token = str(uuid.uuid4())
        gen = _Generation(
            id=f"{token}:{MODEL}",
            file_name=f"{token}.wav",
            prompt=prompt,
            seconds_total=seconds_total,
            seconds_start=seconds_start,
            steps=steps,
            created_at=_now_iso(),
            created=time.monotonic(),
        )
        self.generations[gen.id] = self.files[gen.file_name] = gen
        return gen

    def status(self, gen: _Generation) -> str:
        if gen.terminal is not None:
            return gen.terminal
        total = self.config.generation_seconds
        elapsed = time.monotonic() - gen.created
        if elapsed >= total:
            gen.terminal = "error" if ERROR_MARKER in gen.prompt else "completed"
            return gen.terminal
        return "queued" if elapsed < 0.2 * total else "generating"

    def wav(self, gen: _Generation) -> bytes:
        """Return the generation's WAV, synthesising it on first use (LRU-cached by size)."""
        key = (gen.prompt, gen.seconds_total)
        data = self._wavs.get(key)
        if data is None:
            data = self._wavs[key] = synthesize_wav(gen.prompt, gen.seconds_total)
            self._wav_bytes += len(data)
            while self._wav_bytes > _WAV_CACHE_BYTES and len(self._wavs) > 1:
                self._wav_bytes -= len(self._wavs.popitem(last=False)[1])
        else:
            self._wavs.move_to_end(key)
        return data

    def ledger(self) -> dict[str, Any]:
        return {
            "generations": [
                {
                    "id": g.id,
                    "model": MODEL,
                    "prompt": g.prompt,
                    "seconds_total": g.seconds_total,
                    "seconds_start": g.seconds_start,
                    "steps": g.steps,
                    "created_at": g.created_at,
                    "status": self.status(g),
                    "polls": g.polls,
                    "downloads": g.downloads,
                    "bytes_served": g.bytes_served,
                }
                for g in self.generations.values()
            ],
            "requests": [{"method": m, "path": p, "status": s} for m, p, s in self.requests],
        }

    def reset(self) -> None:
        self.generations.clear()
        self.files.clear()
        self.requests.clear()


STATE_KEY = web.AppKey("stableaudio_emulator_state", EmulatorState)


def _error(request: web.Request, status: int, message: str) -> web.Response:
    """Return the API's error envelope (never containing request headers)."""
    body = {
        "message": message,
        "path": request.path,
        "requestId": str(uuid.uuid4()),
        "statusCode": status,
        "timestamp": _now_iso(),
    }
    return web.json_response(body, status=status)


def _authorized(request: web.Request, keys: frozenset[str]) -> bool:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    return scheme.lower() == "bearer" and bool(key) and (not keys or key in keys)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _check_int(name: str, value: object, low: int, high: int) -> tuple[int | None, str | None]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"{name}: Expected number, received {_type_name(value)}"
    if isinstance(value, float) and not value.is_integer():
        return None, f"{name}: Expected integer, received float"
    number = int(value)
    if number < low:
        return None, f"{name}: Number must be greater than or equal to {low}"
    if number > high:
        return None, f"{name}: Number must be less than or equal to {high}"
    return number, None


def validate_create(body: object) -> tuple[dict[str, Any], list[str]]:
    """Validate a create body like the API's zod schema; return (parameters, problems)."""
    if not isinstance(body, dict):
        return {}, [f"Expected object, received {_type_name(body)}"]
    problems: list[str] = []
    unknown = [key for key in body if key not in _ALLOWED_FIELDS]
    if unknown:
        problems.append("Unrecognized key(s) in object: " + ", ".join(f"'{k}'" for k in unknown))
    if "model" not in body:
        problems.append("model: Required")
    elif body["model"] != MODEL:
        problems.append(f'model: Invalid literal value, expected "{MODEL}"')
    prompt = body.get("prompt")
    if "prompt" not in body:
        problems.append("prompt: Required")
    elif not isinstance(prompt, str):
        problems.append(f"prompt: Expected string, received {_type_name(prompt)}")
    elif not prompt.strip():
        problems.append("prompt: String must contain at least 1 character(s)")
    params: dict[str, Any] = {"prompt": prompt}
    for name, (low, high, default) in _INT_FIELDS.items():
        if name not in body:
            params[name] = default
            continue
        params[name], problem = _check_int(name, body[name], low, high)
        if problem:
            problems.append(problem)
    start, total = params["seconds_start"], params["seconds_total"]
    if start is not None and total is not None and start > total:
        problems.append("seconds_start: Number must be less than or equal to seconds_total")
    return params, problems


async def _read_json(request: web.Request) -> tuple[object, str | None]:
    try:
        return json.loads(await request.read()), None
    except ValueError as exc:
        return None, f"Invalid JSON body: {exc}"


async def _create(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if not _authorized(request, state.config.api_keys):
        return _error(request, 401, "Unauthorized")
    body, problem = await _read_json(request)
    if problem:
        return _error(request, 400, problem)
    params, problems = validate_create(body)
    if problems:
        return _error(request, 400, "; ".join(problems))
    gen = state.create(**params)
    return web.json_response(
        {"id": gen.id, "status": "queued", "meta": {"usage": {"credits_used": CREDITS_PER_STEP * gen.steps}}}
    )


async def _poll(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if not _authorized(request, state.config.api_keys):
        return _error(request, 401, "Unauthorized")
    gen_id = request.query.get("generation_id", "")
    if not gen_id:
        return _error(request, 400, "generation_id: Required")
    gen = state.generations.get(gen_id)
    if gen is None:
        return _error(request, 404, "Generation not found")
    gen.polls += 1
    status = state.status(gen)
    body: dict[str, Any] = {"id": gen.id, "status": status, "audio_file": None, "error": None}
    if status == "completed":
        base = (state.config.public_base_url or f"{request.scheme}://{request.host}").rstrip("/")
        body["audio_file"] = {
            "url": f"{base}/files/{gen.file_name}",
            "content_type": "audio/wav",
            "file_name": gen.file_name,
            "file_size": wav_size(gen.seconds_total),
        }
        body["meta"] = {"usage": {"credits_used": CREDITS_PER_STEP * gen.steps}}
    elif status == "error":
        body["error"] = {"name": "GenerationError", "message": GENERATION_ERROR}
    return web.json_response(body)


async def _download(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    gen = state.files.get(request.match_info["name"])
    if gen is None or state.status(gen) != "completed":
        return _error(request, 404, "File not found")
    data = state.wav(gen)
    response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
    response.content_length = len(data)
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    gen.downloads += 1
    view = memoryview(data)  # slices share the cached bytes instead of copying them
    try:
        for offset in range(0, len(data), _CHUNK):
            chunk = view[offset : offset + _CHUNK]
            await response.write(chunk)
            gen.bytes_served += len(chunk)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away; bytes_served says how far it got
    return response


async def _get_ledger(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].ledger())


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return web.json_response({"reset": True})


def _config_json(config: EmulatorConfig) -> dict[str, Any]:
    # Report how many keys there are, never the keys themselves.
    return {
        "generation_seconds": config.generation_seconds,
        "public_base_url": config.public_base_url,
        "api_key_count": len(config.api_keys),
    }


def _parse_seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError("must be a finite number >= 0")
    return float(value)


def _parse_keys(value: object) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(k, str) and k for k in value):
        raise ValueError("must be a list of non-empty strings")
    return frozenset(value)


def _parse_url(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("must be a string or null")
    return value or None


# One parser per run-time configurable field: add an entry to make another field settable.
_CONFIG_PARSERS: dict[str, Callable[[object], Any]] = {
    "generation_seconds": _parse_seconds,
    "api_keys": _parse_keys,
    "public_base_url": _parse_url,
}


async def _config(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if request.method == "GET":
        return web.json_response(_config_json(state.config))
    body, problem = await _read_json(request)
    if problem or not isinstance(body, dict):
        return _error(request, 400, problem or "Expected object")
    changes: dict[str, Any] = {}
    for name, value in body.items():
        parser = _CONFIG_PARSERS.get(name)
        if parser is None:
            return _error(request, 400, f"Unrecognized key(s) in object: '{name}'")
        try:
            changes[name] = parser(value)
        except ValueError as exc:
            return _error(request, 400, f"{name}: {exc}")
    state.config = replace(state.config, **changes)
    return web.json_response(_config_json(state.config))


@web.middleware
async def _envelope_and_record(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """Turn routing errors into the API's envelope and record every non-admin request."""
    status = 500
    try:
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            if exc.status in (404, 405):  # like the real (NestJS) API: unknown route = 404
                response = _error(request, 404, f"Cannot {request.method} {request.path}")
            else:
                response = _error(request, exc.status, exc.reason)
        status = response.status
        return response
    finally:
        if not request.path.startswith(ADMIN_PREFIX):
            request.app[STATE_KEY].requests.append((request.method, request.path, status))


def build_app(config: EmulatorConfig | None = None) -> web.Application:
    """Return the emulator's aiohttp application (state under ``app[STATE_KEY]``)."""
    app = web.Application(middlewares=[_envelope_and_record])
    app[STATE_KEY] = EmulatorState(config=config or EmulatorConfig())
    app.router.add_post(GENERATION_PATH, _create)
    app.router.add_get(GENERATION_PATH, _poll)
    app.router.add_get("/files/{name}", _download)
    app.router.add_get(ADMIN_PREFIX + "ledger", _get_ledger)
    app.router.add_post(ADMIN_PREFIX + "reset", _reset)
    app.router.add_get(ADMIN_PREFIX + "config", _config)
    app.router.add_post(ADMIN_PREFIX + "config", _config)
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
        """Forget all generations and recorded requests."""
        self._call(self.state.reset)

    def set_generation_seconds(self, seconds: float) -> None:
        """Change how long generations take (applies to pending ones too)."""

        value = _parse_seconds(seconds)

        def apply() -> None:
            self.state.config = replace(self.state.config, generation_seconds=value)

        self._call(apply)

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
