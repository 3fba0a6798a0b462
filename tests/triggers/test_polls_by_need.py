"""Polls by need (issue 18, item 3), measured on a virtual clock.

Hundreds of real :class:`StableAudioGenerationTrigger` waits run on one event loop whose clock jumps
to the next timer (:mod:`tests.virtual_time`), with the real poll planner, budget queue and key
budget. Only the hook is a stand-in: it takes its slot from the key's budget queue, as the real
hook's ``_aget`` does, and answers from a table of when each generation is ready, behind the
emulator's limiter set as Stability documents its limit. So a minute of the scenario runs in a fraction of a
second, and what the figures measure is the schedule, never the machine. (``benchmarks/rate_limit.py``
measures the same scenarios against the emulator in real time.)
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from airflow_provider_stableaudio import budget_queue, poll_planner
from airflow_provider_stableaudio.emulator.ratelimit import KeyLimiter, RateLimitConfig
from airflow_provider_stableaudio.exceptions import StableAudioRetryableError
from airflow_provider_stableaudio.generation_result import AudioFile, Generation, GenerationState
from airflow_provider_stableaudio.hooks import async_session
from airflow_provider_stableaudio.request_budget import KeyBudget
from airflow_provider_stableaudio.triggers import stable_audio as trigger_module
from airflow_provider_stableaudio.triggers.stable_audio import StableAudioGenerationTrigger
from tests import virtual_time

LATENCY = 0.03  # seconds an answer takes


class VirtualAPI:
    """Generations ready at known times, behind the emulator's own limiter (``KeyLimiter``) holding
    the key to ``limit`` requests per 10 s and locking it out 60 s after that (no ``Retry-After``)."""

    def __init__(self, ready_at: dict[str, float], *, limit: int, clock: Callable[[], float]) -> None:
        self.ready_at = ready_at
        self.sent = 0
        self._clock = clock
        self._limiter = KeyLimiter(clock)
        self._config = RateLimitConfig(limit_requests=limit)

    def answer(self, generation_id: str) -> Generation | None:
        """The generation's state now, or ``None`` for a 429."""
        self.sent += 1
        if self._limiter.admit("the key", self._config) is not None:
            return None
        if self._clock() < self.ready_at[generation_id]:
            return Generation(id=generation_id, status="generating", state=GenerationState.PENDING)
        return Generation(
            id=generation_id,
            status="completed",
            state=GenerationState.SUCCEEDED,
            audio_file=AudioFile(url=f"https://cdn.example/{generation_id}.wav"),
        )

    def refusals(self) -> tuple[int, int]:
        """429s and lockouts."""
        ledger = self._limiter.ledger(self._config)
        return ledger["requests_limited"], ledger["lockouts"]


def hook_class(api: VirtualAPI, budget: KeyBudget, loop: asyncio.AbstractEventLoop) -> type:
    class VirtualHook:
        def __init__(self, *, conn_id: str) -> None:
            del conn_id

        async def aget_settings(self) -> None:
            return None

        async def aget_generation(self, generation_id: str, *, priority: float | None = None) -> Generation:
            queue = budget_queue.queue_for(budget)
            slot = await queue.take(loop.time() if priority is None else priority)
            await asyncio.sleep(LATENCY)
            generation = api.answer(generation_id)
            queue.answered(slot, limited=generation is None, retry_after=None)
            if generation is None:
                raise StableAudioRetryableError("429", status_code=429)
            return generation

    return VirtualHook


@dataclass
class Run:
    requests_per_clip: float
    refused: int
    lockouts: int
    delivered: int
    detection: list[float]  # seconds from ready to the trigger's event, sorted
    last_clip: float  # seconds from the first submit to the last event

    def detection_quantile(self, q: float) -> float:
        return self.detection[min(len(self.detection) - 1, int(q * len(self.detection)))]


def run_waits(
    monkeypatch: pytest.MonkeyPatch,
    *,
    clips: int,
    seconds: tuple[float, float],
    poll_interval: float,
    max_rate: float,
    seed: int,
    limit: int = 150,
) -> Run:
    """``clips`` generations of ``seconds`` (uniform), submitted 5 ms apart, then waited for at
    once in one loop, started one by one as the triggerer starts them; the key held to ``limit``
    requests per 10 s."""
    draw = random.Random(seed)
    monkeypatch.setattr(poll_planner, "random", random.Random(seed))
    loop = virtual_time.VirtualTimeLoop()
    clock = virtual_time.VirtualClock(loop)
    for module in (trigger_module, budget_queue):
        monkeypatch.setattr(module, "time", clock)
    submitted = {f"g{n}": loop.time() + n * 0.005 for n in range(clips)}
    ready_at = {gid: at + draw.uniform(*seconds) for gid, at in submitted.items()}
    api = VirtualAPI(ready_at, limit=limit, clock=loop.time)
    budget = KeyBudget(label="virtual key", max_rate=max_rate, lockout_seconds=60.0)
    monkeypatch.setattr(trigger_module, "_hook_class", lambda service: hook_class(api, budget, loop))

    @contextlib.asynccontextmanager
    async def no_session() -> AsyncIterator[None]:
        yield None

    monkeypatch.setattr(async_session, "shared_client_session", no_session)
    events: dict[str, tuple[float, dict]] = {}

    async def wait(generation_id: str) -> None:
        trigger = StableAudioGenerationTrigger(
            conn_id="virtual",
            generation_id=generation_id,
            poll_interval=poll_interval,
            end_time=submitted[generation_id] + 600,
            model="stable-audio",
            clip_seconds=30,
            submitted_at=submitted[generation_id],
        )
        async for event in trigger.run():
            events[generation_id] = (loop.time(), event.payload)

    async def main() -> None:
        await asyncio.sleep(clips * 0.005 + 0.5)  # the submits
        waits = []
        for generation_id in submitted:
            waits.append(asyncio.create_task(wait(generation_id)))
            await asyncio.sleep(0)
        await asyncio.gather(*waits)

    first_submit = loop.time()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    delivered = [gid for gid, (_, payload) in events.items() if payload["status"] == "success"]
    refused, lockouts = api.refusals()
    return Run(
        requests_per_clip=api.sent / clips,
        refused=refused,
        lockouts=lockouts,
        delivered=len(delivered),
        detection=sorted(events[gid][0] - api.ready_at[gid] for gid in delivered),
        last_clip=max(at for at, _ in events.values()) - first_submit,
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_300_clips_against_14_requests_a_second_are_seen_within_25_s_at_2_5_requests_each(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    # Issue 18's first scenario: 300 clips of 20-40 s, poll_interval=2, the key held to 150
    # requests per 10 s. The clips are ready at 15 a second, faster than the budget's 14.
    run = run_waits(monkeypatch, clips=300, seconds=(20, 40), poll_interval=2, max_rate=14, seed=seed)
    assert run.delivered == 300
    assert (run.refused, run.lockouts) == (0, 0)
    assert run.requests_per_clip <= 2.5
    assert run.detection_quantile(0.95) <= 25
    assert run.last_clip <= 65


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_with_budget_to_spare_every_clip_is_seen_within_one_poll_interval_of_ready(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    # Waits start one by one, as a triggerer starts them: the group's scouts must grow with it.
    # (With the scouts counted only when each wait started, two scouts of 300 waits held every
    # other poll until one of them finished: up to 19 s after clips were ready.)
    run = run_waits(
        monkeypatch, clips=300, seconds=(20, 40), poll_interval=2, max_rate=1000, seed=seed, limit=10**6
    )
    assert run.delivered == 300
    assert run.detection[-1] <= 2 + LATENCY


def test_1000_clips_of_30_to_90_s_at_poll_interval_10_cost_under_two_requests_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = run_waits(monkeypatch, clips=1000, seconds=(30, 90), poll_interval=10, max_rate=14, seed=1)
    assert run.delivered == 1000
    assert (run.refused, run.lockouts) == (0, 0)
    assert run.requests_per_clip <= 2
    assert run.last_clip <= 150
