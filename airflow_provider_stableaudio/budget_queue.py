"""Hands a key's request slots to the coroutines of one event loop, the most urgent first.

A triggerer runs thousands of waits on one loop, all spending one key's budget
(:mod:`.request_budget`). Each wait asks for a slot with a priority (the provider's polls: the time
the poll fell due, so the one overdue longest goes first); one queue per key and loop hands
the slots out from a timer as the budget frees them: waiting costs no wake-ups per waiter.
No Airflow imports.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
import weakref

from airflow_provider_stableaudio.request_budget import KeyBudget, Slot


class BudgetQueue:
    """The waiters of one key on one event loop.

    Slots are handed out by a timer's callback, not a task: a slot freed by the budget reaches its
    waiter in the next turn of the loop (a dispatcher task would take one turn more). While the
    budget holds requests back, the timer waits for a few slots at once (see ``gather`` of
    :meth:`KeyBudget.take`): the loop then wakes once for several requests.

    :param budget: the key's budget in this process (shared with synchronous callers, if any).
    """

    def __init__(self, budget: KeyBudget) -> None:
        self.budget = budget
        self._waiters: list[tuple[float, int, asyncio.Future[Slot]]] = []
        self._order = itertools.count()
        self._timer: asyncio.Handle | None = None  # the next look, if any

    async def take(self, priority: float) -> Slot:
        """Wait for a slot; lower ``priority`` first (ties: first come). Cancelled, it takes none."""
        if not self._waiters:
            # Nobody waits: a slot free now goes at once.
            granted = self.budget.take(time.monotonic())
            if isinstance(granted, Slot):
                return granted
        future: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), future))
        if self._timer is None:
            self._hand_out()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.budget.unanswered(future.result())  # granted as it was cancelled: give it back
            self._drop_cancelled()
            raise

    def answered(self, slot: Slot, *, limited: bool, retry_after: float | None) -> float:
        """Record an answer (see :meth:`KeyBudget.answered`); the queue looks again when it changed
        the budget (a probe's answer, a 429, a higher rate), not after every answer."""
        rate = self.budget.rate
        paused = self.budget.answered(slot, time.monotonic(), limited=limited, retry_after=retry_after)
        if slot.probe or limited or self.budget.rate > rate:
            self._look_again()
        return paused

    def unanswered(self, slot: Slot) -> None:
        self.budget.unanswered(slot)
        if slot.probe:
            self._look_again()

    def _hand_out(self) -> None:
        """Give the waiters, most urgent first, the slots free now; look again when the next may be."""
        self._timer = None
        while self._waiters:
            if self._waiters[0][2].done():  # cancelled while waiting
                heapq.heappop(self._waiters)
                continue
            # A free slot goes now; with none free, the budget says when enough are for several
            # of the waiters (a burst's worth at most): one wake of the loop, several requests.
            granted = self.budget.take(time.monotonic(), gather=len(self._waiters))
            if isinstance(granted, Slot):
                heapq.heappop(self._waiters)[2].set_result(granted)
                continue
            self._timer = self._later(granted)
            return

    def _drop_cancelled(self) -> None:
        """Forget the cancelled waiters at the head; with none left, the timer too: a timer holds
        its loop, and this queue outlives the loop otherwise (a triggerer stopping cancels all)."""
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)
        if not self._waiters and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _later(self, seconds: float) -> asyncio.Handle:
        """Call :meth:`_hand_out` in ``seconds`` (tests with a clock of their own replace this)."""
        return asyncio.get_running_loop().call_later(seconds, self._hand_out)

    def _look_again(self) -> None:
        """An answer changed the budget (a pause, its end, a higher rate): look in the next turn."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_soon(self._hand_out)


_QUEUES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, BudgetQueue]] = (
    weakref.WeakKeyDictionary()
)


def queue_for(budget: KeyBudget) -> BudgetQueue:
    """The running loop's queue for ``budget``, made on first use."""
    queues = _QUEUES.setdefault(asyncio.get_running_loop(), {})
    queue = queues.get(id(budget))
    if queue is None or queue.budget is not budget:
        queue = queues[id(budget)] = BudgetQueue(budget)
    return queue
