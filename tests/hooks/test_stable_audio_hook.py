"""The hook against the emulator, and against a scripted server for failures the emulator can't stage."""

from __future__ import annotations

import asyncio
import io
import wave
from pathlib import Path

import pytest

from airflow_provider_stableaudio.exceptions import (
    StableAudioConfigError,
    StableAudioConnectionError,
    StableAudioGenerationFailed,
    StableAudioPermanentError,
    StableAudioResponseError,
    StableAudioRetryableError,
    StableAudioSubmissionUnknownError,
    StableAudioTimeoutError,
)
from airflow_provider_stableaudio.generation_request import GenerationRequest
from airflow_provider_stableaudio.generation_result import GenerationState
from airflow_provider_stableaudio.hooks import base as hook_module
from airflow_provider_stableaudio.hooks.base import USER_AGENT
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from tests.conftest import API_KEY, set_connection
from tests.fake_clock import FakeClock, fake_clock
from tests.scripted_server import Reply

QUEUED = {"id": "gen-1:stable-audio", "status": "queued", "meta": {"usage": {"credits_used": 2520}}}
ENVELOPE = {"message": "Too Many Requests", "requestId": "r-1", "statusCode": 429}


def request(**params: object) -> GenerationRequest:
    return GenerationRequest.build(prompt="a bright marimba melody", seconds_total=2, steps=10, **params)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The hook's waits, recorded and skipped."""
    return fake_clock(monkeypatch, hook_module)


def test_submit_poll_wait_download(connection, tmp_path: Path) -> None:
    hook = StableAudioHook()
    generation = hook.submit_generation(request())
    assert generation.state is GenerationState.PENDING
    assert generation.credits_used == 2520
    assert hook.get_generation(generation.id).status in ("queued", "generating")

    done = hook.wait_for_generation(generation.id, poll_interval=0.1, timeout=10)
    assert done.state is GenerationState.SUCCEEDED
    assert done.audio_file is not None

    target = Path(
        hook.download_audio(
            done.audio_file.url, tmp_path / "nested" / "clip.wav", expected_size=done.audio_file.file_size
        )
    )
    data = target.read_bytes()
    assert len(data) == done.audio_file.file_size
    with wave.open(io.BytesIO(data)) as clip:
        assert clip.getnframes() / clip.getframerate() == 2
    assert list(target.parent.iterdir()) == [target]  # no temporary file left

    ledger = connection.ledger()
    assert [g["prompt"] for g in ledger["generations"]] == ["a bright marimba melody"]
    assert ledger["generations"][0]["bytes_served"] == len(data)


def test_every_api_call_sends_bearer_key_and_user_agent(scripted) -> None:
    scripted.script(Reply(200, QUEUED))
    StableAudioHook().submit_generation(request())
    (seen,) = scripted.seen
    assert seen.headers["Authorization"] == f"Bearer {API_KEY}"
    assert seen.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("airflow-provider-stableaudio/")


def test_wrong_key_is_permanent_and_never_echoed(emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host=emulator.base_url, password="wrong-key-77")
    with pytest.raises(StableAudioPermanentError) as caught:
        StableAudioHook().submit_generation(request())
    assert caught.value.status_code == 401
    assert caught.value.request_id
    assert "wrong-key-77" not in str(caught.value)
    assert "API key" in str(caught.value)
    assert emulator.ledger()["generations"] == []


def test_server_side_validation_error_is_permanent(connection) -> None:
    # Bypass the client's own checks to see the API's 400.
    bad = GenerationRequest(model="stable-audio", params={"prompt": "x", "seconds_total": 99})
    with pytest.raises(StableAudioPermanentError, match=r"HTTP 400 .*seconds_total") as caught:
        StableAudioHook().submit_generation(bad)
    assert caught.value.status_code == 400


def test_unknown_generation_is_a_permanent_404(connection) -> None:
    with pytest.raises(StableAudioPermanentError, match="Generation nope is unknown to the API") as caught:
        StableAudioHook().get_generation("nope")
    assert caught.value.status_code == 404


def test_failed_generation(connection) -> None:
    hook = StableAudioHook()
    generation = hook.submit_generation(
        GenerationRequest.build(prompt="[emulator:error] drums", seconds_total=1)
    )
    with pytest.raises(StableAudioGenerationFailed, match=f"{generation.id} failed: GenerationError"):
        hook.wait_for_generation(generation.id, poll_interval=0.1, timeout=10)


def test_wait_times_out_naming_id_and_last_status(connection) -> None:
    connection.set_generation_seconds(60)
    hook = StableAudioHook()
    generation = hook.submit_generation(request())
    with pytest.raises(
        StableAudioTimeoutError, match=rf"{generation.id} was still '(queued|generating)' after"
    ):
        hook.wait_for_generation(generation.id, poll_interval=0.1, timeout=0.3)


def test_wait_delivers_a_generation_reported_complete(connection, tmp_path: Path) -> None:
    connection.set_variants(completed_status="complete")  # the vendor's prose, not the schema
    hook = StableAudioHook()
    generation = hook.submit_generation(request())
    done = hook.wait_for_generation(generation.id, poll_interval=0.1, timeout=10)
    assert (done.state, done.status) == (GenerationState.SUCCEEDED, "complete")
    assert connection.ledger()["generations"][0]["status"] == "complete"
    assert done.audio_file is not None
    target = Path(hook.store_result(done, tmp_path / "clip.wav"))
    assert target.stat().st_size == done.audio_file.file_size


def test_fractional_credits_are_kept_at_submission_and_completion(connection) -> None:
    connection.set_variants(credits_per_step=0.125)
    hook = StableAudioHook()
    generation = hook.submit_generation(request())  # 10 steps
    assert generation.credits_used == 1.25
    done = hook.wait_for_generation(generation.id, poll_interval=0.1, timeout=10)
    assert done.credits_used == 1.25


def test_test_connection(connection, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = StableAudioHook().test_connection()
    assert ok, message
    assert connection.ledger()["generations"] == []  # proving the key paid for nothing
    set_connection(monkeypatch, host=connection.base_url, password="bad-key-99")
    ok, message = StableAudioHook().test_connection()
    assert not ok
    assert "401" in message
    assert "bad-key-99" not in message


def test_missing_key_and_bad_url_fail_before_any_request(emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host=emulator.base_url)
    with pytest.raises(StableAudioConfigError, match="has no API key"):
        StableAudioHook().submit_generation(request())
    set_connection(monkeypatch, host="http//broken", password=API_KEY)
    with pytest.raises(StableAudioConfigError, match="malformed Base URL"):
        StableAudioHook().submit_generation(request())
    assert emulator.ledger()["requests"] == []


def test_poll_retries_429_and_5xx_then_succeeds(scripted, clock: FakeClock) -> None:
    scripted.script(
        Reply(429, ENVELOPE, headers={"Retry-After": "0"}),
        Reply(503, {"message": "maintenance", "statusCode": 503}),
        Reply(200, b"not json"),
        Reply(200, {"id": "g", "status": "generating"}),
    )
    assert StableAudioHook().get_generation("g").status == "generating"
    assert len(scripted.seen) == 4


def test_poll_gives_up_after_max_retries(scripted, clock: FakeClock) -> None:
    scripted.script(*[Reply(502, b"bad gateway")] * 3)
    with pytest.raises(StableAudioRetryableError, match="HTTP 502"):
        StableAudioHook(max_retries=2).get_generation("g")
    assert len(scripted.seen) == 3


def test_submit_retries_only_rejections(scripted, clock: FakeClock) -> None:
    scripted.script(
        Reply(429, ENVELOPE, headers={"Retry-After": "0"}),
        Reply(503, {"message": "under maintenance", "statusCode": 503}),
        Reply(200, QUEUED),
    )
    assert StableAudioHook().submit_generation(request()).id == "gen-1:stable-audio"
    assert [s.method for s in scripted.seen] == ["POST"] * 3


@pytest.mark.parametrize(
    "reply",
    [Reply(504, {"message": "Generation timeout", "statusCode": 504}),
     Reply(502, b"<html>bad gateway</html>"), Reply(200, b"{not json"), Reply(drop=True)],
)  # fmt: skip
def test_submit_with_unknown_outcome_is_never_resent(scripted, reply: Reply, clock: FakeClock) -> None:
    scripted.script(reply, Reply(200, QUEUED))
    with pytest.raises(StableAudioSubmissionUnknownError, match="not sent again"):
        StableAudioHook().submit_generation(request())
    assert len(scripted.seen) == 1


def test_submit_retries_when_the_connection_was_refused(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    set_connection(monkeypatch, host="http://127.0.0.1:9", password=API_KEY)  # nothing listens on port 9
    with pytest.raises(StableAudioConnectionError) as caught:
        StableAudioHook(max_retries=1).submit_generation(request())
    assert caught.value.request_sent is False


def test_async_poll_matches_sync(connection) -> None:
    hook = StableAudioHook()
    generation = hook.submit_generation(request())

    async def poll() -> str:
        return (await StableAudioHook().aget_generation(generation.id)).status

    assert asyncio.run(poll()) in ("queued", "generating")


def test_async_poll_classifies_errors(connection, monkeypatch: pytest.MonkeyPatch) -> None:
    async def poll(generation_id: str) -> None:
        await StableAudioHook().aget_generation(generation_id)

    with pytest.raises(StableAudioPermanentError, match="unknown to the API"):
        asyncio.run(poll("missing"))
    set_connection(monkeypatch, host="http://127.0.0.1:9", password=API_KEY)
    with pytest.raises(StableAudioConnectionError, match="could not poll generation g"):
        asyncio.run(poll("g"))


def test_async_malformed_body_is_retryable(scripted) -> None:
    scripted.script(Reply(200, b"<html>"))

    async def poll() -> None:
        await StableAudioHook().aget_generation("g")

    with pytest.raises(StableAudioResponseError, match="not JSON"):
        asyncio.run(poll())


def test_accepted_id_with_an_unreadable_status_is_kept(scripted) -> None:
    scripted.script(Reply(200, {"generation_id": "old-style-id"}))
    generation = StableAudioHook().submit_generation(GenerationRequest.build(prompt="x"))
    assert (generation.id, generation.state) == ("old-style-id", GenerationState.PENDING)


def test_connection_test_needs_the_apis_answer(scripted) -> None:
    scripted.script(Reply(404, b"<html>Not Found</html>", headers={"Content-Type": "text/html"}))
    ok, message = StableAudioHook().test_connection()
    assert not ok
    assert "without the API's JSON body" in message


RETRY_AFTER_600 = Reply(429, ENVELOPE, headers={"Retry-After": "600"})


def test_sync_wait_never_sleeps_past_its_timeout(scripted, clock: FakeClock) -> None:
    scripted.script(*[RETRY_AFTER_600] * 10)
    with pytest.raises(StableAudioTimeoutError, match="still 'unknown'"):
        StableAudioHook().wait_for_generation("g", poll_interval=10, timeout=900)
    assert sum(clock.sleeps) <= 900
    # At 0 s and 600 s; not at the deadline, before the next Retry-After ends: it would be refused.
    assert len(scripted.seen) == 2


@pytest.mark.parametrize("call", ["submit", "poll"])
def test_call_retries_end_at_the_callers_timeout(scripted, clock: FakeClock, call: str) -> None:
    scripted.script(*[RETRY_AFTER_600] * 10)
    hook = StableAudioHook()
    attempt = (
        (lambda: hook.submit_generation(request(), timeout=100))
        if call == "submit"
        else (lambda: hook.get_generation("g", timeout=100))
    )
    with pytest.raises(StableAudioRetryableError, match="HTTP 429"):
        attempt()
    # Retry-After ends past the timeout: no second try, which could only be refused.
    assert clock.sleeps == []
    assert len(scripted.seen) == 1
