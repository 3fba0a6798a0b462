"""Loaded by the real-stack tier's triggerers only (their PYTHONPATH), and only does anything under
``PYTHONASYNCIODEBUG``: asyncio's debug mode names the task of any callback that holds the event loop
for more than 50 ms (its default is 100 ms), and this says what that callback was doing.

The triggerer's own watchdog says that the loop was blocked, never by what; asyncio's debug mode says
by which task (a trigger's task is named after its task instance: "dag/run/task/map/try (ID n)"), not
by which code: a trigger's task runs Airflow's wrapper (``TriggerRunner.run_trigger``) around the
trigger's ``run()``. So, in every process of the triggerer:

* each event-loop callback records when it started (``asyncio.events.Handle._run``, wrapped);
* a daemon thread looks every 5 ms, and while a callback has run for over 5 ms it samples the loop
  thread's stack (``sys._current_frames``) and its CPU clock;
* a callback that ran over 50 ms is written, once, as one JSON line to
  ``$STACK_LOOP_STALL_DIR/stalls-<pid>.jsonl``: how long it took, the callback, how the loop thread
  spent that time by the kernel's count (``/proc/.../schedstat``: on a CPU; runnable but waiting for
  one, i.e. starved; neither, i.e. blocked in a system call or waiting for the GIL), the distinct
  stacks sampled with their counts (innermost frame last) and what the process's other threads were
  doing meanwhile, and the garbage collections that ran meanwhile, in any thread (a collection holds
  the GIL: the loop waits for it);
* a garbage collection that took over 50 ms is written too (``"kind": "collection"``), stall or not;
* a synchronous supervisor call made on a thread that runs an event loop (``TriggerCommsDecoder.send``:
  what ``Connection.extra_dejson`` or the synchronous ``mask_secret`` do from a trigger) is written
  too (``"kind": "sync_send"``), with the caller's stack: Airflow raises ``DeadlockImminentError``
  there on some releases, and blocks or teleports the call on others; a trigger must never make it.

The tier's component-log scenario reads these files (tests/system/test_real_stack.py).
"""

from __future__ import annotations

import os

if os.environ.get("PYTHONASYNCIODEBUG"):
    import asyncio.base_events
    import asyncio.events
    import collections
    import contextlib
    import gc
    import json
    import sys
    import threading
    import time
    from typing import Any

    asyncio.base_events.BaseEventLoop.slow_callback_duration = 0.05

    STALL = 0.05  # what asyncio's debug mode reports (above)
    SAMPLE_AFTER = 0.005
    PERIOD = 0.005
    MAX_DEPTH = 60
    _folder = os.environ.get("STACK_LOOP_STALL_DIR", "")

    class _Slot:
        """One callback on one thread, while it runs; the sampler fills ``samples`` and ``others``."""

        __slots__ = ("handle", "name", "others", "samples", "sched", "started")

        def __init__(self, handle: Any, sched: bytes) -> None:
            self.handle = handle
            self.started = time.monotonic()
            self.sched = sched
            self.samples: dict[tuple[str, ...], int] = {}
            self.others: dict[str, int] = {}
            self.name = ""

    _running: dict[int, _Slot] = {}  # thread ident -> the callback it runs
    _finished: list[tuple[_Slot, float, bytes, str]] = []
    _schedstat: dict[int, int] = {}  # thread ident -> open /proc/self/task/<tid>/schedstat
    _task_fds: dict[int, int] = {}  # native thread id -> the same, for the sampler's CPU readings
    # (monotonic, {native thread id: ns on a CPU}) every PERIOD, and the garbage collections
    _cpu_readings: collections.deque[tuple[float, dict[int, int]]] = collections.deque(maxlen=4000)
    _collections: collections.deque[tuple[float, float, int, str, float]] = collections.deque(maxlen=400)
    _gc_started: dict[int, tuple[float, float]] = {}
    _long_collections: list[tuple[float, int, str]] = []
    _state = {"sampler": False}
    _original_run = asyncio.events.Handle._run

    def _frames(frame: Any) -> tuple[str, ...]:
        stack: list[str] = []
        while frame is not None and len(stack) < MAX_DEPTH:
            code = frame.f_code
            stack.append(f"{code.co_filename}:{frame.f_lineno} {code.co_name}")
            frame = frame.f_back
        return tuple(reversed(stack))

    def _sched(ident: int) -> bytes:
        """The kernel's "ns on a CPU, ns runnable but waiting for one, slices" of this thread."""
        fd = _schedstat.get(ident)
        if fd is None:
            try:
                fd = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY)
            except OSError:
                fd = -1
            _schedstat[ident] = fd
        if fd < 0:
            return b""
        try:
            return os.pread(fd, 64, 0)
        except OSError:
            return b""

    def _read_cpu() -> None:
        """Every thread's CPU time now (so a stall's report can say which thread had the CPU)."""
        reading: dict[int, int] = {}
        try:
            tids = {int(tid) for tid in os.listdir("/proc/self/task")}
        except OSError:
            return
        for tid in list(_task_fds):
            if tid not in tids:
                with contextlib.suppress(OSError):
                    os.close(_task_fds.pop(tid))
        for tid in tids:
            fd = _task_fds.get(tid)
            try:
                if fd is None:
                    fd = _task_fds[tid] = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
                reading[tid] = int(os.pread(fd, 64, 0).split()[0])
            except (OSError, ValueError, IndexError):
                continue
        _cpu_readings.append((time.monotonic(), reading))

    def _cpu_by_thread(start: float, end: float) -> dict[str, float]:
        before = next((r for t, r in reversed(_cpu_readings) if t <= start), None)
        after = next((r for t, r in _cpu_readings if t >= end), None)
        if before is None or after is None:
            return {}
        names = {t.native_id: t.name for t in threading.enumerate()}
        spent = {
            names.get(tid, f"thread {tid}"): round((after[tid] - before.get(tid, 0)) / 1e9, 3)
            for tid in after
        }
        return {
            name: seconds for name, seconds in sorted(spent.items(), key=lambda x: -x[1]) if seconds >= 0.005
        }

    def _on_gc(phase: str, info: dict[str, Any]) -> None:
        ident = threading.get_ident()
        if phase == "start":
            _gc_started[ident] = (time.monotonic(), time.thread_time())
        elif ident in _gc_started:
            (started, cpu), ended = _gc_started.pop(ident), time.monotonic()
            who, generation = threading.current_thread().name, info.get("generation", -1)
            _collections.append((started, ended, generation, who, time.thread_time() - cpu))
            if ended - started > STALL:
                _long_collections.append((ended - started, generation, who))

    def _write(record: dict[str, Any]) -> None:
        if not _folder:
            return
        record = {"pid": os.getpid(), **record}
        os.makedirs(_folder, exist_ok=True)
        with (
            contextlib.suppress(OSError),
            open(os.path.join(_folder, f"stalls-{os.getpid()}.jsonl"), "a") as out,
        ):
            out.write(json.dumps(record) + "\n")

    def _report(slot: _Slot, ended: float, sched: bytes, thread: str) -> None:
        took = ended - slot.started
        time_split: dict[str, float] = {}
        try:
            (run0, wait0), (run1, wait1) = (list(map(int, raw.split()[:2])) for raw in (slot.sched, sched))
        except ValueError:
            pass
        else:
            on_cpu, runnable = (run1 - run0) / 1e9, (wait1 - wait0) / 1e9
            time_split = {
                "on_cpu": round(on_cpu, 3),
                "waiting_for_a_cpu": round(runnable, 3),
                "blocked_or_waiting_for_the_gil": round(max(0.0, took - on_cpu - runnable), 3),
            }
        collections_during = [
            {
                "generation": gen,
                "seconds": round(t1 - t0, 3),
                "cpu_seconds": round(cpu, 3),
                "thread": who,
                "at": round(t0 - slot.started, 3),
            }
            for t0, t1, gen, who, cpu in list(_collections)
            if t1 > slot.started and t0 < ended and t1 - t0 >= 0.001
        ]
        stacks = sorted(slot.samples.items(), key=lambda item: -item[1])
        others = sorted(slot.others.items(), key=lambda item: -item[1])
        with contextlib.suppress(Exception):
            slot.name = slot.name or asyncio.base_events._format_handle(slot.handle)[:400]  # type: ignore[attr-defined]
        _write(
            {
                "kind": "stall",
                "took": round(took, 3),
                "thread": thread,
                "callback": slot.name,
                "seconds": time_split,
                "cpu_by_thread": _cpu_by_thread(slot.started, ended),
                "garbage_collections": collections_during,
                "load": [round(x, 2) for x in os.getloadavg()],
                "samples": sum(slot.samples.values()),
                "stacks": [{"count": count, "frames": list(frames)} for frames, count in stacks[:8]],
                "other_threads": [{"count": count, "where": where} for where, count in others[:8]],
            }
        )

    def _sample_forever() -> None:
        me = threading.get_ident()
        while True:
            time.sleep(PERIOD)
            _read_cpu()
            while _finished:
                _report(*_finished.pop(0))
            while _long_collections:
                took, generation, who = _long_collections.pop(0)
                _write(
                    {
                        "kind": "collection",
                        "took": round(took, 3),
                        "generation": generation,
                        "thread": who,
                        # Not len(gc.get_objects()): that list holds a reference to every object for a
                        # moment, and another thread's tuple(generator) then fails to resize its tuple
                        # ("SystemError: Objects/tupleobject.c:927: bad argument to internal function").
                        "objects_per_generation": gc.get_count(),
                    }
                )
            now = time.monotonic()
            busy = [
                (ident, slot) for ident, slot in list(_running.items()) if now - slot.started > SAMPLE_AFTER
            ]
            if not busy:
                continue
            frames = sys._current_frames()
            for ident, slot in busy:
                frame = frames.get(ident)
                if frame is None or _running.get(ident) is not slot:
                    continue
                if not slot.name:
                    with contextlib.suppress(Exception):
                        slot.name = asyncio.base_events._format_handle(slot.handle)[:400]  # type: ignore[attr-defined]
                stack = _frames(frame)
                slot.samples[stack] = slot.samples.get(stack, 0) + 1
                for other, other_frame in frames.items():
                    if other not in (ident, me):
                        where = " <- ".join(reversed(_frames(other_frame)[-4:]))
                        slot.others[where] = slot.others.get(where, 0) + 1
            del frames

    def _start() -> None:
        _state["sampler"] = True
        threading.Thread(target=_sample_forever, name="loop-stall-sampler", daemon=True).start()
        _watch_sync_sends()

    def _after_fork() -> None:  # the trigger runner is a fork of the triggerer: no thread survives it
        _state["sampler"] = False
        _running.clear()
        _finished.clear()
        _cpu_readings.clear()
        _gc_started.clear()
        _long_collections.clear()
        for fd in [*_schedstat.values(), *_task_fds.values()]:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        _schedstat.clear()
        _task_fds.clear()

    os.register_at_fork(after_in_child=_after_fork)
    gc.callbacks.append(_on_gc)

    def _run(self: asyncio.events.Handle) -> None:
        if not _state["sampler"]:
            _start()
        ident = threading.get_ident()
        slot = _Slot(self, _sched(ident))
        outer = _running.get(ident)
        _running[ident] = slot
        try:
            _original_run(self)
        finally:
            ended = time.monotonic()
            if outer is None:
                _running.pop(ident, None)
            else:
                _running[ident] = outer
            if ended - slot.started > STALL:
                _finished.append((slot, ended, _sched(ident), threading.current_thread().name))

    asyncio.events.Handle._run = _run  # type: ignore[method-assign]

    def _watch_sync_sends() -> None:
        """Record every synchronous supervisor call made on an event loop's thread, once loaded."""
        module = sys.modules.get("airflow.jobs.triggerer_job_runner")
        decoder = getattr(module, "TriggerCommsDecoder", None)
        if decoder is None or getattr(decoder.send, "_stall_watch", False):
            return
        original_send = decoder.send

        def send(self: Any, msg: Any) -> Any:
            if asyncio.events._get_running_loop() is not None:
                _write(
                    {
                        "kind": "sync_send",
                        "message": type(msg).__name__,
                        "thread": threading.current_thread().name,
                        "frames": list(_frames(sys._getframe(1))),
                    }
                )
            return original_send(self, msg)

        send._stall_watch = True  # type: ignore[attr-defined]
        decoder.send = send
