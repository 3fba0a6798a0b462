"""The rate-limit benchmark's own logic, at a small size: correctness only, never speed.

``benchmarks/rate_limit.py`` measures today's per-trigger polling against the provider; these tests
check that its reproduction of the old policy waits as that policy did, that ``--quick`` keeps the
limit binding as hard, and that the per-trigger loop delivers every clip through 429s and lockouts.
"""

from __future__ import annotations

import random
from dataclasses import asdict

import pytest

from benchmarks.rate_limit import SCENARIOS, Scenario, _Waits, old_poll_delay, run_waits
from benchmarks.trigger_fanout import FanoutSettings, check_run, submit_generations
from tests.conftest import API_KEY


def test_the_old_poll_delay_waits_out_retry_after_and_caps_its_own_backoff() -> None:
    random.seed(7)
    for failures in range(1, 12):
        told = old_poll_delay(2, failures=failures, retry_after=60, remaining=600, cap=60)
        own = old_poll_delay(2, failures=failures, retry_after=None, remaining=600, cap=5)
        assert told is not None
        assert told >= 60
        assert own is not None
        assert own <= 5
    steady = old_poll_delay(2, failures=0, retry_after=None, remaining=600, cap=60)
    assert steady is not None
    assert 1.8 <= steady <= 2
    assert old_poll_delay(2, failures=1, retry_after=60, remaining=30, cap=60) is None
    assert old_poll_delay(2, failures=0, retry_after=None, remaining=0, cap=60) is None


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_quick_sizes_keep_the_limit_binding_as_hard(name: str) -> None:
    full = SCENARIOS[name]
    quick = full.scaled(0.1, 0.05)

    def demand_over_limit(s: Scenario) -> float:
        return (s.clips / s.interval) / (s.limit_requests / s.window)

    def budget_over_limit(s: Scenario) -> float:
        return s.budget / (s.limit_requests / s.window)

    assert demand_over_limit(quick) == pytest.approx(demand_over_limit(full))
    assert budget_over_limit(quick) == pytest.approx(budget_over_limit(full))
    assert quick.lockout / quick.interval == pytest.approx(full.lockout / full.interval)


@pytest.mark.asyncio
async def test_the_per_trigger_loop_delivers_every_clip_through_lockouts(connection) -> None:
    connection.set_generation_seconds(0.2, generation_seconds_max=0.6)
    targets = await submit_generations(connection.base_url, API_KEY, 20, concurrency=8)
    connection.set_rate_limit(
        limit_requests=10, limit_window_seconds=0.5, limit_lockout_seconds=0.5, limit_retry_after=True
    )
    settings = FanoutSettings(base_url=connection.base_url, api_key=API_KEY, interval=0.05, deadline_s=60)
    waits = _Waits({"variant": "per_trigger", "settings": asdict(settings), "backoff_cap": 1.0})
    await waits.open()
    try:
        await run_waits(waits, targets)
    finally:
        await waits.close()

    assert check_run(waits.run, targets) == []
    assert connection.ledger()["rate_limit"]["requests_limited"] > 0  # the limit was met, and got past


def test_each_provider_row_is_set_against_the_to_thread_row_of_its_own_scenario() -> None:
    from benchmarks.rate_limit import Row, cpu_against_to_thread

    def result(row: Row, cpu: float) -> dict[str, object]:
        return {"row": asdict(row), "scenario": asdict(SCENARIOS[row.scenario]), "cpu_ms_per_clip": cpu}

    lines = cpu_against_to_thread(
        [
            result(Row("c", "provider", budget=True), 2.0),
            result(Row("c", "to_thread"), 10.0),
            result(Row("c", "provider"), 4.0),
            result(Row("b", "provider", budget=True), 9.0),  # no to_thread row in (b): not compared
        ]
    )

    assert lines == [
        "  (c) CPU per clip, provider, budget 14/s against to_thread: 0.20",
        "  (c) CPU per clip, provider, no budget against to_thread: 0.40",
        "",
    ]
