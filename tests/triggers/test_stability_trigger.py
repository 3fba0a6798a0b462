"""The trigger waiting on Stability AI (``service="stability"``), against the emulator's Stability routes.

The triggerer never holds a clip: a finished result's answer is closed unread, and the worker
fetches it after the event (``store_result``).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from airflow_provider_stableaudio.events import generation_from_event
from airflow_provider_stableaudio.exceptions import (
    StableAudioContentRefusedError,
    StableAudioKeyRefusedError,
    StableAudioResultGoneError,
)
from airflow_provider_stableaudio.generation_request import GenerationRequest
from airflow_provider_stableaudio.hooks import async_session
from airflow_provider_stableaudio.hooks.stability import StabilityAudioHook
from airflow_provider_stableaudio.triggers.stable_audio import StableAudioGenerationTrigger
from tests.conftest import API_KEY, set_connection
from tests.scripted_server import Reply

CLASSPATH = "airflow_provider_stableaudio.triggers.stable_audio.StableAudioGenerationTrigger"
WAV_60S = 44 + 60 * 44100 * 4


def submit(prompt: str = "a glassy mallet loop", **params: object) -> str:
    fields = {"duration": 2, "output_format": "wav", **params}
    built = GenerationRequest.build("stable-audio-3", prompt=prompt, **fields)
    return StabilityAudioHook().submit_generation(built).id


def make_trigger(
    generation_id: str, *, poll_interval: float = 0.1, wait: float = 30
) -> StableAudioGenerationTrigger:
    return StableAudioGenerationTrigger(
        conn_id="stability_default",
        generation_id=generation_id,
        poll_interval=poll_interval,
        end_time=time.time() + wait,
        service="stability",
    )


async def one_event(trigger: StableAudioGenerationTrigger) -> dict:
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1, events
    return events[0]


def served(emulator, generation_id: str) -> dict:
    return next(g for g in emulator.ledger()["stability"]["generations"] if g["id"] == generation_id)


def test_serializes_the_service_and_no_key() -> None:
    trigger = make_trigger("a" * 64, poll_interval=5, wait=60)
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs["service"] == "stability"
    assert kwargs["conn_id"] == "stability_default"
    assert set(kwargs) == {
        "conn_id",
        "generation_id",
        "poll_interval",
        "end_time",
        "service",
        "model",
        "clip_seconds",
        "submitted_at",
    }
    assert API_KEY not in repr(kwargs)
    assert StableAudioGenerationTrigger(**kwargs).serialize() == (classpath, kwargs)


@pytest.mark.asyncio
async def test_success_event_carries_service_seed_finish_reason_and_no_url(stability) -> None:
    generation_id = submit(seed=4242)
    before = time.time()
    event = await one_event(make_trigger(generation_id))
    assert event["status"] == "success"
    assert event["generation_id"] == generation_id
    assert event["service"] == "stability"
    assert event["seed"] == 4242
    assert event["finish_reason"] == "SUCCESS"
    assert event["content_type"] == "audio/wav"
    assert event["file_size"] == 44 + 2 * 44100 * 4
    assert before <= event["finished_at"] <= time.time()
    assert event.get("url") is None  # the result is fetched from the API by its id
    assert served(stability, generation_id)["polls"] >= 2  # it waited through in-progress answers
    assert async_session._SESSIONS == {}  # the shared session closed with its last user
    generation = generation_from_event(event)
    assert generation.id == generation_id
    assert generation.audio_file is not None
    assert generation.audio_file.seed == 4242


@pytest.mark.asyncio
async def test_the_triggerer_never_reads_a_finished_clip(stability, tmp_path: Path) -> None:
    generation_id = submit("a long ambient drone", duration=60)  # 10.6 MB of WAV
    event = await one_event(make_trigger(generation_id))
    assert event["status"] == "success"
    assert event["file_size"] == WAV_60S
    after_event = served(stability, generation_id)
    assert after_event["served"] >= 1  # the trigger saw the 200 ...
    assert after_event["complete_serves"] == 0  # ... and closed it unread
    assert after_event["bytes_served"] < after_event["file_size"] // 2

    # The worker then fetches it whole.
    target = tmp_path / "drone.wav"
    StabilityAudioHook().store_result(generation_from_event(event), target)
    stored = served(stability, generation_id)
    assert stored["complete_serves"] == 1
    assert target.stat().st_size == WAV_60S
    assert hashlib.sha256(target.read_bytes()).hexdigest() == stored["sha256"]


@pytest.mark.asyncio
async def test_a_filtered_result_is_a_content_refused_error_event(stability) -> None:
    generation_id = submit("[emulator:filtered] a siren")
    event = await one_event(make_trigger(generation_id))
    assert event["status"] == "error"
    assert event["reason"] == "content_refused"
    assert "CONTENT_FILTERED" in event["message"]
    with pytest.raises(StableAudioContentRefusedError, match="refused by its moderation"):
        generation_from_event(event)


@pytest.mark.asyncio
async def test_an_unknown_id_is_a_result_gone_error_event(stability) -> None:
    event = await one_event(make_trigger("0" * 64))
    assert event["status"] == "error"
    assert event["reason"] == "result_gone"
    assert "HTTP 404" in event["message"]
    assert "24 hours" in event["message"]
    with pytest.raises(StableAudioResultGoneError, match="24 hours"):
        generation_from_event(event)
    polls = [r for r in stability.ledger()["requests"] if r["method"] == "GET"]
    assert len(polls) == 1  # the wait ended on its first poll


@pytest.mark.asyncio
async def test_an_expired_result_is_a_result_gone_error_event(stability) -> None:
    stability.set_variants(stability_result_ttl=0)
    generation_id = submit()
    event = await one_event(make_trigger(generation_id))
    assert event["reason"] == "result_gone"
    assert "expired" in event["message"]
    assert served(stability, generation_id)["status"] == "expired"


@pytest.mark.asyncio
async def test_a_refused_key_is_a_key_refused_event_without_the_key(
    stability, monkeypatch: pytest.MonkeyPatch
) -> None:
    generation_id = submit()
    revoked = "revoked-key-6d2e90"
    set_connection(
        monkeypatch, "stability_default", conn_type="stability", host=stability.base_url, password=revoked
    )
    event = await one_event(make_trigger(generation_id))
    assert event["reason"] == "key_refused"
    assert "HTTP 401" in event["message"]
    assert revoked not in event["message"]
    with pytest.raises(StableAudioKeyRefusedError):
        generation_from_event(event)


@pytest.mark.asyncio
async def test_transient_poll_failures_are_retried_to_one_success(stability) -> None:
    generation_id = submit()
    stability.set_faults(
        rate_429=0.3, rate_5xx=0.3, rate_drop=0.2, retry_after=0, fault_methods=["GET"], seed=5
    )
    event = await one_event(make_trigger(generation_id, poll_interval=0.05))
    assert event["status"] == "success"
    assert sum(stability.ledger()["faults"].values()) > 0  # faults were met, and got past


@pytest.mark.asyncio
async def test_a_wait_past_its_deadline_is_a_timeout_event(stability) -> None:
    stability.set_generation_seconds(60)
    generation_id = submit()
    event = await one_event(make_trigger(generation_id, wait=0.3))
    assert event["status"] == "timeout"
    assert "in-progress" in event["message"]


@pytest.mark.asyncio
@pytest.mark.parametrize("header", ["Finish-Reason", "finish-reason", "FINISH-REASON"])
async def test_the_finish_reason_header_is_read_whatever_its_case(
    scripted, monkeypatch: pytest.MonkeyPatch, header: str
) -> None:
    # aiohttp keeps non-standard header names as sent: a plain dict of them would miss "Finish-Reason".
    set_connection(
        monkeypatch, "stability_default", conn_type="stability", host=scripted.base_url, password=API_KEY
    )
    scripted.script(
        Reply(
            200,
            b"RIFF....WAVE",
            headers={"Content-Type": "audio/wav", header: "CONTENT_FILTERED", "Seed": "7"},
        )
    )
    event = await one_event(make_trigger("a" * 64))
    assert (event["status"], event["reason"]) == ("error", "content_refused")


@pytest.mark.asyncio
async def test_a_poll_refused_with_429_waits_out_the_60_s_lockout(
    stability, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fake_clock import FakeClock, budget_queue_on

    generation_id = submit(duration=1)
    # Finished before the trigger starts: the budget's fake clock does not move the emulator's.
    StabilityAudioHook().wait_for_generation(generation_id, poll_interval=0.1, timeout=20)
    clock = FakeClock()
    clock.now = time.monotonic()

    # The key budget's clock and waits (where a 429's pause is waited out), and no others: the
    # trigger's polls go to the emulator over loopback.
    budget_queue_on(monkeypatch, clock)
    # Seed 1 draws 0.13 then 0.85: the first poll is refused with 429 (no Retry-After), the next answers.
    stability.set_faults(rate_429=0.5, retry_after=None, fault_methods=["GET"], seed=1)
    event = await one_event(make_trigger(generation_id, poll_interval=1, wait=600))
    assert event["status"] == "success"
    polls = [r["status"] for r in stability.ledger()["requests"] if r["method"] == "GET"]
    assert polls[-2:] == [429, 200]  # the hook's wait came first
    # The poll after the 429 waited for the key's pause: Stability's 60 s lockout.
    assert sum(clock.sleeps) >= 60


@pytest.mark.asyncio
async def test_a_403_on_a_result_is_a_content_refused_event_not_a_key_refused_one(stability) -> None:
    generation_id = submit("[emulator:moderate-result] a siren")
    event = await one_event(make_trigger(generation_id))
    assert (event["status"], event["reason"]) == ("error", "content_refused")
    assert "API key" not in event["message"]
    with pytest.raises(StableAudioContentRefusedError, match="moderation flagged"):
        generation_from_event(event)
