"""The operator on a Stability AI connection: Stable Audio 3 deferred, 2.5 on the worker, input audio."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import wave
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from airflow_provider_stableaudio.emulator.audio import synthesize_wav
from airflow_provider_stableaudio.exceptions import (
    StableAudioContentRefusedError,
    StableAudioModelAccessError,
    StableAudioResultGoneError,
)
from airflow_provider_stableaudio.operators.stable_audio import STATE_KEY, StableAudioGenerateOperator
from airflow_provider_stableaudio.triggers.stable_audio import StableAudioGenerationTrigger
from tests.conftest import API_KEY, set_connection
from tests.operators.test_reattach import MemoryStore, a_try
from tests.operators.test_stable_audio_operator import context


def operator(tmp_path: Path, **kwargs: Any) -> StableAudioGenerateOperator:
    kwargs.setdefault("prompt", "a slow cello drone")
    kwargs.setdefault("duration", 3)
    kwargs.setdefault("output_format", "wav")
    kwargs.setdefault("output_path", str(tmp_path / "clip.wav"))
    return StableAudioGenerateOperator(
        task_id="generate", conn_id="stability_default", poll_interval=0.1, **kwargs
    )


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def seconds(path: str | Path) -> float:
    with wave.open(str(path)) as clip:
        return clip.getnframes() / clip.getframerate()


def the_event(trigger: StableAudioGenerationTrigger) -> dict[str, Any]:
    async def run() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(run())
    return event


def input_clip(tmp_path: Path, seconds: int = 8) -> Path:
    path = tmp_path / "last_week.wav"
    path.write_bytes(synthesize_wav("last week's loop", seconds))
    return path


def test_stable_audio_3_defers_then_the_worker_stores_the_result(stability, tmp_path: Path) -> None:
    ctx = context()
    task = operator(tmp_path, seed=7, steps=8, cfg_scale=5)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(ctx)
    (generation,) = stability.ledger()["stability"]["generations"]
    assert ctx["ti"].pushed == [("generation_id", generation["id"])]
    trigger = deferred.value.trigger
    assert (trigger.service, trigger.generation_id) == ("stability", generation["id"])

    event = the_event(trigger)
    stored_at = task.execute_complete(ctx, event)

    assert stored_at == str(tmp_path / "clip.wav")
    generation = stability.ledger()["stability"]["generations"][0]
    assert sha256(stored_at) == generation["sha256"]
    assert seconds(stored_at) == 3
    audio_file = ctx["ti"].xcom("audio_file")
    assert audio_file["url"] is None
    assert audio_file["generation_id"] == generation["id"]
    assert (audio_file["model"], audio_file["seed"], audio_file["finish_reason"]) == (
        "stable-audio-3",
        7,
        "SUCCESS",
    )
    assert audio_file["content_type"] == "audio/wav"
    assert audio_file["file_size"] == Path(stored_at).stat().st_size
    assert ctx["ti"].xcom("local_path") == stored_at
    assert (generation["model"], generation["mode"], generation["steps"], generation["cfg_scale"]) == (
        "stable-audio-3",
        "text-to-audio",
        8,
        5,
    )
    assert API_KEY not in repr(ctx["ti"].pushed)


def test_the_model_defaults_to_the_connections_service(stability, tmp_path: Path) -> None:
    with pytest.raises(TaskDeferred):
        operator(tmp_path).execute(context())
    assert stability.ledger()["stability"]["submits"] == {"stable-audio-3": {"text-to-audio": 1}}


def test_stable_audio_2_5_runs_on_the_worker_and_streams_to_output_path(stability, tmp_path: Path) -> None:
    ctx = context()
    stored_at = operator(tmp_path, model="stable-audio-2.5", duration=4).execute(ctx)
    (generation,) = stability.ledger()["stability"]["generations"]
    assert stored_at == str(tmp_path / "clip.wav")
    assert sha256(stored_at) == generation["sha256"]
    assert seconds(stored_at) == 4
    assert "generation_id" not in dict(ctx["ti"].pushed)  # a synchronous generation has no id
    assert ctx["ti"].xcom("audio_file")["model"] == "stable-audio-2.5"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.wav"]  # no temporary file left


@pytest.mark.parametrize(
    ("model", "fields", "mode"),
    [("stable-audio-2.5", {"strength": 0.4}, "audio-to-audio"),
     # 2.5's inpaint path names the model: a request with a model field is refused there.
     ("stable-audio-2.5", {"mask_start": 2, "mask_end": 4}, "inpaint"),
     ("stable-audio-3", {"strength": 0.8}, "audio-to-audio"),
     ("stable-audio-3", {"strength": 0}, "audio-to-audio"),  # 0..1 on Stable Audio 3
     ("stable-audio-2", {"strength": 0.5}, "audio-to-audio")],
)  # fmt: skip
def test_input_audio_drives_the_mode_and_the_result_derives_from_it(
    stability, tmp_path: Path, model: str, fields: dict, mode: str
) -> None:
    clip = input_clip(tmp_path)
    task = operator(tmp_path, model=model, init_audio=str(clip), duration=8, **fields)
    ctx = context()
    try:
        stored_at = task.execute(ctx)
    except TaskDeferred as deferred:
        stored_at = task.execute_complete(ctx, the_event(deferred.trigger))
    (generation,) = stability.ledger()["stability"]["generations"]
    assert (generation["mode"], generation["derived_from_input"]) == (mode, True)
    assert generation["input_sha256"] == sha256(clip)
    assert sha256(stored_at) == generation["sha256"]


@pytest.mark.parametrize(
    ("model", "fields"),
    [("stable-audio-2.5", {"duration": 2.5, "cfg_scale": 3.5}),  # cfg_scale on 2.5; a fractional length
     ("stable-audio-3", {"duration": "1.5", "cfg_scale": "2"})],  # as templates render them
)  # fmt: skip
def test_values_the_service_publishes_reach_it(stability, tmp_path: Path, model: str, fields: dict) -> None:
    task = operator(tmp_path, model=model, **fields)
    ctx = context()
    try:
        stored_at = task.execute(ctx)
    except TaskDeferred as deferred:
        stored_at = task.execute_complete(ctx, the_event(deferred.trigger))
    (generation,) = stability.ledger()["stability"]["generations"]
    assert (generation["duration"], generation["cfg_scale"]) == tuple(float(v) for v in fields.values())
    assert seconds(stored_at) == float(fields["duration"])


def test_an_account_without_stable_audio_3_fails_without_retries_naming_2_5(
    stability, tmp_path: Path
) -> None:
    stability.set_variants(stability_sa3_access_denied=True)
    with pytest.raises(AirflowFailException, match=r"use model='stable-audio-2\.5'") as caught:
        operator(tmp_path).execute(context())
    assert isinstance(caught.value.__cause__, StableAudioModelAccessError)
    assert stability.ledger()["stability"]["submit_count"] == 0
    assert list(tmp_path.iterdir()) == []


def test_refused_content_fails_without_retries_and_pays_nothing(stability, tmp_path: Path) -> None:
    with pytest.raises(AirflowFailException, match="refused the content") as caught:
        operator(tmp_path, prompt="[emulator:moderate] a forbidden song").execute(context())
    assert isinstance(caught.value.__cause__, StableAudioContentRefusedError)
    assert stability.ledger()["stability"]["submit_count"] == 0
    assert list(tmp_path.iterdir()) == []


def test_a_filtered_result_fails_and_stores_nothing(stability, tmp_path: Path) -> None:
    with pytest.raises(AirflowFailException, match="CONTENT_FILTERED") as caught:
        operator(tmp_path, model="stable-audio-2.5", prompt="[emulator:filtered] a jingle").execute(context())
    assert isinstance(caught.value.__cause__, StableAudioContentRefusedError)
    assert list(tmp_path.iterdir()) == []


def test_a_task_resuming_after_the_result_expired_says_so(stability, tmp_path: Path) -> None:
    stability.set_variants(stability_result_ttl=0.5)
    ctx = context()
    task = operator(tmp_path)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(ctx)
    event = the_event(deferred.value.trigger)
    time.sleep(1)
    with pytest.raises(AirflowFailException, match="kept about 24 hours") as caught:
        task.execute_complete(ctx, {**event, "finished_at": time.time() - 30 * 3600})
    assert isinstance(caught.value.__cause__, StableAudioResultGoneError)
    assert "It finished 30.0 hours before the task resumed: it expired." in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_retry_reattaches_to_the_stable_audio_3_generation(stability, tmp_path: Path) -> None:
    store = MemoryStore()
    with pytest.raises(TaskDeferred):
        operator(tmp_path).execute(a_try(store))
    assert store.values[STATE_KEY]["generation_id"]
    second = a_try(store)
    with pytest.raises(TaskDeferred) as deferred:
        operator(tmp_path).execute(second)
    assert deferred.value.trigger.generation_id == store.values[STATE_KEY]["generation_id"]
    assert stability.ledger()["stability"]["submit_count"] == 1


def served_once(stability, monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator serves each result once; the connection says so."""
    stability.set_variants(stability_results_once=True)
    set_connection(
        monkeypatch,
        "stability_default",
        conn_type="stability",
        host=stability.base_url,
        password=API_KEY,
        extra=json.dumps({"results_served_once": True}),
    )


def test_a_result_served_once_is_stored_by_the_poll_that_finds_it(
    stability, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served_once(stability, monkeypatch)
    ctx = context()
    stored_at = operator(tmp_path).execute(ctx)  # deferrable by default, yet it must not defer

    (generation,) = stability.ledger()["stability"]["generations"]
    assert sha256(stored_at) == generation["sha256"]
    assert generation["complete_serves"] == 1
    assert stability.ledger()["stability"]["submit_count"] == 1
    assert ctx["ti"].xcom("local_path") == stored_at


def test_a_result_served_once_that_a_trigger_used_up_fails_for_good_and_says_what_to_set(
    stability, tmp_path: Path
) -> None:
    stability.set_variants(stability_results_once=True)  # the connection does not say so
    ctx = context()
    task = operator(tmp_path)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(ctx)
    event = the_event(deferred.value.trigger)
    with pytest.raises(AirflowFailException) as caught:
        task.execute_complete(ctx, event)
    assert isinstance(caught.value.__cause__, StableAudioResultGoneError)
    assert '{"results_served_once": true}' in str(caught.value)
    assert "minutes before the task resumed" in str(caught.value)
    assert stability.ledger()["stability"]["submit_count"] == 1
    assert list(tmp_path.iterdir()) == []


def test_a_sensor_on_a_result_served_once_stores_it_while_poking(
    stability, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow_provider_stableaudio.sensors.stable_audio import StableAudioGenerationSensor

    served_once(stability, monkeypatch)
    ctx = context()
    generation_id = operator(tmp_path, wait_for_completion=False, output_path=None).execute(ctx)
    sensor = StableAudioGenerationSensor(
        task_id="wait",
        conn_id="stability_default",
        generation_id=generation_id,
        output_path=str(tmp_path / "sensed.wav"),
        poke_interval=0.2,
        timeout=30,
    )
    stored_at = sensor.execute(context())
    (generation,) = stability.ledger()["stability"]["generations"]
    assert sha256(stored_at) == generation["sha256"]
    assert generation["complete_serves"] == 1


def test_a_resumed_task_delivers_even_when_its_worker_cannot_reach_the_input_clip(
    stability, tmp_path: Path
) -> None:
    clip = input_clip(tmp_path)
    task = operator(tmp_path, init_audio=str(clip), strength=0.5, duration=8)
    ctx = context()
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(ctx)
    clip.unlink()  # another worker resumes it, or the clip was a temporary file: it is paid for anyway
    stored_at = task.execute_complete(ctx, the_event(deferred.value.trigger))
    (generation,) = stability.ledger()["stability"]["generations"]
    assert sha256(stored_at) == generation["sha256"]


def test_a_result_served_once_and_cut_short_fails_for_good_without_a_second_submit(
    stability, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served_once(stability, monkeypatch)
    stability.set_faults(rate_download_truncated=1.0, fault_methods=["GET"], seed=1)
    stability.set_generation_seconds(0)
    with pytest.raises(AirflowFailException, match="served once only, is lost") as caught:
        operator(tmp_path).execute(context())
    assert isinstance(caught.value.__cause__, StableAudioResultGoneError)
    assert stability.ledger()["stability"]["submit_count"] == 1
    assert list(tmp_path.iterdir()) == []
