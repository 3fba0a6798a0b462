"""The cost of a turn on a machine's shared schedule (``machine_schedule``): every request a process
sends with a key first takes one (``flock``, a read and a write of a small file), on the triggerer's
event loop too, so it must stay in microseconds. Also the cost with several processes taking turns at
once (each waits for the others' locks).

Usage::

    python benchmarks/machine_schedule.py            # 200,000 turns
    python benchmarks/machine_schedule.py --quick    # 20,000 turns
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from airflow_provider_stableaudio.machine_schedule import MachineSchedule


def _turns(directory: str, count: int) -> float:
    """Seconds per turn over ``count`` turns in this process (an interval of 0: every turn taken)."""
    schedule = MachineSchedule(directory, "bench")
    schedule.turn(time.monotonic(), 0.0)
    started = time.perf_counter()
    for _ in range(count):
        schedule.turn(time.monotonic(), 0.0)
    return (time.perf_counter() - started) / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 turns instead of 200,000")
    args = parser.parse_args(argv)
    count = 20_000 if args.quick else 200_000
    with tempfile.TemporaryDirectory() as folder:
        directory = str(Path(folder) / "schedules")
        alone = statistics.median(_turns(directory, count // 5) for _ in range(5))
        print(f"one process: {alone * 1e6:.1f} us per turn ({count:,} turns)")
        for processes in (2, 4):
            with multiprocessing.get_context("spawn").Pool(processes) as pool:
                each = pool.starmap(_turns, [(directory, count // processes)] * processes)
            print(f"{processes} processes at once: {max(each) * 1e6:.1f} us per turn (the slowest process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
