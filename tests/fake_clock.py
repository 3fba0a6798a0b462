"""A clock for the synchronous paths that sleeps without waiting: tests see every wait, and wait none."""

from __future__ import annotations

import pytest


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
