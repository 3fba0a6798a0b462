"""Parsing the API's generation bodies, and the trigger's event payloads."""

from __future__ import annotations

import pytest

from airflow_provider_stableaudio.events import (
    error_event,
    generation_from_event,
    success_event,
    timeout_event,
)
from airflow_provider_stableaudio.exceptions import (
    StableAudioGenerationFailed,
    StableAudioResponseError,
    StableAudioTimeoutError,
)
from airflow_provider_stableaudio.generation_result import GenerationState, parse_generation

COMPLETED = {
    "id": "ed58c4e0-2ed6-429f-91a1-b2c13a89ff46:stable-audio",
    "status": "completed",
    "audio_file": {
        "url": "https://cdn.aimlapi.com/flamingo/files/b/0a88448e/tmpdwdfh537.wav",
        "content_type": "application/octet-stream",
        "file_name": "tmpdwdfh537.wav",
        "file_size": 5292078,
    },
    "meta": {"usage": {"credits_used": 25200}},
}


def test_completed_body_from_the_contract() -> None:
    generation = parse_generation(COMPLETED)
    assert generation.id == COMPLETED["id"]
    assert generation.state is GenerationState.SUCCEEDED
    assert generation.audio_file is not None
    assert generation.audio_file.url.endswith("tmpdwdfh537.wav")
    assert generation.audio_file.file_size == 5292078
    assert generation.credits_used == 25200


def test_audio_file_with_only_a_url() -> None:
    generation = parse_generation(
        {"id": "a", "status": "completed", "audio_file": {"url": "https://x/y.wav"}}
    )
    assert generation.audio_file is not None
    assert (generation.audio_file.file_name, generation.audio_file.file_size) == (None, None)
    assert generation.credits_used is None


@pytest.mark.parametrize("status", ["queued", "generating", "waiting", "active", "processing"])
def test_pending_statuses(status: str) -> None:
    generation = parse_generation({"id": "a", "status": status, "audio_file": None, "error": None})
    assert generation.state is GenerationState.PENDING
    assert generation.audio_file is None


@pytest.mark.parametrize("status", ["error", "failed"])
def test_failed_statuses_carry_the_reason(status: str) -> None:
    generation = parse_generation(
        {"id": "a", "status": status, "error": {"name": "GenerationError", "message": "model crashed"}}
    )
    assert generation.state is GenerationState.FAILED
    assert generation.error_message == "GenerationError: model crashed"


def test_old_generation_id_field_and_polled_id_fallback() -> None:
    assert parse_generation({"generation_id": "old", "status": "queued"}).id == "old"
    assert parse_generation({"status": "queued"}, generation_id="polled").id == "polled"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"id": "a", "status": "cancelled"}, ["unknown status 'cancelled'", '"status": "cancelled"']),
        ({"id": "a"}, ["unknown status None"]),
        ({"status": "queued"}, ["no generation id"]),
        ({"id": "a", "status": "completed", "audio_file": None}, ["no audio_file.url"]),
        (["not", "an", "object"], ["expected a JSON object", '["not", "an", "object"]']),
    ],
)
def test_unreadable_bodies_are_quoted(body: object, words: list[str]) -> None:
    with pytest.raises(StableAudioResponseError) as caught:
        parse_generation(body)
    for word in words:
        assert word in str(caught.value)


def test_success_event_round_trip() -> None:
    generation = parse_generation(COMPLETED)
    event = success_event(generation)
    assert event["status"] == "success"
    assert event["url"] == generation.audio_file.url  # type: ignore[union-attr]
    assert generation_from_event(event) == generation.__class__(
        id=generation.id,
        status="completed",
        state=GenerationState.SUCCEEDED,
        audio_file=generation.audio_file,
        credits_used=25200,
    )


def test_error_and_timeout_events_raise_naming_the_generation() -> None:
    with pytest.raises(StableAudioGenerationFailed, match="generation g1 failed: boom"):
        generation_from_event(error_event("g1", "boom"))
    with pytest.raises(StableAudioTimeoutError, match="generation g2 timed out: still 'queued'"):
        generation_from_event(timeout_event("g2", "still 'queued'"))


@pytest.mark.parametrize(
    "event", [None, {}, {"status": "cancelled"}, {"status": "success", "generation_id": "g"}]
)
def test_anything_else_is_never_success(event: object) -> None:
    with pytest.raises(StableAudioResponseError, match="unexpected trigger event for generation g"):
        generation_from_event(event, generation_id="g")
