"""One key's request budget per process (pure: every call is given the time)."""

from __future__ import annotations

import itertools

import pytest

from airflow_provider_stableaudio.request_budget import (
    BURST_SECONDS,
    FIRST_PAUSE,
    MIN_RATE,
    PROBE_PATIENCE,
    KeyBudget,
    Slot,
    budget_for,
)
from airflow_provider_stableaudio.services import AIMLAPI, SERVICES, STABILITY

pytestmark = pytest.mark.default_budget  # these tests are of the budget itself

KEY = "sk-budget-secret-0123456789"


def budget(max_rate: float | None = 10.0, lockout: float | None = None) -> KeyBudget:
    return KeyBudget(label="key test at api", max_rate=max_rate, lockout_seconds=lockout)


def send_all(budget: KeyBudget, start: float, end: float) -> list[tuple[float, Slot]]:
    """Take every slot the budget gives between ``start`` and ``end``, answered 200 at once."""
    now, sent = start, []
    while now < end:
        granted = budget.take(now)
        if isinstance(granted, Slot):
            sent.append((now, granted))
            budget.answered(granted, now, limited=False)
        else:
            now += granted
    return sent


def test_one_budget_per_host_and_key_shared_by_every_connection_of_the_key() -> None:
    aimlapi = SERVICES[AIMLAPI]
    first = budget_for("https://api.aimlapi.com", KEY, max_rate=None, service=aimlapi)
    assert budget_for("https://API.aimlapi.com/", KEY, max_rate=None, service=aimlapi) is first
    assert budget_for("https://api.aimlapi.com", KEY + "x", max_rate=None, service=aimlapi) is not first
    assert budget_for("https://other.example", KEY, max_rate=None, service=aimlapi) is not first
    # A second connection of the key with a lower figure lowers the shared one.
    assert budget_for("https://api.aimlapi.com", KEY, max_rate=3, service=aimlapi).max_rate == 3
    assert first.rate == 3


def test_the_key_is_never_in_the_budgets_name() -> None:
    named = budget_for("https://api.stability.ai", KEY, max_rate=None, service=SERVICES[STABILITY])
    assert KEY not in named.label
    assert KEY[-8:] not in named.label
    assert named.label.startswith("key ")
    assert named.label.endswith(" at api.stability.ai")


def test_each_service_has_its_default_rate() -> None:
    stability = budget_for("https://api.stability.ai", KEY, max_rate=None, service=SERVICES[STABILITY])
    aimlapi = budget_for("https://api.aimlapi.com", KEY, max_rate=None, service=SERVICES[AIMLAPI])
    assert stability.max_rate == 10
    assert stability.lockout_seconds == 60
    assert aimlapi.max_rate is None  # none documented: adapts


@pytest.mark.parametrize("rate", [14.0, 2.5, 0.5])
def test_no_window_ever_holds_more_requests_than_the_rate_allows(rate: float) -> None:
    sent = [when for when, _ in send_all(budget(rate), 0.0, 60.0)]
    window = 10.0
    most = max(sum(1 for t in sent if start <= t < start + window) for start in sent)
    assert most <= rate * window + 1
    assert len(sent) >= rate * 60 - 1  # and the budget is used


@pytest.mark.parametrize(("rate", "at_once"), [(400.0, 100), (10.0, 2), (3.0, 1)])
def test_a_quarter_second_of_the_rate_may_go_in_one_turn_of_the_loop(rate: float, at_once: int) -> None:
    """Waking a loop once per request costs a triggerer more than the requests: up to 0.25 s of the
    rate goes together (one request at a time below 4 a second)."""
    keyed = budget(max_rate=rate)
    assert isinstance(keyed.take(0.0), Slot)
    granted = 0
    while isinstance(keyed.take(1.0), Slot):
        granted += 1
    assert granted == at_once


def test_a_429_pauses_every_request_of_the_key_for_the_services_lockout() -> None:
    stability = budget(lockout=60)
    slot = stability.take(0.0)
    assert isinstance(slot, Slot)
    assert stability.answered(slot, 0.1, limited=True) == pytest.approx(60.0)
    assert stability.take(30.0) == pytest.approx(30.1)  # every caller: the key is paused
    assert isinstance(stability.take(60.2), Slot)


def test_a_retry_after_sets_the_pause() -> None:
    keyed = budget(lockout=60)
    slot = keyed.take(0.0)
    assert isinstance(slot, Slot)
    assert keyed.answered(slot, 0.0, limited=True, retry_after=7) == pytest.approx(7.0)


def test_after_a_pause_one_probe_goes_first_and_the_rest_wait_for_its_answer() -> None:
    keyed = budget(max_rate=10, lockout=5)
    send_all(keyed, -10.0, -0.1)  # ten seconds at its rate
    slot = keyed.take(0.0)
    assert isinstance(slot, Slot)
    keyed.answered(slot, 0.0, limited=True)
    probe = keyed.take(5.0)
    assert isinstance(probe, Slot)
    assert probe.probe
    assert not isinstance(keyed.take(5.5), Slot)  # held for the probe's answer
    assert not isinstance(keyed.take(5.5 + PROBE_PATIENCE / 2), Slot)
    keyed.answered(probe, 6.0, limited=False)
    after = send_all(keyed, 6.0, 16.0)
    # Resumed at half the rate that was refused (5 a second, creeping up 0.5 every 5 s while
    # callers wait), spread out: below 8 a second the burst holds under two requests.
    assert 45 <= len(after) <= 56
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(after)]
    assert min(gaps) >= (2 - 6.5 * BURST_SECONDS) / 6.5  # never two at once, at the grown rate


def test_a_probe_that_never_answers_does_not_hold_the_key_forever() -> None:
    keyed = budget(lockout=1)
    slot = keyed.take(0.0)
    assert isinstance(slot, Slot)
    keyed.answered(slot, 0.0, limited=True)
    assert isinstance(keyed.take(1.0), Slot)  # the probe, lost
    assert not isinstance(keyed.take(2.0), Slot)
    assert isinstance(keyed.take(1.0 + PROBE_PATIENCE), Slot)


def test_a_failed_probe_lets_the_next_request_probe() -> None:
    keyed = budget(lockout=1)
    send_all(keyed, -10.0, -0.1)
    slot = keyed.take(0.0)
    assert isinstance(slot, Slot)
    keyed.answered(slot, 0.0, limited=True)
    probe = keyed.take(1.0)
    assert isinstance(probe, Slot)
    assert probe.probe
    keyed.unanswered(probe)  # a network error: no answer
    second = keyed.take(2.0)
    assert isinstance(second, Slot)
    assert second.probe


def test_429s_to_requests_sent_before_the_pause_do_not_halve_the_rate_again() -> None:
    keyed = budget(max_rate=10, lockout=5)
    send_all(keyed, -10.0, -0.1)
    in_flight = [keyed.take(t / 10) for t in range(5)]
    assert all(isinstance(slot, Slot) for slot in in_flight)
    for slot in in_flight:
        assert isinstance(slot, Slot)
        keyed.answered(slot, 0.5, limited=True)
    assert keyed.rate == pytest.approx(5, rel=0.02)  # halved once, not five times
    assert keyed.paused_for(0.5) == pytest.approx(5.0)


def test_without_a_documented_lockout_pauses_double_from_one_second() -> None:
    keyed = budget(lockout=None)
    now, pauses = 0.0, []
    for _ in range(8):
        slot = keyed.take(now)
        assert isinstance(slot, Slot)
        pauses.append(keyed.answered(slot, now, limited=True))
        now += pauses[-1]
    assert pauses == [FIRST_PAUSE * 2**n for n in range(6)] + [60.0, 60.0]
    slot = keyed.take(now)
    assert isinstance(slot, Slot)
    keyed.answered(slot, now, limited=False)
    slot = keyed.take(now + 10)
    assert isinstance(slot, Slot)
    assert keyed.answered(slot, now + 10, limited=True) == FIRST_PAUSE  # a success restarts the count


def test_without_a_figure_the_rate_doubles_while_used_until_a_429_then_creeps() -> None:
    keyed = budget(max_rate=None, lockout=1)
    start = keyed.rate
    send_all(keyed, 0.0, 7.0)
    assert keyed.rate == 8 * start  # doubled every 2 s while every slot was taken
    now = 7.0 + 1.0 / keyed.rate  # the next slot's time
    slot = keyed.take(now)
    assert isinstance(slot, Slot)
    sent_rate = keyed.sent / 7.0
    keyed.answered(slot, now, limited=True)
    # Halved from what was sent over the last window, not from the budget's own figure.
    assert keyed.rate == pytest.approx(sent_rate / 2, rel=0.05)
    halved = keyed.rate
    send_all(keyed, 8.0, 60.0)
    assert halved < keyed.rate < halved * 2  # slowly now: a step every 5 s
    send_all(keyed, 60.0, 600.0)
    assert keyed.rate <= 0.9 * sent_rate + 1e-9  # never back to what was refused, for ten minutes


def test_an_unused_budget_does_not_grow() -> None:
    keyed = budget(max_rate=None)
    now = 0.0
    for _ in range(30):  # one request a second: far below the rate
        slot = keyed.take(now)
        assert isinstance(slot, Slot)
        keyed.answered(slot, now, limited=False)
        now += 1.0
    assert keyed.rate == 10.0


def test_the_rate_never_drops_below_the_floor() -> None:
    keyed = budget(max_rate=1, lockout=0.5)
    now = 0.0
    for _ in range(20):
        slot = keyed.take(now)
        if isinstance(slot, Slot):
            keyed.answered(slot, now, limited=True)
            keyed.answered(slot, now, limited=False)  # the probe's place freed
        now += 30
    assert keyed.rate >= MIN_RATE


def test_an_event_loop_that_ended_leaves_no_queue_or_planner_behind() -> None:
    # Per-loop state is kept by loop, weakly: a loop that ends (a test's, a restarted triggerer's)
    # must take its queue and planner with it. A finished dispatcher task kept every loop alive,
    # and a queue's timer would, left behind by waiters cancelled as the loop ends.
    import asyncio
    import gc
    import weakref

    from airflow_provider_stableaudio import budget_queue, poll_planner

    shared = budget(max_rate=1000.0)
    slow_budget = budget(max_rate=0.01)
    group = ("aimlapi", "stable-audio", 1)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def a_loops_work() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        queue = budget_queue.queue_for(shared)
        await asyncio.gather(*(queue.take(0.0) for _ in range(20)))  # more than a burst: queued
        slow = budget_queue.queue_for(slow_budget)
        for _ in range(3):  # still waiting when the loop ends: cancelled by asyncio.run
            asyncio.get_running_loop().create_task(slow.take(0.0))
        await asyncio.sleep(0)
        plan = poll_planner.planner()
        plan.join(group, "g1")
        plan.finished(group, not_ready_at=1.0, ready_at=2.0)

    for _ in range(3):
        asyncio.run(a_loops_work())
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]  # gone, and their entries with them


def test_while_requests_wait_the_queue_wakes_once_for_several_slots() -> None:
    # Each wake of a triggerer's loop costs it more CPU than the request it lets go: while the
    # budget holds requests back, the queue waits until a few slots are free and hands them out
    # in one turn of the loop, at the same rate.
    import asyncio

    from airflow_provider_stableaudio import budget_queue
    from tests import virtual_time

    loop = virtual_time.VirtualTimeLoop()
    clock = virtual_time.VirtualClock(loop)
    keyed = budget(max_rate=14.0)
    granted_at: list[float] = []

    async def waiters() -> None:
        queue = budget_queue.queue_for(keyed)

        async def one(priority: float) -> None:
            slot = await queue.take(priority)
            granted_at.append(loop.time())
            queue.answered(slot, limited=False, retry_after=None)

        await asyncio.gather(*(one(float(n)) for n in range(43)))

    original = budget_queue.time
    budget_queue.time = clock  # type: ignore[assignment]
    try:
        loop.run_until_complete(waiters())
    finally:
        budget_queue.time = original
        loop.close()
    elapsed = granted_at[-1] - granted_at[0]
    assert 42 / 14 - 0.3 <= elapsed <= 42 / 14 + 0.3  # the rate, neither more nor less
    turns = len({round(t, 6) for t in granted_at})
    assert turns <= 16  # 3 at a time (a quarter second of 14 a second): not 43 wakes
