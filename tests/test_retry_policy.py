"""The one retry policy: backoff, Retry-After, the deadline, and the sync and deferred waits sharing it."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path

import pytest

from airflow_provider_stableaudio import poll_planner, retry_policy
from airflow_provider_stableaudio.hooks import base as hook_module
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from airflow_provider_stableaudio.request_budget import forget_budgets
from airflow_provider_stableaudio.retry_policy import RetryPolicy, backoff_delay, poll_delay
from airflow_provider_stableaudio.triggers import stable_audio as trigger_module
from airflow_provider_stableaudio.triggers.stable_audio import StableAudioGenerationTrigger
from tests.fake_clock import FakeClock, budget_queue_on, fake_clock
from tests.scripted_server import Reply


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    assert all(0 <= backoff_delay(1, base=1) <= 1 for _ in range(50))
    assert all(0 <= backoff_delay(10, base=1, cap=5) <= 5 for _ in range(50))
    assert backoff_delay(1, base=1, retry_after=30) == 30
    assert max(backoff_delay(4, base=1) for _ in range(200)) > 1  # exponential: the range grew past base


def test_a_wait_never_runs_past_the_time_left() -> None:
    assert RetryPolicy().delay(1, retry_after=20, remaining=30) == 20
    assert RetryPolicy().delay(1, retry_after=120) == 120  # no deadline: Retry-After is obeyed
    # At least Retry-After, at most the third backoff (up to 4 intervals), within the time left.
    assert all(20 <= poll_delay(10, failures=3, retry_after=20, remaining=42) <= 40 for _ in range(50))  # type: ignore[operator]
    assert poll_delay(10, failures=3, remaining=12) <= 12


def test_no_retry_comes_before_the_server_said_when_the_deadline_is_nearer() -> None:
    # A try before Retry-After (or Stability's 60 s lockout) ends could only be refused, and a
    # refusal during a lockout may extend it: give up instead of trying at the deadline.
    assert RetryPolicy().delay(1, retry_after=600, remaining=30) is None
    assert RetryPolicy().delay(1, retry_after=60, remaining=59.9) is None
    assert poll_delay(10, failures=3, retry_after=600, remaining=42) is None


def test_the_policy_gives_up_after_max_retries_or_at_the_deadline() -> None:
    assert RetryPolicy(max_retries=2).delay(2) is not None
    assert RetryPolicy(max_retries=2).delay(3) is None
    assert RetryPolicy(max_retries=None).delay(50, remaining=1) == pytest.approx(1, abs=1)
    assert RetryPolicy().delay(1, remaining=0) is None
    assert poll_delay(10, remaining=0) is None


def test_polls_are_spread_but_never_later_than_asked() -> None:
    gaps = [poll_delay(10, remaining=100) for _ in range(200)]
    assert all(9 <= gap <= 10 for gap in gaps)  # type: ignore[operator]
    assert poll_delay(10, failures=1, retry_after=30, remaining=100) == 30


def test_sync_and_deferred_waits_follow_one_retry_policy(
    scripted, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same failures make the worker's wait and the trigger's wait pause for the same times:
    the backoff after 5xx, the interval between polls, and a 429's Retry-After, which pauses the
    key's budget (the trigger waits it out in the triggerer's queue for the key)."""
    highest = types.SimpleNamespace(uniform=lambda low, high: high)
    monkeypatch.setattr(retry_policy, "random", highest)
    monkeypatch.setattr(poll_planner, "random", highest)
    failures_then_done = (
        Reply(503, {"message": "maintenance", "statusCode": 503}),
        Reply(502, b"bad gateway"),
        Reply(429, {"message": "slow down", "statusCode": 429}, headers={"Retry-After": "7"}),
        Reply(200, {"id": "g", "status": "generating"}),
        Reply(200, {"id": "g", "status": "completed", "audio_file": {"url": "https://cdn.example/g.wav"}}),
    )

    scripted.script(*failures_then_done)
    clock = fake_clock(monkeypatch, hook_module)
    StableAudioHook().wait_for_generation("g", poll_interval=2, timeout=900)
    sync_sleeps = clock.sleeps
    # The trigger's wait as in a triggerer of its own: a process on another machine, its clock not
    # the worker's (the two fake clocks start at the same time).
    forget_budgets()
    monkeypatch.setenv("AIRFLOW__STABLEAUDIO__BUDGET_DIR", str(tmp_path / "triggerer's machine"))

    scripted.script(*failures_then_done)
    trigger_clock = fake_clock(monkeypatch, trigger_module)
    budget_clock = FakeClock()
    budget_queue_on(monkeypatch, budget_clock)

    async def sleep(seconds: float) -> None:
        trigger_clock.sleep(seconds)

    monkeypatch.setattr(
        trigger_module,
        "asyncio",
        types.SimpleNamespace(sleep=sleep, timeout=asyncio.timeout, to_thread=asyncio.to_thread),
    )
    trigger = StableAudioGenerationTrigger(
        conn_id="stableaudio_default", generation_id="g", poll_interval=2, end_time=trigger_clock.now + 900
    )
    event = asyncio.run(trigger._wait())
    assert event["status"] == "success"
    # After the 429 the key's budget also spaces requests at half the rate it had sent (here one
    # every 4 s): the worker's last poll waits 2 s more than the interval.
    assert sync_sleeps == [2, 4, 7, 2, 2]
    # The trigger first waits a random part of one interval (spreading first polls), then as the
    # sync path; the 429's 7 s (and the spacing) are waited in the key's queue, where every poll
    # of the key waits.
    assert [seconds for seconds in trigger_clock.sleeps[1:] if seconds] == [2, 4, 2]
    assert next(seconds for seconds in budget_clock.sleeps if seconds >= 1) == 7
