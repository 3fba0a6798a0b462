"""The download: streamed to a temporary file, checked, moved into place whole or not at all."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path

import pytest

from airflow_provider_stableaudio import download
from airflow_provider_stableaudio.exceptions import StableAudioDownloadError
from airflow_provider_stableaudio.generation_request import GenerationRequest
from airflow_provider_stableaudio.hooks.stability import StabilityAudioHook
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from tests.compressing_front import CompressingFront
from tests.conftest import API_KEY, set_connection
from tests.fake_clock import FakeClock, fake_clock
from tests.hooks.test_stable_audio_hook import request
from tests.scripted_server import Reply


def test_download_sends_no_key(scripted, tmp_path: Path) -> None:
    scripted.script(Reply(200, b"RIFF1234"))
    StableAudioHook().download_audio(scripted.base_url + "/files/x.wav", tmp_path / "x.wav")
    assert "Authorization" not in scripted.seen[0].headers


def test_downloads_ask_for_the_bytes_as_they_are(scripted, tmp_path: Path) -> None:
    scripted.script(Reply(200, b"RIFF...."))
    StableAudioHook().download_audio(scripted.base_url + "/f.wav", tmp_path / "f.wav")
    assert scripted.seen[0].headers["Accept-Encoding"] == "identity"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The download's waits between attempts, recorded and skipped."""
    return fake_clock(monkeypatch, download)


WHOLE = b"RIFF" + b"x" * 96
TRANSIENT_FAILURES = {
    "503": Reply(503, b"busy"),
    "429 with Retry-After": Reply(429, b"slow down", headers={"Retry-After": "3"}),
    "connection dropped": Reply(drop=True),
    "body cut short": Reply(200, WHOLE[:50], declared_length=len(WHOLE)),
    "short of file_size": Reply(200, WHOLE[:60]),
}


@pytest.mark.parametrize("failure", TRANSIENT_FAILURES.values(), ids=TRANSIENT_FAILURES.keys())
def test_a_transient_download_failure_is_retried_until_whole(
    scripted, tmp_path: Path, clock: FakeClock, failure: Reply
) -> None:
    scripted.script(failure, Reply(200, WHOLE))
    target = tmp_path / "clip.wav"
    StableAudioHook().download_audio(scripted.base_url + "/f.wav", target, expected_size=len(WHOLE))
    assert target.read_bytes() == WHOLE
    assert len(scripted.seen) == 2
    assert len(clock.sleeps) == 1
    assert list(tmp_path.iterdir()) == [target]  # the failed attempt left nothing behind


def test_retry_after_is_waited_before_the_next_download_attempt(
    scripted, tmp_path: Path, clock: FakeClock
) -> None:
    scripted.script(TRANSIENT_FAILURES["429 with Retry-After"], Reply(200, WHOLE))
    StableAudioHook().download_audio(scripted.base_url + "/f.wav", tmp_path / "clip.wav")
    assert clock.sleeps == [3]


@pytest.mark.parametrize("status", [403, 404, 410])
def test_an_expired_url_is_not_retried(scripted, tmp_path: Path, clock: FakeClock, status: int) -> None:
    scripted.script(Reply(status, b"gone"), Reply(200, WHOLE))
    with pytest.raises(
        StableAudioDownloadError, match=rf"HTTP {status} \(the URL may have expired\)"
    ) as caught:
        StableAudioHook().download_audio(scripted.base_url + "/f.wav", tmp_path / "clip.wav")
    assert caught.value.url_expired
    assert len(scripted.seen) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("failure", "words"),
    [(TRANSIENT_FAILURES["body cut short"], "Connection broken: IncompleteRead"),
     (TRANSIENT_FAILURES["short of file_size"], "got 60 bytes but file_size says 100"),
     (TRANSIENT_FAILURES["503"], "failed with HTTP 503")],
)  # fmt: skip
def test_a_download_that_keeps_failing_gives_up_and_leaves_nothing(
    scripted, tmp_path: Path, clock: FakeClock, failure: Reply, words: str
) -> None:
    scripted.script(*[failure] * 3)
    with pytest.raises(StableAudioDownloadError, match=re.escape(words)) as caught:
        StableAudioHook(max_retries=2).download_audio(
            scripted.base_url + "/f.wav", tmp_path / "clip.wav", expected_size=len(WHOLE)
        )
    assert "gave up after 3 attempts" in str(caught.value)
    assert not caught.value.url_expired
    assert len(scripted.seen) == 3
    assert list(tmp_path.iterdir()) == []


def test_download_replaces_an_existing_file_whole(connection, tmp_path: Path) -> None:
    hook = StableAudioHook()
    done = hook.wait_for_generation(hook.submit_generation(request()).id, poll_interval=0.1, timeout=10)
    target = tmp_path / "clip.wav"
    target.write_bytes(b"old")
    hook.download_audio(done.audio_file.url, target)  # type: ignore[union-attr]
    served = connection.ledger()["generations"][0]["bytes_served"]
    assert target.stat().st_size == served
    assert hashlib.sha256(target.read_bytes()).hexdigest() != hashlib.sha256(b"old").hexdigest()


# -- Stability's answers behind a compressing front: every request whose answer is audio asks for identity


@pytest.fixture
def front(stability, monkeypatch: pytest.MonkeyPatch):
    """``stability_default`` reaches the emulator through a front that gzips what it may."""
    with CompressingFront(stability.base_url) as front:
        point_stability_at(monkeypatch, front.base_url)
        yield front


def point_stability_at(monkeypatch: pytest.MonkeyPatch, base_url: str, **extra: object) -> None:
    set_connection(
        monkeypatch,
        "stability_default",
        conn_type="stability",
        host=base_url,
        password=API_KEY,
        extra=json.dumps(extra),
    )


def stability_request(model: str) -> GenerationRequest:
    return GenerationRequest.build(model, prompt="a bowed vibraphone drone", duration=2, output_format="wav")


def store_synchronously(hook: StabilityAudioHook, target: Path) -> None:
    hook.generate_to(stability_request("stable-audio-2.5"), target, timeout=30)


def store_by_the_served_once_poll(hook: StabilityAudioHook, target: Path) -> None:
    submitted = hook.submit_generation(stability_request("stable-audio-3"))
    hook.wait_for_generation(submitted.id, poll_interval=0.1, timeout=20, store_to=target)


def store_after_the_wait(hook: StabilityAudioHook, target: Path) -> None:
    submitted = hook.submit_generation(stability_request("stable-audio-3"))
    hook.store_result(hook.wait_for_generation(submitted.id, poll_interval=0.1, timeout=20), target)


STABILITY_AUDIO_PATHS = {
    "synchronous call (2.5)": store_synchronously,
    "served-once poll": store_by_the_served_once_poll,
    "result fetched after the wait": store_after_the_wait,
}


@pytest.mark.parametrize("store", STABILITY_AUDIO_PATHS.values(), ids=STABILITY_AUDIO_PATHS.keys())
def test_a_paid_stability_clip_arrives_whole_through_a_compressing_front(
    front, stability, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store
) -> None:
    if store is store_by_the_served_once_poll:
        stability.set_variants(stability_results_once=True)
        point_stability_at(monkeypatch, front.base_url, results_served_once=True)
    target = tmp_path / "clip.wav"
    store(StabilityAudioHook(), target)
    (generation,) = stability.ledger()["stability"]["generations"]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == generation["sha256"]
    assert list(tmp_path.iterdir()) == [target]
    audio_answers = [seen for seen in front.seen if "/results/" in seen.path or "stable-audio-2" in seen.path]
    assert audio_answers
    assert {seen.accept_encoding for seen in audio_answers} == {"identity"}


@pytest.mark.asyncio
async def test_the_triggers_poll_reads_the_clips_own_size_through_a_compressing_front(
    front, stability
) -> None:
    hook = StabilityAudioHook()
    submitted = await asyncio.to_thread(hook.submit_generation, stability_request("stable-audio-3"))
    await asyncio.to_thread(hook.wait_for_generation, submitted.id, poll_interval=0.1, timeout=20)
    finished = await hook.aget_generation(submitted.id)
    (generation,) = stability.ledger()["stability"]["generations"]
    assert finished.audio_file is not None
    assert finished.audio_file.file_size == generation["file_size"]  # not the compressed answer's
    assert front.seen[-1].accept_encoding == "identity"


def test_an_answer_compressed_although_identity_was_asked_is_still_stored_whole(
    stability, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = tmp_path / "clip.wav"
    with CompressingFront(stability.base_url, force=True) as front:
        point_stability_at(monkeypatch, front.base_url)
        store_synchronously(StabilityAudioHook(), target)
    (generation,) = stability.ledger()["stability"]["generations"]
    assert front.seen[-1].compressed
    assert hashlib.sha256(target.read_bytes()).hexdigest() == generation["sha256"]
