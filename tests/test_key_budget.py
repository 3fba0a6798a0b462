"""One request budget per key against the emulator holding the key to a limit, as the services do.

The triggers and the hooks run as in a triggerer and a worker (one event loop, one process); the
emulator counts every request, 429 and lockout in its ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from airflow_provider_stableaudio.generation_request import GenerationRequest
from airflow_provider_stableaudio.hooks import base as hook_base
from airflow_provider_stableaudio.hooks.stability import StabilityAudioHook
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from airflow_provider_stableaudio.triggers.stable_audio import StableAudioGenerationTrigger
from tests.conftest import API_KEY, set_connection
from tests.fake_clock import fake_clock

pytestmark = pytest.mark.default_budget  # these tests are of the budget itself


@pytest.fixture
def limited(emulator, monkeypatch: pytest.MonkeyPatch):
    """The emulator, and a function pointing ``stableaudio_default`` at it with the given extra."""

    def connect(**extra: object) -> None:
        set_connection(monkeypatch, host=emulator.base_url, password=API_KEY, extra=extra)

    yield emulator, connect
    emulator.clear_rate_limit()


def submit_many(count: int, *, seconds_total: int = 2) -> list[str]:
    hook = StableAudioHook()
    request = GenerationRequest.build(prompt="a short bell", seconds_total=seconds_total)
    return [hook.submit_generation(request).id for _ in range(count)]


def trigger(generation_id: str, *, poll_interval: float, submitted_at: float | None = None):
    return StableAudioGenerationTrigger(
        conn_id="stableaudio_default",
        generation_id=generation_id,
        poll_interval=poll_interval,
        end_time=time.time() + 60,
        model="stable-audio",
        clip_seconds=2,
        submitted_at=submitted_at,
    )


async def wait_all(triggers: list[StableAudioGenerationTrigger]) -> list[dict]:
    async def one(t: StableAudioGenerationTrigger) -> dict:
        (event,) = [event.payload async for event in t.run()]
        return event

    return await asyncio.gather(*(one(t) for t in triggers))


def polls_per_generation(emulator, ids: list[str]) -> Counter[str]:
    """The polls the emulator answered for each of ``ids``."""
    return Counter({g["id"]: g["polls"] for g in emulator.ledger()["generations"] if g["id"] in ids})


@pytest.mark.asyncio
async def test_every_trigger_of_a_key_spends_from_one_budget_and_the_key_is_never_refused(limited) -> None:
    emulator, connect = limited
    connect(max_requests_per_second=8)
    emulator.set_generation_seconds(1.5)
    ids = submit_many(24)
    # 24 waits asking for a poll every 50 ms each (480 a second) against a key limited to 12 a second.
    emulator.set_rate_limit(limit_requests=12, limit_window_seconds=1, limit_lockout_seconds=5)
    started = time.monotonic()
    events = await wait_all([trigger(i, poll_interval=0.05) for i in ids])
    elapsed = time.monotonic() - started
    assert [e["status"] for e in events] == ["success"] * 24
    limit = emulator.ledger()["rate_limit"]
    assert (limit["requests_limited"], limit["lockouts"]) == (0, 0)
    polls = sum(polls_per_generation(emulator, ids).values())
    assert polls <= 8 * elapsed + 2  # the budget's rate, across all the triggers


def test_a_workers_calls_spend_from_the_same_budget(limited) -> None:
    emulator, connect = limited
    connect(max_requests_per_second=5)
    emulator.set_rate_limit(limit_requests=6, limit_window_seconds=1, limit_lockout_seconds=5)
    started = time.monotonic()
    ids = submit_many(12)  # submits, back to back
    assert len(set(ids)) == 12
    assert time.monotonic() - started >= 11 / 5 - 0.1
    assert emulator.ledger()["rate_limit"]["requests_limited"] == 0


@pytest.mark.asyncio
async def test_a_429_pauses_every_poll_of_the_key_which_resume_after_one_probe(limited) -> None:
    emulator, connect = limited
    connect()  # no figure: the AI/ML API documents none, so the budget starts at 10 a second
    emulator.set_generation_seconds(2.0)
    ids = submit_many(20)
    # 4 a second, 3 s of lockout, no Retry-After: the budget learns the limit from a 429.
    emulator.set_rate_limit(limit_requests=4, limit_window_seconds=1, limit_lockout_seconds=3)
    events = await wait_all([trigger(i, poll_interval=0.05) for i in ids])
    assert [e["status"] for e in events] == ["success"] * 20
    limit = emulator.ledger()["rate_limit"]
    # The first 429 paused all twenty; each pause ended with one request, not twenty. (The
    # requests sent in the same turn of the loop as a refused one, a burst's worth, are refused too.)
    assert limit["lockouts"] <= 2
    assert limit["requests_limited"] <= 8


@pytest.mark.asyncio
async def test_polls_go_by_need_once_the_triggerer_has_seen_generations_finish(limited) -> None:
    emulator, connect = limited
    # A budget to spare (16 waits polling every 0.2 s ask 80 a second): held back, polls would
    # wait for a few slots at once, up to a quarter second.
    connect(max_requests_per_second=1000)
    # Intervals of 0.2 s, not tens of ms: a loaded machine's scheduling delays are not a poll's
    # worth (at 50 ms the second batch's bound failed beside the real-stack tier: 49 polls).
    emulator.set_generation_seconds(2.0)
    # First batch: nothing seen yet; the oldest few poll every 0.2 s, the rest wait for them.
    first = submit_many(16)
    submitted = time.time()
    events = await wait_all([trigger(i, poll_interval=0.2, submitted_at=submitted) for i in first])
    assert all(e["status"] == "success" for e in events)
    first_polls = sum(polls_per_generation(emulator, first).values())
    # Blind, 16 waits polling every 0.2 s for 2 s send ~176 polls; scouts (4) about 44, the rest one or two each.
    assert first_polls <= 110
    # Second batch in the same loop: not polled before about 2 s, then found done within a poll or two.
    second = submit_many(16)
    submitted = time.time()
    events = await wait_all([trigger(i, poll_interval=0.2, submitted_at=submitted) for i in second])
    assert all(e["status"] == "success" for e in events)
    second_polls = polls_per_generation(emulator, second)
    assert sum(second_polls.values()) <= 16 * 3


@pytest.mark.asyncio
async def test_without_the_submission_time_a_wait_still_ends_and_teaches_nothing(limited) -> None:
    emulator, connect = limited
    connect(max_requests_per_second=200)
    emulator.set_generation_seconds(0.5)
    ids = submit_many(4)
    events = await wait_all([trigger(i, poll_interval=0.05) for i in ids])
    assert [e["status"] for e in events] == ["success"] * 4


@pytest.mark.parametrize(
    ("hook_class", "conn_type", "model", "fields"),
    [
        (StableAudioHook, "stableaudio", "stable-audio", {"seconds_total": 2}),
        (StabilityAudioHook, "stability", "stable-audio-3", {"duration": 2, "output_format": "wav"}),
    ],
    ids=["aimlapi", "stability"],
)
def test_a_submit_that_meets_a_60_s_lockout_succeeds_after_it_with_one_generation(
    emulator, monkeypatch: pytest.MonkeyPatch, hook_class, conn_type, model, fields
) -> None:
    conn_id = hook_class.default_conn_name
    set_connection(monkeypatch, conn_id, conn_type=conn_type, host=emulator.base_url, password=API_KEY)
    # One clock for the worker and the emulator's limiter: the minute passes without being waited.
    clock = fake_clock(monkeypatch, hook_base)
    emulator.state.limiter.clock = clock.monotonic
    try:
        emulator.set_rate_limit(limit_requests=1, limit_window_seconds=10, limit_lockout_seconds=60)
        hook = hook_class()
        assert hook.test_connection()[0]  # the key's one request of the window
        request = GenerationRequest.build(model, prompt="a door chime", **fields)
        generation = hook.submit_generation(request, timeout=300)  # the operator passes its timeout
    finally:
        emulator.state.limiter.clock = time.monotonic
        emulator.clear_rate_limit()
    posts = [r for r in emulator.ledger()["requests"] if r["method"] == "POST"]
    assert [r["status"] for r in posts][-1] in (200, 202)
    assert generation.id
    assert all(r["status"] == 429 for r in posts[:-1])
    assert emulator.ledger()["rate_limit"]["lockouts"] == 1
    created = emulator.ledger()["generations"] + emulator.ledger()["stability"]["generations"]
    assert len(created) == 1
    assert 60 <= sum(clock.sleeps) <= 300  # the lockout, waited out within the timeout


def test_a_submit_whose_timeout_ends_inside_the_lockout_fails_without_waiting_it_out(
    emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(
        monkeypatch, "stability_default", conn_type="stability", host=emulator.base_url, password=API_KEY
    )
    clock = fake_clock(monkeypatch, hook_base)
    emulator.state.limiter.clock = clock.monotonic
    try:
        emulator.set_rate_limit(limit_requests=1, limit_window_seconds=10, limit_lockout_seconds=60)
        hook = StabilityAudioHook()
        assert hook.test_connection()[0]
        request = GenerationRequest.build("stable-audio-3", prompt="a door chime", duration=2)
        with pytest.raises(Exception, match="429") as raised:
            hook.submit_generation(request, timeout=30)
    finally:
        emulator.state.limiter.clock = time.monotonic
        emulator.clear_rate_limit()
    assert API_KEY not in str(raised.value)
    assert sum(clock.sleeps) < 30  # no wait into a lockout that outlasts the timeout
    assert emulator.ledger()["stability"]["generations"] == []
