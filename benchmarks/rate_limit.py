"""Rate-limit benchmark: thousands of deferred generations polled in one event loop against a key limit.

The emulator (its own process) holds the key to 150 requests per 10 s and locks it out for 60 s after
that, as Stability AI documents (issue 18); each generation takes its own time, drawn uniformly from a
range, the same on every run (the emulator's ``generation_seconds_max``). Each row runs in a fresh
subprocess: it imports what it needs and warms up with one poll of an unknown id, then this process
resets the emulator, submits N generations (with the limit off, so only the polls meet it), turns the
limit on and lets the subprocess wait for all N at once in one event loop, created one by one with
``await asyncio.sleep(0)`` in between as Airflow's triggerer does.

Variants (``--variants``):

- ``per_trigger``: today's per-trigger behaviour, reproduced here so it stays measurable after the
  provider changes: each wait polls on its own clock (a random start within one interval, then 90-100 %
  of the interval), retries 429/5xx with its own exponential backoff from the interval (cap 60 s) and
  honours ``Retry-After`` on its own; raw ``aiohttp`` GETs on one shared session.
- ``provider``: ``StableAudioGenerationTrigger.run()`` of whatever provider is imported, given
  ``model``, ``clip_seconds`` and ``submitted_at`` when its signature accepts them. Its connection has
  the extra ``max_requests_per_second`` in the rows that say so.
- ``to_thread``: the Anthropic provider's pattern, from ``trigger_fanout.py`` (a ``requests.Session``
  per wait, one GET per interval in ``asyncio.to_thread``); only in scenario (c).

Scenarios (full sizes; ``--quick`` takes (a) a fifth of the clips, (b) and (c) a tenth, and a
twentieth of every time, the window, the lockout and the backoff cap; the limit's requests scale with
the clips and the budget with clips over time, so the limit binds as hard):

- (a) 300 generations of 20-40 s, ``poll_interval=2``, the limit without and with ``Retry-After``;
  ``per_trigger``, and ``provider`` with ``max_requests_per_second=14`` and with none configured.
- (b) 1,000 generations of 30-90 s, ``poll_interval=10``, no ``Retry-After``: ``per_trigger`` and
  ``provider`` with ``max_requests_per_second=14``.
- (c) as (b) on the emulator with no limit: CPU per delivered clip of ``provider`` (with
  ``max_requests_per_second=14``, as the scenario configures it, and with none) and ``to_thread``;
  each ``provider`` row's CPU per clip is also given as a fraction of ``to_thread``'s.

Figures per row: requests (the polls the emulator received, 429s included), 429s and lockouts (its
ledger), requests per clip, detection latency after ready (the event in the polling process minus the
generation's ``created_at`` + its own time) p50 / p95 / max, the last clip's event from the first
submit, user + system CPU of the polling process over the polling phase per delivered clip, clips
delivered (exactly one ``success`` event).

Usage::

    python benchmarks/rate_limit.py                  # full sizes, every row (about 30 minutes)
    python benchmarks/rate_limit.py --quick          # about 2 minutes
    python benchmarks/rate_limit.py --scenarios a --variants provider --json rows.json

Exit status 1 when a clip was not delivered or a row failed to run; never because of a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python benchmarks/rate_limit.py`: this checkout's package, not another

from benchmarks.trigger_fanout import (  # noqa: E402
    API_KEY,
    GENERATE_PATH,
    FanoutRun,
    FanoutSettings,
    MeasuredChild,
    Target,
    _cpu_seconds,
    _Fanout,
    _percentile,
    _poll_status,
    _raise_nofile,
    check_run,
    child_env,
    start_emulator,
    stop_process,
    submit_generations,
)

MODEL = "stable-audio"
CLIP_SECONDS = 1.0  # the seconds_total submit_generations asks for
LIMIT_REQUESTS, LIMIT_WINDOW, LIMIT_LOCKOUT = 150, 10.0, 60.0  # Stability's documented limit
BUDGET = 14.0  # max_requests_per_second of the rows with a budget: below 150 per 10 s
BACKOFF_CAP = 60.0  # the old RetryPolicy's cap
JITTER = 0.1  # the old POLL_JITTER
VARIANTS = {
    "per_trigger": "today's per-trigger loop (own clock, own backoff, Retry-After on its own), aiohttp",
    "provider": "StableAudioGenerationTrigger.run() of the imported provider",
    "to_thread": "requests.Session per wait, asyncio.to_thread per poll (Anthropic pattern)",
}
# --quick: (clip count, time) factors per scenario; about 2 minutes in all.
QUICK = {"a": (0.2, 0.05), "b": (0.1, 0.05), "c": (0.1, 0.05)}
READY_TIMEOUT = 180.0


@dataclass(frozen=True)
class Scenario:
    """What the emulator does and how the waits poll; times in seconds."""

    name: str
    clips: int
    gen_min: float
    gen_max: float
    interval: float
    limited: bool
    window: float = LIMIT_WINDOW
    lockout: float = LIMIT_LOCKOUT
    limit_requests: int = LIMIT_REQUESTS
    budget: float = BUDGET
    backoff_cap: float = BACKOFF_CAP
    deadline: float = 1200.0  # a wait gives up this long after the start (a timeout: not delivered)

    def scaled(self, clips: float, times: float) -> Scenario:
        """The same scenario with ``clips`` times the clips and ``times`` times every duration; the
        limit's requests scale with the clips and the budget by both, so the limit binds as hard."""
        return replace(
            self,
            clips=max(1, round(self.clips * clips)),
            gen_min=self.gen_min * times,
            gen_max=self.gen_max * times,
            interval=self.interval * times,
            window=self.window * times,
            lockout=self.lockout * times,
            limit_requests=max(1, round(self.limit_requests * clips)),
            budget=self.budget * clips / times,
            backoff_cap=self.backoff_cap * times,
            deadline=self.deadline * times,
        )


@dataclass(frozen=True)
class Row:
    """One measured row: a scenario, a variant, whether the limit's 429 carries Retry-After, and the
    provider's ``max_requests_per_second`` (None: not configured)."""

    scenario: str
    variant: str
    retry_after: bool = False
    budget: bool = False


SCENARIOS = {
    "a": Scenario(name="a", clips=300, gen_min=20, gen_max=40, interval=2, limited=True),
    "b": Scenario(name="b", clips=1000, gen_min=30, gen_max=90, interval=10, limited=True),
    "c": Scenario(name="c", clips=1000, gen_min=30, gen_max=90, interval=10, limited=False),
}
ROWS = [
    Row("a", "per_trigger"),
    Row("a", "per_trigger", retry_after=True),
    Row("a", "provider", budget=True),
    Row("a", "provider", retry_after=True, budget=True),
    Row("a", "provider"),
    Row("a", "provider", retry_after=True),
    Row("b", "per_trigger"),
    Row("b", "provider", budget=True),
    Row("c", "provider", budget=True),
    Row("c", "to_thread"),
    Row("c", "provider"),
]


# --------------------------------------------------------------------------------------------
# The polling side (runs in the measured subprocess)
# --------------------------------------------------------------------------------------------


def old_poll_delay(
    interval: float, *, failures: int, retry_after: float | None, remaining: float, cap: float
) -> float | None:
    """The provider's poll delay before issue 18 (``retry_policy.poll_delay`` with its backoff), so the
    ``per_trigger`` row keeps measuring it after the provider changes."""
    if remaining <= 0 or (retry_after or 0) > remaining:
        return None
    wait = interval * random.uniform(1 - JITTER, 1)
    if failures:
        backoff = random.uniform(0, min(cap, interval * 2 ** (failures - 1)))
        wait = max(wait, backoff if retry_after is None else max(backoff, retry_after))
    return min(wait, remaining)


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else math.nan
    except ValueError:
        return None  # an HTTP date: the emulator sends none
    return max(0.0, seconds) if math.isfinite(seconds) else None


class _Waits:
    """One row's waits in this event loop: the variant, its shared client, what happened."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.variant: str = config["variant"]
        self.settings = FanoutSettings(**config["settings"])
        self.cap: float = config["backoff_cap"]
        self.run = FanoutRun()
        self.submitted: dict[str, float] = {}
        self._session: Any = None
        self._to_thread = _Fanout("to_thread", self.settings)
        self._to_thread.run = self.run
        self.trigger_kwargs: list[str] = []
        self._accepted: frozenset[str] | None = None

    async def open(self) -> None:
        if self.variant == "per_trigger":
            import aiohttp

            # As the provider's shared session: no pool cap, concurrency is bounded by the waits.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def wait(self, target: Target) -> None:
        try:
            if self.variant == "to_thread":
                await self._to_thread._wait_to_thread(target)
            else:
                await getattr(self, f"_wait_{self.variant}")(target)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.run.fail(f"{target.id}: {type(exc).__name__}: {exc}")

    async def _wait_provider(self, target: Target) -> None:
        from airflow_provider_stableaudio.triggers.stable_audio import StableAudioGenerationTrigger

        kwargs: dict[str, Any] = {
            "conn_id": self.settings.conn_id,
            "generation_id": target.id,
            "poll_interval": self.settings.interval,
            "end_time": time.time() + self.settings.deadline_s,
        }
        # Issue 18's arguments, given only to a trigger that takes them (today's main does not).
        if self._accepted is None:
            self._accepted = frozenset(inspect.signature(StableAudioGenerationTrigger).parameters)
        accepted = self._accepted
        optional = {
            "model": MODEL,
            "clip_seconds": CLIP_SECONDS,
            "submitted_at": self.submitted.get(target.id),
        }
        kwargs.update({name: value for name, value in optional.items() if name in accepted})
        self.trigger_kwargs = sorted(kwargs)
        trigger = StableAudioGenerationTrigger(**kwargs)
        async for event in trigger.run():
            self.run.record(target.id, str(event.payload.get("status")))

    async def _wait_per_trigger(self, target: Target) -> None:
        import aiohttp

        url = self.settings.base_url.rstrip("/") + GENERATE_PATH
        headers = {"Authorization": f"Bearer {self.settings.api_key}", "Accept": "application/json"}
        end = time.time() + self.settings.deadline_s
        interval = self.settings.interval
        failures = 0
        await asyncio.sleep(random.uniform(0, max(0.0, min(interval, end - time.time()))))
        while True:
            retry_after = None
            try:
                async with self._session.get(
                    url,
                    params={"generation_id": target.id},
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(30),
                ) as response:
                    status_code, body = response.status, await response.read()
                    retry_after = _retry_after(response.headers.get("Retry-After"))
            except (TimeoutError, aiohttp.ClientError):
                status_code, body = 0, b""
            outcome = _poll_status(status_code, body) if status_code else None
            if outcome is not None:
                self.run.record(target.id, outcome)
                return
            failures = 0 if status_code == 200 else failures + 1
            delay = old_poll_delay(
                interval,
                failures=failures,
                retry_after=retry_after if failures else None,
                remaining=end - time.time(),
                cap=self.cap,
            )
            if delay is None:
                self.run.record(target.id, "timeout")
                return
            await asyncio.sleep(delay)


async def run_waits(waits: _Waits, targets: list[Target]) -> None:
    """Wait for every target concurrently, created one by one as the triggerer does; bounded."""
    tasks: list[asyncio.Task[None]] = []
    waits.run.started = time.time()
    try:
        for target in targets:
            await asyncio.sleep(0)
            tasks.append(asyncio.create_task(waits.wait(target)))
            await asyncio.sleep(0)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=waits.settings.deadline_s + 60)
            for task in pending:
                task.cancel()
                waits.run.fail("a wait did not end by the deadline and was cancelled")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        waits.run.finished = time.time()


async def _child_main(config: dict[str, Any]) -> dict[str, Any]:
    # One event loop for the warm-up and the measured phase: a provider may keep per-loop state.
    work = Path(config["work_dir"])
    waits = _Waits(config)
    await waits.open()
    try:
        await run_waits(waits, [Target(id="bench-warmup-unknown-id")])
        waits.run = FanoutRun()
        waits._to_thread.run = waits.run
        (work / "ready").touch()
        end = time.monotonic() + config["targets_timeout"]
        while not (work / "targets.json").exists():
            if time.monotonic() > end:
                raise TimeoutError("no targets came")
            await asyncio.sleep(0.02)
        given = json.loads((work / "targets.json").read_text())
        targets = [Target(id=t["id"], file_name=t["file_name"]) for t in given]
        waits.submitted = {t["id"]: t["submitted_at"] for t in given}
        cpu_before = _cpu_seconds()
        await run_waits(waits, targets)
        cpu = _cpu_seconds() - cpu_before
    finally:
        await waits.close()
    return {"cpu_s": cpu, "run": asdict(waits.run), "trigger_kwargs": waits.trigger_kwargs}


def _child(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    _raise_nofile()
    result = asyncio.run(_child_main(config))
    work = Path(config["work_dir"])
    (work / "result.json.tmp").write_text(json.dumps(result))
    (work / "result.json.tmp").replace(work / "result.json")
    return 0


# --------------------------------------------------------------------------------------------
# The orchestrating process
# --------------------------------------------------------------------------------------------


def _admin(base_url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One call to the emulator's admin routes (loopback only)."""
    data = json.dumps(body or {}).encode() if method == "POST" else None
    request = urllib.request.Request(
        f"{base_url}/_emulator/{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _env(vdir: Path, base_url: str, budget: float | None) -> dict[str, str]:
    env = child_env(vdir.parent / "airflow-home", base_url)
    conn: dict[str, Any] = {"conn_type": "stableaudio", "host": base_url, "password": API_KEY}
    if budget is not None:
        conn["extra"] = {"max_requests_per_second": budget}
    env["AIRFLOW_CONN_STABLEAUDIO_DEFAULT"] = json.dumps(conn)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


def run_row(row: Row, scenario: Scenario, *, vdir: Path, base_url: str) -> dict[str, Any]:
    """Measure one row in a fresh subprocess against the running emulator; return its figures."""
    vdir.mkdir(parents=True)
    budget = scenario.budget if row.budget else None
    settings = FanoutSettings(
        base_url=base_url, api_key=API_KEY, interval=scenario.interval, deadline_s=scenario.deadline
    )
    config = {
        "variant": row.variant,
        "settings": asdict(settings),
        "work_dir": str(vdir),
        "targets_timeout": READY_TIMEOUT,
        "backoff_cap": scenario.backoff_cap,
    }
    child = MeasuredChild(
        str(Path(__file__).resolve()),
        vdir,
        config,
        _env(vdir, base_url, budget),
        label=_label(row, scenario),
        ready_timeout=READY_TIMEOUT,
    )
    try:
        child.wait_ready()
        # Submits meet no limit (only the polls are measured); the limit starts afresh after them.
        _admin(
            base_url,
            "POST",
            "config",
            {
                "clear_rate_limit": True,
                "generation_seconds": scenario.gen_min,
                "generation_seconds_max": scenario.gen_max,
            },
        )
        _admin(base_url, "POST", "reset")
        targets = asyncio.run(submit_generations(base_url, API_KEY, scenario.clips))
        created = {g["id"]: g for g in _admin(base_url, "GET", "ledger")["generations"]}
        if scenario.limited:
            _admin(
                base_url,
                "POST",
                "config",
                {
                    "limit_requests": scenario.limit_requests,
                    "limit_window_seconds": scenario.window,
                    "limit_lockout_seconds": scenario.lockout,
                    "limit_retry_after": row.retry_after,
                },
            )
        given = [{**asdict(t), "submitted_at": _wall(created[t.id]["created_at"])} for t in targets]
        child.give_targets(given)
        result = child.result(scenario.deadline + 240)
    finally:
        stop_process(child.proc)
    run = FanoutRun(**{k: v for k, v in result["run"].items() if k != "events"})
    run.events = {k: [(t, status) for t, status in v] for k, v in result["run"]["events"].items()}
    ledger = _admin(base_url, "GET", "ledger")
    ready = {g["id"]: _wall(g["created_at"]) + g["generation_seconds"] for g in ledger["generations"]}
    first_submit = min(_wall(g["created_at"]) for g in ledger["generations"])
    delivered = [
        events[0][0]
        for gen_id, events in run.events.items()
        if len(events) == 1 and events[0][1] == "success" and gen_id in ready
    ]
    latencies = [
        events[0][0] - ready[gen_id] for gen_id, events in run.events.items() if events and gen_id in ready
    ]
    polls = [r for r in ledger["requests"] if r["method"] == "GET" and r["path"] == GENERATE_PATH]
    limited = ledger["rate_limit"]
    return {
        "clips": scenario.clips,
        "requests": len(polls),
        "429s": sum(1 for r in polls if r["status"] == 429),
        "limit_429s": limited["requests_limited"],
        "lockouts": limited["lockouts"],
        "requests_per_clip": len(polls) / scenario.clips,
        "latency_p50_s": _percentile(latencies, 50),
        "latency_p95_s": _percentile(latencies, 95),
        "latency_max_s": max(latencies, default=math.nan),
        "last_clip_s": max(delivered, default=math.nan) - first_submit,
        "cpu_ms_per_clip": result["cpu_s"] * 1000 / len(delivered) if delivered else math.nan,
        "delivered": len(delivered),
        "trigger_kwargs": result["trigger_kwargs"],
        "problems": check_run(run, targets),
    }


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if dirty else "")


def run_benchmark(
    rows: list[Row], scenarios: dict[str, Scenario], *, log: Any = print
) -> list[dict[str, Any]]:
    """Start the emulator, measure every row in turn, stop everything; one dict per row."""
    _raise_nofile()  # inherited by the emulator and the measured processes
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="stableaudio-bench-ratelimit-") as tmp:
        work = Path(tmp)
        emulator, base_url = start_emulator(work, 0)
        try:
            for number, row in enumerate(rows, 1):
                scenario = scenarios[row.scenario]
                log(f"  ({row.scenario}) {_label(row, scenario)}: {scenario.clips} clips ...", flush=True)
                started = time.monotonic()
                figures: dict[str, Any] = {"row": asdict(row), "scenario": asdict(scenario)}
                try:
                    figures.update(run_row(row, scenario, vdir=work / f"row-{number}", base_url=base_url))
                except RuntimeError as exc:
                    figures["problems"] = [str(exc)]
                figures["wall_s"] = time.monotonic() - started
                results.append(figures)
                if "requests" in figures:  # progress: a full run takes half an hour
                    log(
                        f"    {figures['requests']} requests, {figures['429s']} 429s, "
                        f"{figures['lockouts']} lockouts, {figures['delivered']}/{scenario.clips} delivered, "
                        f"last clip at {figures['last_clip_s']:.0f} s ({figures['wall_s']:.0f} s)",
                        flush=True,
                    )
        finally:
            stop_process(emulator)
    return results


def _label(row: Row, scenario: Scenario) -> str:
    if row.variant != "provider":
        return row.variant
    return f"provider, {f'budget {scenario.budget:g}/s' if row.budget else 'no budget'}"


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def cpu_against_to_thread(results: list[dict[str, Any]]) -> list[str]:
    """Each ``provider`` row's CPU per clip as a fraction of the same scenario's ``to_thread`` row's
    (issue 18 asks a fifth or less of scenario (c) with the budget configured)."""
    measured = [r for r in results if "cpu_ms_per_clip" in r]
    lines = []
    for base in (r for r in measured if r["row"]["variant"] == "to_thread"):
        scenario = base["row"]["scenario"]
        for r in measured:
            row = Row(**r["row"])
            if row.scenario == scenario and row.variant == "provider":
                ratio = r["cpu_ms_per_clip"] / base["cpu_ms_per_clip"]
                lines.append(
                    f"  ({scenario}) CPU per clip, {_label(row, Scenario(**r['scenario']))} against "
                    f"to_thread: {ratio:.2f}"
                )
    return [*lines, ""] if lines else []


def render(results: list[dict[str, Any]], *, commit: str, quick: bool) -> str:
    """The table, one line per row, then what each scenario was; plain text (Markdown-ready)."""
    header = (
        "| | variant | Retry-After | requests | 429s | lockouts | req/clip | after ready p50 / p95 / max s "
        "| last clip s | CPU ms/clip | delivered |"
    )
    lines = [f"Code measured: {commit}" + ("  (--quick sizes: indicative)" if quick else ""), "", header]
    lines.append("|---" * (header.count("|") - 1) + "|")
    for r in results:
        row, scenario = Row(**r["row"]), Scenario(**r["scenario"])
        ra = "yes" if row.retry_after else "no" if scenario.limited else "(no limit)"
        if "requests" not in r:
            lines.append(f"| ({row.scenario}) | {_label(row, scenario)} | {ra} | failed to run |||||||")
            continue
        delivered = f"{r['delivered']}/{r['clips']}" + ("" if not r["problems"] else " NO")
        lines.append(
            f"| ({row.scenario}) | {_label(row, scenario)} | {ra} | {r['requests']:,} | "
            f"{r['429s']:,} ({r['429s'] / max(1, r['requests']):.0%}) | {r['lockouts']} | "
            f"{r['requests_per_clip']:.2f} | {_fmt(r['latency_p50_s'], '.1f')} / "
            f"{_fmt(r['latency_p95_s'], '.1f')} / {_fmt(r['latency_max_s'], '.1f')} | "
            f"{_fmt(r['last_clip_s'], '.0f')} | {_fmt(r['cpu_ms_per_clip'], '.2f')} | {delivered} |"
        )
    lines.append("")
    lines.extend(cpu_against_to_thread(results))
    seen: set[str] = set()
    for r in results:
        scenario = Scenario(**r["scenario"])
        if scenario.name in seen:
            continue
        seen.add(scenario.name)
        limit = (
            f"the key held to {scenario.limit_requests} requests per {scenario.window:g} s, "
            f"{scenario.lockout:g} s lockout"
            if scenario.limited
            else "no limit"
        )
        lines.append(
            f"  ({scenario.name}) {scenario.clips} clips of {scenario.gen_min:g}-{scenario.gen_max:g} s, "
            f"poll_interval={scenario.interval:g}, {limit}"
        )
    kwargs = {", ".join(r["trigger_kwargs"]) for r in results if r.get("trigger_kwargs")}
    if kwargs:
        lines.append(f"  the provider's trigger was given: {'; '.join(sorted(kwargs))}")
    lines.extend(f"  {name}: {text}" for name, text in VARIANTS.items())
    problems = [(r, p) for r in results for p in r["problems"]]
    if problems:
        lines += ["", "Problems:"]
        lines.extend(f"  ({r['row']['scenario']}) {r['row']['variant']}: {p}" for r, p in problems)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer clips, shorter times (about 2 minutes)")
    parser.add_argument("--scenarios", default="a,b,c", help="comma separated (default: a,b,c)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma separated (default: all)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child)
    names = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    variants = {v.strip() for v in args.variants.split(",") if v.strip()}
    if not names <= set(SCENARIOS) or not variants <= set(VARIANTS):
        parser.error(f"scenarios are {', '.join(SCENARIOS)}; variants are {', '.join(VARIANTS)}")
    scenarios = {name: s.scaled(*QUICK[name]) if args.quick else s for name, s in SCENARIOS.items()}
    rows = [row for row in ROWS if row.scenario in names and row.variant in variants]
    commit = _commit()
    print(
        f"== rate limit: {len(rows)} rows, code {commit}" + (" (--quick)" if args.quick else ""), flush=True
    )
    started = time.monotonic()
    results = run_benchmark(rows, scenarios)
    print(render(results, commit=commit, quick=args.quick))
    print(f"\n  wall time {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"commit": commit, "rows": results}, indent=2))
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
