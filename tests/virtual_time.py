"""An asyncio event loop on a virtual clock: when nothing is ready, time jumps to the next timer.

Thousands of waits over minutes of their time run in a fraction of a second of ours, and what they
measure is the schedule, not the machine. The code under test gets the same clock as its ``time``
(:class:`VirtualClock`, set as the ``time`` of its modules): ``time.time()`` and
``time.monotonic()`` both read the loop's clock.
No threads: a worker thread's result would not wake a loop whose clock jumps.
"""

from __future__ import annotations

import asyncio
import selectors

START = 1_000_000.0
TURN = 1e-6
DAY = 86_400.0


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.clock: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if self.clock is not None:
            if timeout is None and not events:
                raise RuntimeError("every coroutine waits, and for nothing that the clock can bring")
            if timeout is not None and timeout > DAY:
                raise RuntimeError("the virtual clock would jump a day: every wait is stuck")
            # Each turn of the loop costs a microsecond, as a real one does: code that waits out a
            # rounding error (a token bucket's) would otherwise spin on a clock that never moves.
            self.clock.now += TURN if events or not timeout else max(timeout, TURN)
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual seconds from :data:`START`."""

    def __init__(self) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.clock = self
        self.now = START

    def time(self) -> float:
        return self.now


class VirtualClock:
    """Stands in for the ``time`` module: reads ``loop``'s clock."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop

    def time(self) -> float:
        return self._loop.now

    def monotonic(self) -> float:
        return self._loop.now

    def sleep(self, seconds: float) -> None:
        raise AssertionError(f"a blocking sleep of {seconds}s on the virtual clock: nothing may block")
