"""The trigger fan-out benchmark's logic at a small size: correctness only, never speed.

Fifty of this provider's triggers wait concurrently in one event loop, as in
``benchmarks/trigger_fanout.py`` (which measures the same code at N = 1,000 and 5,000).
"""

from __future__ import annotations

import math

import pytest

from benchmarks.trigger_fanout import (
    FanoutRun,
    FanoutSettings,
    Target,
    check_run,
    count_polls,
    run_fanout,
    submit_generations,
)
from tests.conftest import API_KEY

TRIGGERS = 50
SECONDS = 1.0
INTERVAL = 0.2


@pytest.mark.asyncio
async def test_every_trigger_fires_once_with_success_and_polls_stay_bounded(connection) -> None:
    connection.set_generation_seconds(SECONDS)
    targets = await submit_generations(connection.base_url, API_KEY, TRIGGERS, concurrency=16)
    settings = FanoutSettings(base_url=connection.base_url, api_key=API_KEY, interval=INTERVAL, deadline_s=30)

    run = await run_fanout("provider", targets, settings)

    assert check_run(run, targets) == []
    assert {t.id for t in targets} == set(run.events)
    ledger = connection.ledger()
    polls = {g["id"]: g["polls"] for g in ledger["generations"]}
    # A trigger polls from its start until it sees the generation completed, at most SECONDS after
    # its creation: at least once, and at most once per shortest (jittered) interval, plus the
    # first and the last poll. No retries happen: the emulator injects no faults here.
    most = math.ceil(SECONDS / (INTERVAL * 0.9)) + 2
    assert all(1 <= polls[t.id] <= most for t in targets), sorted(polls.values())
    assert count_polls(ledger, "provider", targets) == sum(polls[t.id] for t in targets)


def test_check_run_reports_missing_repeated_and_failed_events() -> None:
    targets = [Target(id=f"g-{i}") for i in range(4)]
    run = FanoutRun()
    run.record("g-0", "success")
    run.record("g-1", "success")
    run.record("g-1", "success")
    run.record("g-2", "timeout")
    run.fail("g-3: ClientError: boom")

    problems = check_run(run, targets)

    assert problems[0] == "1 errors, first: g-3: ClientError: boom"
    assert problems[1] == "generations by number of events (expected exactly 1 each): 1 with 0, 1 with 2"
    assert problems[2] == "events that are not success: {'timeout': 1}"
    complete = FanoutRun()
    for target in targets:
        complete.record(target.id, "success")
    assert check_run(complete, targets) == []
