"""A clock for the synchronous paths that sleeps without waiting: tests see every wait, and wait none."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_stableaudio import budget_queue


class FakeClock:
    """Stands in for the ``time`` module of the code under test; ``sleeps`` records each wait."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def fake_clock(monkeypatch: pytest.MonkeyPatch, *modules: object) -> FakeClock:
    """Give each of ``modules`` a :class:`FakeClock` as its ``time``; return it."""
    clock = FakeClock()
    for module in modules:
        monkeypatch.setattr(module, "time", clock)
    return clock


def budget_queue_on(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    """Make the key's budget queue read ``clock`` and wait on it: a wait for slots moves the clock
    (at least a millisecond, as a real loop's timer: a clock at a million seconds does not move for
    the rounding-error waits a token bucket may ask for), then the queue looks again."""

    def later(queue: budget_queue.BudgetQueue, seconds: float) -> asyncio.Handle:
        clock.sleep(max(seconds, 0.001))
        return asyncio.get_running_loop().call_soon(queue._hand_out)

    monkeypatch.setattr(budget_queue, "time", clock)
    monkeypatch.setattr(budget_queue.BudgetQueue, "_later", later)
