"""The trigger against the emulator: one event per run, for each way a wait can end."""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_stableaudio.events import generation_from_event
from airflow_provider_stableaudio.exceptions import StableAudioKeyRefusedError
from airflow_provider_stableaudio.generation_request import GenerationRequest
from airflow_provider_stableaudio.hooks import async_session
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator
from airflow_provider_stableaudio.triggers.stable_audio import StableAudioGenerationTrigger
from tests.conftest import API_KEY, set_connection
from tests.scripted_server import Reply

CLASSPATH = "airflow_provider_stableaudio.triggers.stable_audio.StableAudioGenerationTrigger"


def submit(prompt: str = "a soft harp arpeggio", seconds_total: int = 2) -> str:
    return (
        StableAudioHook()
        .submit_generation(GenerationRequest.build(prompt=prompt, seconds_total=seconds_total))
        .id
    )


def make_trigger(
    generation_id: str, *, poll_interval: float = 0.1, wait: float = 20
) -> StableAudioGenerationTrigger:
    return StableAudioGenerationTrigger(
        conn_id="stableaudio_default",
        generation_id=generation_id,
        poll_interval=poll_interval,
        end_time=time.time() + wait,
    )


async def all_events(trigger: StableAudioGenerationTrigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


def test_serializes_only_ids_interval_deadline_service_and_what_schedules_polls() -> None:
    trigger = make_trigger("g-1", poll_interval=5, wait=60)
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert set(kwargs) == {
        *("conn_id", "generation_id", "poll_interval", "end_time", "service"),
        *("model", "clip_seconds", "submitted_at"),
    }
    assert kwargs["service"] == "aimlapi"
    assert kwargs["generation_id"] == "g-1"
    assert kwargs["end_time"] == pytest.approx(time.time() + 60, abs=5)
    assert API_KEY not in repr(kwargs)
    rebuilt = StableAudioGenerationTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)


@pytest.mark.asyncio
async def test_success_event_carries_the_file_and_credits(connection) -> None:
    generation_id = submit()
    events = await all_events(make_trigger(generation_id))
    assert len(events) == 1
    (event,) = events
    assert event["status"] == "success"
    assert event["generation_id"] == generation_id
    assert event["url"].endswith(".wav")
    assert event["file_size"] == 44 + 2 * 44100 * 4
    assert event["content_type"] == "audio/wav"
    assert event["credits_used"] == 25200
    assert connection.ledger()["generations"][0]["polls"] >= 2  # it waited through pending polls
    assert async_session._SESSIONS == {}  # the shared session was closed with its last user


@pytest.mark.asyncio
async def test_a_generation_reported_complete_is_a_success_event(connection) -> None:
    connection.set_variants(completed_status="complete")  # the vendor's prose, not the schema
    generation_id = submit()
    (event,) = await all_events(make_trigger(generation_id))
    assert connection.ledger()["generations"][0]["status"] == "complete"
    assert event["status"] == "success"
    assert event["generation_id"] == generation_id
    assert event["url"].endswith(".wav")


@pytest.mark.asyncio
async def test_fractional_credits_reach_the_success_event(connection) -> None:
    connection.set_variants(credits_per_step=0.125)
    (event,) = await all_events(make_trigger(submit()))  # 100 steps
    assert event["credits_used"] == 12.5
    assert generation_from_event(event).credits_used == 12.5  # as execute_complete reads it


@pytest.mark.asyncio
async def test_failed_generation_is_an_error_event(connection) -> None:
    generation_id = submit("[emulator:error] tuba")
    (event,) = await all_events(make_trigger(generation_id))
    assert event == {
        "status": "error",
        "generation_id": generation_id,
        "reason": "generation_failed",
        "message": "GenerationError: The model failed to generate audio for this prompt",
    }


@pytest.mark.asyncio
async def test_deadline_in_the_past_is_a_timeout_event(connection) -> None:
    connection.set_generation_seconds(60)
    generation_id = submit()
    (event,) = await all_events(make_trigger(generation_id, wait=-1))
    assert event["status"] == "timeout"
    assert event["generation_id"] == generation_id
    assert "still 'queued' at the deadline" in event["message"]


@pytest.mark.asyncio
async def test_permanent_errors_end_the_wait_at_once(connection, monkeypatch: pytest.MonkeyPatch) -> None:
    (event,) = await all_events(make_trigger("no-such-generation"))
    assert event["status"] == "error"
    assert "HTTP 404" in event["message"]
    set_connection(monkeypatch, host=connection.base_url, password="revoked-key-31")
    (event,) = await all_events(make_trigger(submit_with_good_key(connection, monkeypatch)))
    assert event["status"] == "error"
    assert "HTTP 401" in event["message"]
    assert "revoked-key-31" not in event["message"]
    polls = [r for r in connection.ledger()["requests"] if r["method"] == "GET"]
    assert [r["status"] for r in polls] == [404, 401]  # each wait ended on its first poll


def submit_with_good_key(emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    set_connection(monkeypatch, host=emulator.base_url, password=API_KEY)
    generation_id = submit()
    set_connection(monkeypatch, host=emulator.base_url, password="revoked-key-31")
    return generation_id


@pytest.mark.asyncio
async def test_transient_poll_errors_are_retried(scripted) -> None:
    done = {"id": "g", "status": "completed", "audio_file": {"url": "https://cdn.example/g.wav"}}
    scripted.script(
        Reply(429, {"message": "Too Many Requests", "statusCode": 429}, headers={"Retry-After": "0"}),
        Reply(500, {"message": "Internal error", "statusCode": 500}),
        Reply(drop=True),
        Reply(200, b"<html>"),
        Reply(200, {"id": "g", "status": "cancelled-for-now"}),
        Reply(200, done),
    )
    (event,) = await all_events(make_trigger("g", poll_interval=0.01))
    assert event["status"] == "success"
    assert event["url"] == "https://cdn.example/g.wav"
    assert len(scripted.seen) == 6


@pytest.mark.asyncio
async def test_a_rebuilt_trigger_carries_on_with_the_same_generation(connection) -> None:
    connection.set_generation_seconds(1.0)
    generation_id = submit()
    first = make_trigger(generation_id)
    # A triggerer restart: the first run is cancelled mid-wait, a new one is built from the kwargs.
    task = asyncio.ensure_future(all_events(first))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _, kwargs = first.serialize()
    (event,) = await all_events(StableAudioGenerationTrigger(**kwargs))
    assert event["status"] == "success"
    assert event["generation_id"] == generation_id
    assert len(connection.ledger()["generations"]) == 1  # nothing was submitted again


@pytest.mark.asyncio
async def test_many_triggers_share_one_session(connection, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [submit(f"prompt {n}", seconds_total=1) for n in range(20)]
    sessions = set()
    original = async_session._new_session

    def counting() -> object:
        session = original()
        sessions.add(id(session))
        return session

    monkeypatch.setattr(async_session, "_new_session", counting)
    results = await asyncio.gather(*(all_events(make_trigger(i, poll_interval=0.05)) for i in ids))
    assert [r[0]["status"] for r in results] == ["success"] * 20
    assert len(sessions) == 1


@pytest.mark.asyncio
async def test_a_refused_key_is_reported_as_the_key_not_the_generation(
    connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    generation_id = submit_with_good_key(connection, monkeypatch)  # then the key is revoked
    (event,) = await all_events(make_trigger(generation_id))
    assert event["reason"] == "key_refused"
    with pytest.raises(StableAudioKeyRefusedError) as caught:
        StableAudioGenerateOperator(task_id="t", prompt="x").execute_complete({"ti": None}, event)
    message = str(caught.value)
    assert "refused the connection's API key (HTTP 401" in message
    assert "Check the API key in the connection's password field" in message
    assert f"generation {generation_id} failed" not in message
    assert "revoked-key-31" not in message


@pytest.mark.asyncio
async def test_a_forbidden_poll_names_the_key_and_the_credits(scripted) -> None:
    scripted.script(Reply(403, {"message": "Forbidden", "requestId": "r-9", "statusCode": 403}))
    (event,) = await all_events(make_trigger("g"))
    assert event["reason"] == "key_refused"
    assert "HTTP 403: Forbidden, requestId r-9" in event["message"]
    assert "the account's credits" in event["message"]


@pytest.mark.asyncio
async def test_api_text_is_cut_short_before_it_reaches_an_event(scripted) -> None:
    huge = "x" * 100_000
    scripted.script(
        Reply(500, {"message": huge, "statusCode": 500}),  # logged as a retried failure
        Reply(200, {"id": "g", "status": "error", "error": {"name": "GenerationError", "message": huge}}),
    )
    (event,) = await all_events(make_trigger("g", poll_interval=0.01))
    assert event["reason"] == "generation_failed"
    assert event["message"].startswith("GenerationError: xxx")
    assert event["message"].endswith("...(truncated)")
    assert len(event["message"]) < 1_000
