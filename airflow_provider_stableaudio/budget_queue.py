"""Hands a key's request slots to the coroutines of one event loop, the most urgent first.

A triggerer runs thousands of waits on one loop, all spending one key's budget
(:mod:`.request_budget`). Each wait asks for a slot with a priority (the provider's polls: the time
the poll fell due, so the one overdue longest goes first); one dispatcher per key and loop hands
the slots out as the budget frees them, and sleeps otherwise: waiting costs no wake-ups per waiter.
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

    :param budget: the key's budget in this process (shared with synchronous callers, if any).
    """

    def __init__(self, budget: KeyBudget) -> None:
        self.budget = budget
        self._waiters: list[tuple[float, int, asyncio.Future[Slot]]] = []
        self._order = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None
        self._sleep: asyncio.Future[None] | None = None  # the dispatcher's, while it sleeps

    async def take(self, priority: float) -> Slot:
        """Wait for a slot; lower ``priority`` first (ties: first come). Cancelled, it takes none."""
        if not self._waiters:
            # Nobody waits: a slot free now goes without the dispatcher's two turns of the loop.
            granted = self.budget.take(time.monotonic())
            if isinstance(granted, Slot):
                return granted
        future: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), future))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch())
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.budget.unanswered(future.result())  # granted as it was cancelled: give it back
            raise

    def answered(self, slot: Slot, *, limited: bool, retry_after: float | None) -> float:
        """Record an answer (see :meth:`KeyBudget.answered`); the dispatcher looks again when it
        changed the budget (a probe's answer, a 429, a higher rate), not after every answer."""
        rate = self.budget.rate
        paused = self.budget.answered(slot, time.monotonic(), limited=limited, retry_after=retry_after)
        if slot.probe or limited or self.budget.rate > rate:
            self._wake()
        return paused

    def unanswered(self, slot: Slot) -> None:
        self.budget.unanswered(slot)
        if slot.probe:
            self._wake()

    async def _dispatch(self) -> None:
        try:
            while self._waiters:
                if self._waiters[0][2].done():  # cancelled while waiting
                    heapq.heappop(self._waiters)
                    continue
                granted = self.budget.take(time.monotonic())
                if isinstance(granted, Slot):
                    heapq.heappop(self._waiters)[2].set_result(granted)
                    continue
                await self._until_changed(granted)
        finally:
            # A finished task keeps its loop alive, and with it this queue's entry in _QUEUES.
            self._dispatcher = None

    async def _until_changed(self, timeout: float) -> None:
        """Sleep ``timeout`` seconds, or less if an answer changes the budget (a probe's, say).
        A future and a timer: no task per sleep, as ``wait_for`` would make."""
        loop = asyncio.get_running_loop()
        self._sleep = loop.create_future()
        timer = loop.call_later(timeout, self._wake)
        try:
            await self._sleep
        finally:
            timer.cancel()
            self._sleep = None

    def _wake(self) -> None:
        if self._sleep is not None and not self._sleep.done():
            self._sleep.set_result(None)


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
