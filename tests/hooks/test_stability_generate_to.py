"""Stability AI's synchronous models (Stable Audio 2 / 2.5) through ``generate_to``, against the emulator.

The answer is the clip: streamed to storage whole or not at all, and never sent twice when it was lost.
Input audio (audio-to-audio, inpaint) is a real WAV file streamed into the request.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from airflow_provider_stableaudio.emulator.audio import synthesize_wav
from airflow_provider_stableaudio.exceptions import (
    StableAudioContentRefusedError,
    StableAudioSubmissionUnknownError,
)
from airflow_provider_stableaudio.generation_request import GenerationRequest
from airflow_provider_stableaudio.generation_result import GenerationState
from airflow_provider_stableaudio.hooks import base as hook_module
from airflow_provider_stableaudio.hooks.stability import StabilityAudioHook
from tests.conftest import API_KEY
from tests.fake_clock import fake_clock

WAV_3S = 44 + 3 * 44100 * 4


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def request(prompt: str = "a warm analog synth pad", **params: object) -> GenerationRequest:
    fields = {"duration": 3, "output_format": "wav", **params}
    return GenerationRequest.build("stable-audio-2.5", prompt=prompt, **fields)


@pytest.fixture
def input_wav(tmp_path: Path) -> Path:
    """An 8 s, 16-bit PCM stereo WAV to transform (Stability takes at least 6 s)."""
    path = tmp_path / "input" / "last_week.wav"
    path.parent.mkdir()
    path.write_bytes(synthesize_wav("last week's clip", 8))
    return path


def only_generation(emulator) -> dict:
    (generation,) = emulator.ledger()["stability"]["generations"]
    return generation


def test_text_to_audio_is_streamed_whole_with_seed_and_finish_reason(stability, tmp_path: Path) -> None:
    target = tmp_path / "out" / "clip.wav"
    generation = StabilityAudioHook().generate_to(request(seed=99), target, timeout=30)
    assert generation.stored_at is not None
    assert Path(generation.stored_at) == target
    served = only_generation(stability)
    assert target.stat().st_size == served["file_size"] == WAV_3S
    assert sha256(target) == served["sha256"]
    assert served["complete_serves"] == 1
    assert generation.state is GenerationState.SUCCEEDED
    assert generation.audio_file is not None
    assert generation.audio_file.file_size == WAV_3S
    assert generation.audio_file.seed == 99
    assert generation.audio_file.finish_reason == "SUCCESS"
    assert generation.audio_file.content_type == "audio/wav"
    assert list(target.parent.iterdir()) == [target]  # no staging file left beside it
    assert stability.ledger()["stability"]["submits"] == {"stable-audio-2.5": {"text-to-audio": 1}}


def test_without_the_audio_headers_seed_and_finish_reason_are_unknown(stability, tmp_path: Path) -> None:
    stability.set_variants(stability_audio_headers=False)
    target = tmp_path / "clip.wav"
    generation = StabilityAudioHook().generate_to(request(), target, timeout=30)
    assert generation.state is GenerationState.SUCCEEDED  # not assumed filtered
    assert generation.audio_file is not None
    assert generation.audio_file.seed is None
    assert generation.audio_file.finish_reason is None
    assert generation.audio_file.file_size == WAV_3S
    assert sha256(target) == only_generation(stability)["sha256"]


def test_audio_to_audio_streams_the_input_and_derives_from_it(
    stability, input_wav: Path, tmp_path: Path
) -> None:
    target = tmp_path / "remix.wav"
    built = request("the same, with brass", strength=0.4, init_audio=str(input_wav))
    assert built.mode == "audio-to-audio"
    StabilityAudioHook().generate_to(built, target, timeout=30)
    served = only_generation(stability)
    assert served["mode"] == "audio-to-audio"
    assert served["derived_from_input"] is True
    assert served["input_size"] == input_wav.stat().st_size
    assert served["input_sha256"] == sha256(input_wav)
    assert sha256(target) == served["sha256"]
    assert target.stat().st_size == WAV_3S


def test_inpaint_streams_the_input_and_derives_from_it(stability, input_wav: Path, tmp_path: Path) -> None:
    target = tmp_path / "patched.wav"
    built = request("a drum fill", duration=8, mask_start=2, mask_end=4, init_audio=str(input_wav))
    assert built.mode == "inpaint"
    StabilityAudioHook().generate_to(built, target, timeout=30)
    served = only_generation(stability)
    assert (served["mode"], served["mask_start"], served["mask_end"]) == ("inpaint", 2, 4)
    assert served["derived_from_input"] is True
    assert served["input_sha256"] == sha256(input_wav)
    assert sha256(target) == served["sha256"]
    # Outside the mask the clip is the input itself.
    assert target.read_bytes()[44 : 44 + 2 * 44100 * 4] == input_wav.read_bytes()[44 : 44 + 2 * 44100 * 4]


def test_stable_audio_3_inpaints_a_real_input_too(stability, input_wav: Path, tmp_path: Path) -> None:
    hook = StabilityAudioHook()
    built = GenerationRequest.build(
        "stable-audio-3",
        prompt="a drum fill",
        duration=8,
        output_format="wav",
        mask_start=1,
        mask_end=3,
        init_audio=input_wav,
    )
    submitted = hook.submit_generation(built)
    done = hook.wait_for_generation(submitted.id, poll_interval=0.1, timeout=20)
    target = tmp_path / "patched.wav"
    hook.store_result(done, target)
    served = only_generation(stability)
    assert served["derived_from_input"] is True
    assert served["input_sha256"] == sha256(input_wav)
    assert sha256(target) == served["sha256"]
    assert stability.ledger()["stability"]["submits"] == {"stable-audio-3": {"inpaint": 1}}


@pytest.mark.parametrize("fault", ["post_lost_response", "download_truncated"])
def test_a_lost_or_cut_answer_is_outcome_unknown_and_never_resent(
    stability, tmp_path: Path, fault: str
) -> None:
    stability.set_faults(**{f"rate_{fault}": 1.0})
    target = tmp_path / "clip.wav"
    with pytest.raises(StableAudioSubmissionUnknownError, match="not sent again") as caught:
        StabilityAudioHook().generate_to(request(), target, timeout=30)
    assert "check the generations on your Stability AI" in str(caught.value)
    assert API_KEY not in str(caught.value)
    ledger = stability.ledger()
    assert ledger["faults"][fault] == 1
    assert ledger["stability"]["submit_count"] == 1  # one paid generation, no second attempt
    assert [r["method"] for r in ledger["requests"]] == ["POST"]
    assert list(tmp_path.iterdir()) == []  # neither the clip nor a partial file


def test_a_filtered_answer_is_content_refused_and_stores_nothing(stability, tmp_path: Path) -> None:
    with pytest.raises(StableAudioContentRefusedError, match="CONTENT_FILTERED"):
        StabilityAudioHook().generate_to(
            request("[emulator:filtered] a siren"), tmp_path / "c.wav", timeout=30
        )
    assert list(tmp_path.iterdir()) == []
    assert stability.ledger()["stability"]["submit_count"] == 1


def test_moderation_refuses_the_call_and_creates_nothing(stability, tmp_path: Path) -> None:
    with pytest.raises(StableAudioContentRefusedError, match="refused the content"):
        StabilityAudioHook().generate_to(
            request("[emulator:moderate] a siren"), tmp_path / "c.wav", timeout=30
        )
    assert list(tmp_path.iterdir()) == []
    assert stability.ledger()["stability"]["generations"] == []


def test_a_rate_limited_call_waits_out_the_60_s_lockout_and_generates_once(
    stability, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = fake_clock(monkeypatch, hook_module)
    # 429, then through; no Retry-After, as Stability documents its 429.
    stability.set_faults(rate_429=0.5, retry_after=None, fault_methods=["POST"], seed=1)
    target = tmp_path / "clip.wav"
    StabilityAudioHook().generate_to(request(), target, timeout=120)
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] >= 60
    ledger = stability.ledger()
    assert [r["status"] for r in ledger["requests"]] == [429, 200]
    assert ledger["stability"]["submit_count"] == 1
    assert sha256(target) == only_generation(stability)["sha256"]


def test_a_rate_limited_submit_with_input_audio_is_retried_and_creates_one(
    stability, input_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The 429 comes before the emulator reads the body: the upload of the input is cut off.
    fake_clock(monkeypatch, hook_module)
    stability.set_faults(rate_429=0.5, retry_after=0, fault_methods=["POST"], seed=1)  # 429, then through
    built = GenerationRequest.build(
        "stable-audio-3", prompt="brass", duration=8, output_format="wav", init_audio=input_wav
    )
    generation = StabilityAudioHook().submit_generation(built)
    ledger = stability.ledger()
    assert [r["status"] for r in ledger["requests"]] == [429, 202]
    assert [g["id"] for g in ledger["stability"]["generations"]] == [generation.id]
    assert ledger["stability"]["generations"][0]["input_sha256"] == sha256(input_wav)
