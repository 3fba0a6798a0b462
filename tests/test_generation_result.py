"""Parsing the API's generation bodies, and the trigger's event payloads."""

from __future__ import annotations

import math
from typing import Any

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
from airflow_provider_stableaudio.generation_result import (
    GenerationState,
    credits_number,
    parse_generation,
    read_generation,
)

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


@pytest.mark.parametrize("status", ["completed", "complete"])
def test_complete_and_completed_both_mean_success(status: str) -> None:
    # The schema says "completed", the vendor's prose for stable-audio "complete".
    generation = parse_generation({**COMPLETED, "status": status})
    assert (generation.state, generation.status) == (GenerationState.SUCCEEDED, status)
    assert generation.audio_file == parse_generation(COMPLETED).audio_file


@pytest.mark.parametrize(
    ("sent", "kept"),
    [(25200, 25200), (12.5, 12.5), (0, 0), (25200.0, 25200.0), ("25200", 25200), ("12.5", 12.5)],
)
def test_credits_used_is_kept_as_the_number_sent(sent: object, kept: int | float) -> None:
    body = {**COMPLETED, "meta": {"usage": {"credits_used": sent}}}
    credits_used = parse_generation(body).credits_used
    assert credits_used == kept
    assert type(credits_used) is type(kept)  # an int stays an int, a fraction a float


@pytest.mark.parametrize(
    "sent", [True, -1, -0.5, math.nan, math.inf, "-3", "12,5", "1e3", ".5", "²", "", None, [25200], {}]
)
def test_credits_used_that_is_no_cost_reads_as_unknown(sent: object) -> None:
    assert credits_number(sent) is None
    assert parse_generation({**COMPLETED, "meta": {"usage": {"credits_used": sent}}}).credits_used is None


def test_nan_and_infinity_in_the_json_body_read_as_unknown_credits() -> None:
    # Python's json accepts these non-standard literals; no XCom or lineage event could carry them.
    for literal in (b"NaN", b"Infinity"):
        content = b'{"id": "a", "status": "queued", "meta": {"usage": {"credits_used": %s}}}' % literal
        assert read_generation(content, action="poll").credits_used is None


def test_a_file_size_of_digits_int_cannot_read_is_dropped() -> None:
    body: dict[str, Any] = {**COMPLETED, "audio_file": {**COMPLETED["audio_file"], "file_size": "²"}}
    audio_file = parse_generation(body).audio_file
    assert audio_file is not None
    assert audio_file.file_size is None


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


@pytest.mark.parametrize(("sent", "kept"), [(12.5, 12.5), ("12.5", 12.5), (True, None), (-1, None)])
def test_an_events_credits_are_read_as_the_api_sent_them(sent: object, kept: float | None) -> None:
    generation = parse_generation({**COMPLETED, "meta": {"usage": {"credits_used": sent}}})
    event = success_event(generation)
    assert event["credits_used"] == kept
    assert generation_from_event(event).credits_used == kept
    # An event from elsewhere (another provider version) is read the same way.
    assert generation_from_event({**event, "credits_used": sent}).credits_used == kept


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
