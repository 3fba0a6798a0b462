"""Fan-out benchmark: N deferred generations polled from one event loop, one polling pattern per run.

The emulator runs in its own process; every generation completes ``--seconds`` after it was created.
Each variant runs in a fresh subprocess (so ``ru_maxrss`` peaks of one cannot mask another's), which
imports what it needs, warms up with one poll of an unknown id, then waits while this process submits
N generations, and then runs N concurrent waits in one event loop, created one by one with
``await asyncio.sleep(0)`` in between as Airflow's triggerer does. Per variant it reports:

- polls: requests the emulator received for these generations (its ledger);
- CPU per poll: user + system CPU time of the polling process over the polling phase only, divided by polls;
- RSS per generation: growth of the process's peak RSS over the polling phase, divided by N;
- worst stall: the largest lateness of a probe task that sleeps 5 ms in a loop, in the same loop;
- delay p50 / p99: from a generation's completion on the server (``created_at`` + seconds) to the
  arrival of its trigger event in the polling process (same machine, same wall clock).

Variants (``--variants``, comma separated):

- ``provider``: ``StableAudioGenerationTrigger.run()`` of this provider, unchanged.
- ``to_thread``: the official Anthropic provider's batch-trigger pattern: a synchronous client per
  trigger (here a ``requests.Session``) called in ``asyncio.to_thread`` once per poll, fixed interval.
- ``http_sensor``: ``HttpSensorTrigger`` of ``apache-airflow-providers-http``. It ends on the first
  answer that is not a 404 and cannot look at a body, so it polls the emulator's ``/files/<name>``
  route, which answers 404 until the generation completes (the route is different, the per-poll
  work of the client is the same: one GET, one small JSON body).
- ``httpx``: one shared ``httpx.AsyncClient`` for all waits; same poll schedule as the provider.
- ``floor``: a minimal keep-alive HTTP/1.1 GET on bare asyncio streams with a shared idle-connection
  list (no library); same poll schedule as the provider. The cheapest a poll can be in Python.

Usage::

    python benchmarks/trigger_fanout.py                      # N=1000, 20 s, 2 s interval, all variants
    python benchmarks/trigger_fanout.py --triggers 5000 --variants provider
    python benchmarks/trigger_fanout.py --quick              # small sizes, finishes in well under a minute

Exit status 1 when a trigger did not fire exactly once with success, or a variant failed to run; the
performance targets are reported in the output, never turned into a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
GENERATE_PATH = "/v2/generate/audio"
API_KEY = "bench-local-key"
CONN_ID = "stableaudio_default"
HTTP_CONN_ID = "stableaudio_bench_http"
PROMPT = "fan-out benchmark: a short soft click"
JITTER = 0.1  # the provider's POLL_JITTER, used for the httpx and floor variants' schedules
PROBE_SLEEP = 0.005
VARIANTS: dict[str, str] = {
    "provider": "this provider: StableAudioGenerationTrigger, shared aiohttp session",
    "to_thread": "requests.Session per trigger, asyncio.to_thread per poll (Anthropic pattern)",
    "http_sensor": "HttpSensorTrigger (providers-http), new aiohttp session per poll",
    "httpx": "one shared httpx.AsyncClient",
    "floor": "bare asyncio streams, keep-alive HTTP/1.1 (floor)",
}
FULL = {"triggers": 1000, "seconds": 20.0, "interval": 2.0}
QUICK = {"triggers": 200, "seconds": 3.0, "interval": 0.5}
READY_TIMEOUT = 120.0


# --------------------------------------------------------------------------------------------
# The polling side (runs in the measured subprocess, or in-process from tests)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One submitted generation: its id, and the file the emulator will serve once it completes."""

    id: str
    file_name: str | None = None


@dataclass(frozen=True)
class FanoutSettings:
    """How the waits poll.

    :param base_url: the emulator, e.g. ``http://127.0.0.1:8080``.
    :param api_key: the Bearer key (for the variants that do not read it from the connection).
    :param interval: seconds between polls.
    :param deadline_s: seconds after the start at which a wait gives up (timeout event).
    :param conn_id: the Stable Audio connection the provider's trigger uses.
    :param http_conn_id: the ``http`` connection ``HttpSensorTrigger`` uses.
    """

    base_url: str
    api_key: str
    interval: float
    deadline_s: float
    conn_id: str = CONN_ID
    http_conn_id: str = HTTP_CONN_ID


@dataclass
class FanoutRun:
    """What one fan-out produced: the events per generation id, errors, and the worst loop stall."""

    events: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    stall_max_ms: float = 0.0
    stall_at_s: float = 0.0
    gc_max_ms: float = 0.0
    started: float = 0.0
    finished: float = 0.0

    def record(self, target_id: str, status: str) -> None:
        self.events.setdefault(target_id, []).append((time.time(), status))

    def fail(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < 20:
            self.errors.append(message)


def check_run(run: FanoutRun, targets: list[Target]) -> list[str]:
    """Correctness problems: a generation without exactly one event, a non-success event, an error."""
    problems = [f"{run.error_count} errors, first: {run.errors[0]}"] if run.error_count else []
    counts: dict[int, int] = {}
    not_success: dict[str, int] = {}
    for target in targets:
        events = run.events.get(target.id, [])
        counts[len(events)] = counts.get(len(events), 0) + 1
        for _, status in events:
            if status != "success":
                not_success[status] = not_success.get(status, 0) + 1
    wrong = {k: v for k, v in counts.items() if k != 1}
    if wrong:
        problems.append(
            "generations by number of events (expected exactly 1 each): "
            + ", ".join(f"{v} with {k}" for k, v in sorted(wrong.items()))
        )
    if not_success:
        problems.append(f"events that are not success: {not_success}")
    return problems


def _poll_status(status_code: int, body: bytes) -> str | None:
    """The event a poll answer ends a wait with (``success``/``error``), or ``None`` to poll again."""
    if status_code == 200:
        status = json.loads(body).get("status")
        if status == "completed":
            return "success"
        if status in ("error", "failed"):
            return "error"
        return None
    if 400 <= status_code < 500 and status_code != 429:
        return "error"
    return None


def _jittered(interval: float) -> float:
    return interval * random.uniform(1 - JITTER, 1 + JITTER)


class _BareHttp:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams, sharing idle connections."""

    def __init__(self, base_url: str, api_key: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._tail = (
            f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {api_key}\r\n"
            "Accept: application/json\r\n\r\n"
        ).encode()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, target: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            reused = bool(self._idle)
            if reused:
                reader, writer = self._idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(b"GET " + target + b" HTTP/1.1\r\n" + self._tail)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
            except (OSError, asyncio.IncompleteReadError):
                writer.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle connection: once more on a new one
                raise
            self._idle.append((reader, writer))
            return int(head[9:12]), body
        raise AssertionError("unreachable")

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


class _Fanout:
    """One fan-out: the shared clients of the variant, and one wait per target."""

    def __init__(self, variant: str, settings: FanoutSettings) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        self.variant = variant
        self.settings = settings
        self.run = FanoutRun()
        self.url = settings.base_url.rstrip("/") + GENERATE_PATH
        self.auth = {"Authorization": f"Bearer {settings.api_key}", "Accept": "application/json"}
        self._httpx: Any = None
        self._bare: _BareHttp | None = None

    async def open(self) -> None:
        if self.variant == "httpx":
            import httpx

            self._httpx = httpx.AsyncClient(
                base_url=self.settings.base_url,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
                timeout=30,
                trust_env=False,
            )
        elif self.variant == "floor":
            self._bare = _BareHttp(self.settings.base_url, self.settings.api_key)

    async def close(self) -> None:
        if self._httpx is not None:
            await self._httpx.aclose()
        if self._bare is not None:
            self._bare.close()

    async def wait(self, target: Target) -> None:
        try:
            await getattr(self, f"_wait_{self.variant}")(target)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.run.fail(f"{target.id}: {type(exc).__name__}: {exc}")

    async def _wait_provider(self, target: Target) -> None:
        from airflow_provider_stableaudio.triggers.stable_audio import StableAudioGenerationTrigger

        trigger = StableAudioGenerationTrigger(
            conn_id=self.settings.conn_id,
            generation_id=target.id,
            poll_interval=self.settings.interval,
            end_time=time.time() + self.settings.deadline_s,
        )
        async for event in trigger.run():
            self.run.record(target.id, str(event.payload.get("status")))

    async def _wait_to_thread(self, target: Target) -> None:
        import requests

        session = requests.Session()  # the hook's client: one per trigger, as AnthropicHook caches it
        session.trust_env = False
        params = {"generation_id": target.id}
        end = time.time() + self.settings.deadline_s
        try:
            while True:
                response = await asyncio.to_thread(
                    session.get, self.url, params=params, headers=self.auth, timeout=30
                )
                status = _poll_status(response.status_code, response.content)
                if status is None and time.time() > end:
                    status = "timeout"
                if status is not None:
                    self.run.record(target.id, status)
                    return
                await asyncio.sleep(self.settings.interval)
        finally:
            session.close()

    async def _wait_http_sensor(self, target: Target) -> None:
        from airflow.providers.http.triggers.http import HttpSensorTrigger

        # Until completion the emulator answers /files/<name> with 404, the one answer this trigger
        # waits through; the warm-up (no file) uses a route that answers 200 at once.
        endpoint = f"files/{target.file_name}" if target.file_name else "_emulator/config"
        trigger = HttpSensorTrigger(
            endpoint=endpoint,
            http_conn_id=self.settings.http_conn_id,
            method="GET",
            poke_interval=self.settings.interval,
        )
        async for event in trigger.run():
            self.run.record(target.id, "success" if event.payload is True else f"payload {event.payload!r}")

    async def _wait_httpx(self, target: Target) -> None:
        params = {"generation_id": target.id}
        end = time.time() + self.settings.deadline_s
        while True:
            response = await self._httpx.get(GENERATE_PATH, params=params, headers=self.auth)
            status = _poll_status(response.status_code, response.content)
            if status is None and time.time() > end:
                status = "timeout"
            if status is not None:
                self.run.record(target.id, status)
                return
            await asyncio.sleep(_jittered(self.settings.interval))

    async def _wait_floor(self, target: Target) -> None:
        assert self._bare is not None
        request_target = f"{GENERATE_PATH}?generation_id={quote(target.id, safe='')}".encode()
        end = time.time() + self.settings.deadline_s
        while True:
            status = _poll_status(*await self._bare.get(request_target))
            if status is None and time.time() > end:
                status = "timeout"
            if status is not None:
                self.run.record(target.id, status)
                return
            await asyncio.sleep(_jittered(self.settings.interval))


async def _stall_probe(stop: asyncio.Event, run: FanoutRun) -> None:
    loop = asyncio.get_running_loop()
    worst = worst_at = 0.0
    origin = loop.time()
    while not stop.is_set():
        started = loop.time()
        await asyncio.sleep(PROBE_SLEEP)
        late = loop.time() - started - PROBE_SLEEP
        if late > worst:
            worst, worst_at = late, started - origin
    run.stall_max_ms, run.stall_at_s = worst * 1000, worst_at


class _GcPauses:
    """The longest garbage-collector pause while active (a cause of loop stalls worth telling apart)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._start)

    def __enter__(self) -> _GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


async def run_fanout(variant: str, targets: list[Target], settings: FanoutSettings) -> FanoutRun:
    """Wait for every target concurrently in this event loop with one variant; return what happened.

    Waits are created one by one, yielding to the loop in between, as Airflow's triggerer does; a
    probe task measures the loop's worst stall meanwhile. Bounded: whatever has not ended
    ``deadline_s + 30`` seconds after the start is cancelled and counted as an error.
    """
    fanout = _Fanout(variant, settings)
    run = fanout.run
    await fanout.open()
    stop = asyncio.Event()
    probe = asyncio.create_task(_stall_probe(stop, run))
    tasks: list[asyncio.Task[None]] = []
    run.started = time.time()
    gc_pauses = _GcPauses().__enter__()
    try:
        for target in targets:
            await asyncio.sleep(0)
            tasks.append(asyncio.create_task(fanout.wait(target)))
            await asyncio.sleep(0)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=settings.deadline_s + 30)
            for task in pending:
                task.cancel()
                run.fail("a wait did not end by the deadline and was cancelled")
            await asyncio.gather(*pending, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        run.finished = time.time()
        stop.set()
        await probe
        gc_pauses.__exit__()
        run.gc_max_ms = gc_pauses.longest * 1000
        await fanout.close()
    return run


async def submit_generations(
    base_url: str, api_key: str, count: int, *, concurrency: int = 64
) -> list[Target]:
    """Create ``count`` generations on the emulator with concurrent POSTs; return them in order."""
    import aiohttp

    body = {"model": "stable-audio", "prompt": PROMPT, "seconds_total": 1, "steps": 1}
    headers = {"Authorization": f"Bearer {api_key}"}
    limit = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession) -> Target:
        async with limit, session.post(base_url + GENERATE_PATH, json=body, headers=headers) as response:
            response.raise_for_status()
            gen_id = (await response.json())["id"]
        return Target(id=gen_id, file_name=f"{gen_id.split(':')[0]}.wav")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        return list(await asyncio.gather(*(one(session) for _ in range(count))))


def count_polls(ledger: dict[str, Any], variant: str, targets: list[Target]) -> int:
    """The requests the emulator received for these generations, from its ledger."""
    if variant == "http_sensor":
        paths = {f"/files/{t.file_name}" for t in targets}
        return sum(1 for r in ledger["requests"] if r["path"] in paths)
    ids = {t.id for t in targets}
    return sum(g["polls"] for g in ledger["generations"] if g["id"] in ids)


# --------------------------------------------------------------------------------------------
# The measured subprocess
# --------------------------------------------------------------------------------------------


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kb() -> int:
    """The process's peak RSS in KB: ``VmHWM`` (what :func:`reset_peak_rss` resets), else ``ru_maxrss``.

    ``ru_maxrss`` alone is not enough on Linux: it is also the maximum over the peaks recorded when
    any thread of the process exited, which a reset does not clear (Airflow's imports and the
    warm-up's executor threads leave such a record).
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux


def reset_peak_rss() -> bool:
    """Make the process's peak RSS its current RSS (Linux ``clear_refs``), after returning free heap.

    Without this, the transient peak of importing Airflow (freed since) masks the growth of the
    measured phase. Returns whether the reset worked.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard)
            )


def _wait_for_file(path: Path, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > end:
            raise TimeoutError(f"{path} did not appear within {timeout:.0f}s")
        time.sleep(0.02)


def _child(config_path: str) -> int:
    """Run one variant: warm up, say ready, wait for the targets, fan out, write the measurements."""
    config = json.loads(Path(config_path).read_text())
    variant = config["variant"]
    settings = FanoutSettings(**config["settings"])
    work = Path(config["work_dir"])
    _raise_nofile()
    # Warm-up: imports and first-use set-up of the variant, outside the measured phase.
    asyncio.run(run_fanout(variant, [Target(id="bench-warmup-unknown-id")], settings))
    (work / "ready").touch()
    _wait_for_file(work / "targets.json", config["targets_timeout"])
    targets = [Target(**t) for t in json.loads((work / "targets.json").read_text())]
    if config.get("gc_freeze"):
        gc.freeze()  # diagnostic: the heap so far leaves the collector's view (Python >= 3.7)
    peak_reset = reset_peak_rss()
    rss_before, cpu_before = peak_rss_kb(), _cpu_seconds()
    run = asyncio.run(run_fanout(variant, targets, settings))
    cpu, rss_after = _cpu_seconds() - cpu_before, peak_rss_kb()
    result = {
        "cpu_s": cpu,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "peak_reset": peak_reset,
        "run": asdict(run),
    }
    tmp = work / "result.json.tmp"
    tmp.write_text(json.dumps(result))
    tmp.replace(work / "result.json")
    return 0


# --------------------------------------------------------------------------------------------
# The orchestrating process
# --------------------------------------------------------------------------------------------


def die_with_parent() -> None:
    """In a child before exec (Linux): get SIGTERM if this process dies, so nothing outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Stop a process this benchmark started: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class MeasuredChild:
    """A benchmark's measured subprocess (``script --child config.json``, output in ``child.log``):
    it says when it is ready, gets its targets in ``targets.json`` and leaves ``result.json``.

    :param label: how errors name the run.
    :param ready_timeout: seconds it may take to start (import what it measures, warm up).
    """

    def __init__(
        self,
        script: str,
        vdir: Path,
        config: dict[str, Any],
        env: dict[str, str],
        *,
        label: str,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.vdir = vdir
        self.ready_timeout = ready_timeout
        self.label = label
        self.log_path = vdir / "child.log"
        (vdir / "config.json").write_text(json.dumps(config))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, script, "--child", str(vdir / "config.json")],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                preexec_fn=die_with_parent,
            )

    def wait_ready(self) -> None:
        end = time.monotonic() + self.ready_timeout
        while not (self.vdir / "ready").exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise self._failed("did not get ready")
            time.sleep(0.05)

    def give_targets(self, targets: list[dict[str, Any]]) -> None:
        tmp = self.vdir / "targets.json.tmp"
        tmp.write_text(json.dumps(targets))
        tmp.replace(self.vdir / "targets.json")

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait for the process to end and read its result (the caller stops it in any case)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self._failed("did not finish") from None
        if self.proc.returncode != 0 or not (self.vdir / "result.json").exists():
            raise self._failed("failed")
        return json.loads((self.vdir / "result.json").read_text())

    def _failed(self, what: str) -> RuntimeError:
        return RuntimeError(f"{self.label}: the measured process {what}:\n{_tail(self.log_path)}")


def _http(method: str, url: str) -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=60) as response:  # loopback only
        return json.loads(response.read())


def start_emulator(work: Path, seconds: float) -> tuple[subprocess.Popen[Any], str]:
    """Start the emulator CLI in its own process; return it and its base URL."""
    port_file = work / "emulator.port"
    log = open(work / "emulator.log", "wb")  # noqa: SIM115 - the child owns it; closed below
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "airflow_provider_stableaudio.emulator"),
            *("--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)),
            *("--generation-seconds", str(seconds), "--api-key", API_KEY),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        preexec_fn=die_with_parent,
    )
    log.close()
    try:
        end = time.monotonic() + 60
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the emulator did not start:\n{_tail(work / 'emulator.log')}")
            time.sleep(0.05)
        return proc, f"http://127.0.0.1:{int(port_file.read_text())}"
    except BaseException:
        stop_process(proc)
        raise


def child_env(airflow_home: Path, base_url: str) -> dict[str, str]:
    """The environment of a measured subprocess: a throwaway AIRFLOW_HOME, the two connections, and
    a request-budget folder of its own (a row must not learn from the previous row's 429s)."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    port = urlsplit(base_url).port
    airflow_home.parent.mkdir(parents=True, exist_ok=True)
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__STABLEAUDIO__BUDGET_DIR=tempfile.mkdtemp(prefix="budgets-", dir=airflow_home.parent),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        AIRFLOW_CONN_STABLEAUDIO_DEFAULT=json.dumps(
            {"conn_type": "stableaudio", "host": base_url, "password": API_KEY}
        ),
        **{
            f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}": json.dumps(
                {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http"}
            )
        },
    )
    return env


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _completion_times(ledger: dict[str, Any], seconds: float) -> dict[str, float]:
    return {
        g["id"]: datetime.fromisoformat(g["created_at"].replace("Z", "+00:00")).timestamp() + seconds
        for g in ledger["generations"]
    }


def run_variant(
    variant: str,
    *,
    vdir: Path,
    base_url: str,
    triggers: int,
    seconds: float,
    interval: float,
    gc_freeze: bool = False,
) -> dict[str, Any]:
    """Measure one variant in a fresh subprocess against the running emulator; return its table row.

    :param vdir: a new folder for this run's files, inside the benchmark's temporary folder.
    """
    vdir.mkdir(parents=True)
    settings = FanoutSettings(
        base_url=base_url, api_key=API_KEY, interval=interval, deadline_s=seconds + max(30.0, 10 * interval)
    )
    config = {
        "variant": variant,
        "settings": asdict(settings),
        "work_dir": str(vdir),
        "targets_timeout": READY_TIMEOUT,
        "gc_freeze": gc_freeze,
    }
    row: dict[str, Any] = {"variant": variant, "triggers": triggers, "problems": []}
    child = MeasuredChild(
        str(Path(__file__).resolve()),
        vdir,
        config,
        child_env(vdir.parent / "airflow-home", base_url),
        label=variant,
    )
    try:
        child.wait_ready()
        _http("POST", base_url + "/_emulator/reset")
        targets = asyncio.run(submit_generations(base_url, API_KEY, triggers))
        child.give_targets([asdict(t) for t in targets])
        result = child.result(settings.deadline_s + 120)
    finally:
        stop_process(child.proc)
    run = FanoutRun(**{k: v for k, v in result["run"].items() if k != "events"})
    run.events = {k: [(t, status) for t, status in v] for k, v in result["run"]["events"].items()}
    ledger = _http("GET", base_url + "/_emulator/ledger")
    completions = _completion_times(ledger, seconds)
    delays = [
        (events[0][0] - completions[gen_id]) * 1000
        for gen_id, events in run.events.items()
        if events and gen_id in completions
    ]
    polls = count_polls(ledger, variant, targets)
    row.update(
        polls=polls,
        cpu_us_per_poll=result["cpu_s"] * 1e6 / polls if polls else math.nan,
        rss_kb_per_gen=(result["rss_after_kb"] - result["rss_before_kb"]) / triggers,
        stall_max_ms=run.stall_max_ms,
        stall_at_s=run.stall_at_s,
        gc_max_ms=run.gc_max_ms,
        peak_reset=result["peak_reset"],
        delay_p50_ms=_percentile(delays, 50),
        delay_p99_ms=_percentile(delays, 99),
        delay_max_ms=max(delays, default=math.nan),
        cpu_s=result["cpu_s"],
        wall_s=run.finished - run.started,
        problems=check_run(run, targets),
    )
    return row


MEDIAN_METRICS = (
    "polls",
    "cpu_us_per_poll",
    "rss_kb_per_gen",
    "stall_max_ms",
    "stall_at_s",
    "gc_max_ms",
    "delay_p50_ms",
    "delay_p99_ms",
    "delay_max_ms",
    "cpu_s",
    "wall_s",
)


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from a variant's repeated runs: the median of each measure, every run's problems."""
    first = runs[0]
    row: dict[str, Any] = {"variant": first["variant"], "triggers": first["triggers"], "repeats": len(runs)}
    measured = [r for r in runs if "cpu_us_per_poll" in r]
    for name in MEDIAN_METRICS:
        values = [r[name] for r in measured if not math.isnan(r[name])]
        if values:
            row[name] = statistics.median(values)
    if measured:
        row["polls"] = round(row["polls"])
    row["problems"] = [
        f"run {i + 1}: {p}" if len(runs) > 1 else p for i, r in enumerate(runs) for p in r["problems"]
    ]
    if len(runs) > 1:
        row["runs"] = runs
    return row


def run_benchmark(
    *,
    triggers: int,
    seconds: float,
    interval: float,
    variants: list[str],
    repeat: int = 1,
    gc_freeze: bool = False,
    log: Any = print,
) -> list[dict[str, Any]]:
    """Start the emulator, measure every variant (round-robin when repeated), stop everything.

    Returns one row per variant (medians over the repeats).
    """
    _raise_nofile()  # inherited by the emulator and the measured processes
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="stableaudio-bench-fanout-") as tmp:
        work = Path(tmp)
        emulator, base_url = start_emulator(work, seconds)
        try:
            for round_no in range(1, repeat + 1):
                for variant in variants:
                    suffix = f" (run {round_no} of {repeat})" if repeat > 1 else ""
                    log(f"  {variant}: {triggers} waits{suffix} ...", flush=True)
                    try:
                        row = run_variant(
                            variant,
                            vdir=work / f"{variant}-{round_no}",
                            base_url=base_url,
                            triggers=triggers,
                            seconds=seconds,
                            interval=interval,
                            gc_freeze=gc_freeze,
                        )
                    except RuntimeError as exc:
                        row = {"variant": variant, "triggers": triggers, "problems": [str(exc)]}
                    runs[variant].append(row)
        finally:
            stop_process(emulator)
    return [combine(runs[v]) for v in variants]


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def evaluate_targets(rows: list[dict[str, Any]], interval: float) -> list[tuple[str, str, bool | None]]:
    """The issue's targets for the provider's row: (target, measured, met); met None when unmeasured."""
    by = {r["variant"]: r for r in rows if "cpu_us_per_poll" in r}
    mine = by.get("provider")
    if mine is None:
        return []
    cpu = mine["cpu_us_per_poll"]
    checks: list[tuple[str, str, bool | None]] = []
    for other, factor, label in (
        ("to_thread", 1 / 3, "<= 1/3 of to_thread's"),
        ("http_sensor", 1 / 2, "<= 1/2 of http_sensor's"),
        ("floor", 2.5, "<= 2.5x the floor's"),
    ):
        ref = by.get(other)
        if ref is None:
            checks.append((f"CPU/poll {label}", f"{cpu:.0f} us ({other} not run)", None))
        else:
            limit = ref["cpu_us_per_poll"] * factor
            checks.append((f"CPU/poll {label}", f"{cpu:.0f} us vs limit {limit:.0f} us", cpu <= limit))
    rss = mine["rss_kb_per_gen"]
    checks.append(("RSS growth <= 20 KB per deferred generation", f"{rss:.1f} KB", rss <= 20))
    floor = by.get("floor")
    stall = mine["stall_max_ms"]
    if floor is None:
        checks.append(("worst stall <= floor's + 10 ms", f"{stall:.1f} ms (floor not run)", None))
    else:
        limit = floor["stall_max_ms"] + 10
        checks.append(
            ("worst stall <= floor's + 10 ms", f"{stall:.1f} ms vs limit {limit:.1f} ms", stall <= limit)
        )
    p99, limit = mine["delay_p99_ms"], interval * 1000 + 100
    checks.append(("delay p99 <= interval + 100 ms", f"{p99:.0f} ms vs limit {limit:.0f} ms", p99 <= limit))
    checks.append(
        (
            f"all {mine['triggers']} triggers fired exactly once with success, no errors",
            "yes" if not mine["problems"] else "; ".join(mine["problems"]),
            not mine["problems"],
        )
    )
    return checks


def render(rows: list[dict[str, Any]], *, seconds: float, interval: float, quick: bool) -> str:
    """The table, then the targets; plain text."""
    header = (
        f"{'variant':<12} {'N':>5} {'polls':>7} {'CPU us/poll':>11} {'RSS KB/gen':>10} "
        f"{'stall ms':>8} {'GC ms':>6} {'p50 ms':>7} {'p99 ms':>7} {'fired once, ok':>14}"
    )
    repeats = max((r.get("repeats", 1) for r in rows), default=1)
    lines = [
        f"Trigger fan-out: completion {seconds:g} s after creation, poll interval {interval:g} s"
        + (f"; medians of {repeats} runs per variant, round-robin" if repeats > 1 else "")
        + (
            "  (the issue's numeric targets are for N=1000, 20 s, 2 s: indicative here)"
            if quick
            or (rows and rows[0]["triggers"] != FULL["triggers"])
            or (seconds, interval) != (FULL["seconds"], FULL["interval"])
            else ""
        ),
        header,
        "-" * len(header),
    ]
    for r in rows:
        ok = "yes" if not r["problems"] else "NO"
        lines.append(
            f"{r['variant']:<12} {r['triggers']:>5} {_fmt(r.get('polls'), 'd'):>7} "
            f"{_fmt(r.get('cpu_us_per_poll'), '.0f'):>11} {_fmt(r.get('rss_kb_per_gen'), '.1f'):>10} "
            f"{_fmt(r.get('stall_max_ms'), '.1f'):>8} {_fmt(r.get('gc_max_ms'), '.1f'):>6} "
            f"{_fmt(r.get('delay_p50_ms'), '.0f'):>7} "
            f"{_fmt(r.get('delay_p99_ms'), '.0f'):>7} {ok:>14}"
        )
    lines += [
        "",
        "  CPU: user+sys of the polling process over the polling phase / polls the emulator received;",
        "  RSS: peak RSS growth over that phase / N; stall: worst lateness of a 5 ms sleep in the loop;",
        "  GC ms: longest garbage-collector pause in that phase; p50/p99: completion -> trigger event.",
    ]
    lines.extend(
        f"  {name}: {VARIANTS[name]}" for name in VARIANTS if any(r["variant"] == name for r in rows)
    )
    checks = evaluate_targets(rows, interval)
    if checks:
        lines += ["", "Targets (issue 4), for the provider's row:"]
        for name, measured, met in checks:
            verdict = "n/a " if met is None else ("met " if met else "MISS")
            lines.append(f"  [{verdict}] {name}: {measured}")
    problems = [(r["variant"], p) for r in rows for p in r["problems"]]
    if problems:
        lines += ["", "Problems:"]
        lines.extend(f"  {v}: {p}" for v, p in problems)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--triggers", type=int, help=f"concurrent waits (default {FULL['triggers']})")
    parser.add_argument(
        "--seconds", type=float, help=f"completion after creation (default {FULL['seconds']:g})"
    )
    parser.add_argument("--interval", type=float, help=f"poll interval (default {FULL['interval']:g})")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma separated (default: all)")
    parser.add_argument("--quick", action="store_true", help=f"small sizes: {QUICK}")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each variant, round-robin; the table shows medians"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="diagnostic: gc.freeze() in the measured process before the polling phase",
    )
    parser.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child)
    sizes = QUICK if args.quick else FULL
    triggers = args.triggers if args.triggers is not None else int(sizes["triggers"])
    seconds = args.seconds if args.seconds is not None else sizes["seconds"]
    interval = args.interval if args.interval is not None else sizes["interval"]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or triggers < 1 or seconds < 0 or interval <= 0 or args.repeat < 1:
        parser.error(f"bad arguments (unknown variants: {unknown}; known: {', '.join(VARIANTS)})")
    print(
        f"== trigger fan-out: N={triggers}, completion {seconds:g} s, interval {interval:g} s"
        + (", gc.freeze() before the polling phase" if args.gc_freeze else ""),
        flush=True,
    )
    rows = run_benchmark(
        triggers=triggers,
        seconds=seconds,
        interval=interval,
        variants=variants,
        repeat=args.repeat,
        gc_freeze=args.gc_freeze,
    )
    print(render(rows, seconds=seconds, interval=interval, quick=args.quick))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 1 if any(r["problems"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
