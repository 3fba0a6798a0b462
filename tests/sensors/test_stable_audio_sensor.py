"""The sensor: poke, deferral, completion, and the same XComs as the operator."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    PokeReturnValue,
    TaskDeferred,
)

from airflow_provider_stableaudio.events import error_event, success_event, timeout_event
from airflow_provider_stableaudio.exceptions import (
    StableAudioConfigError,
    StableAudioGenerationFailed,
    StableAudioKeyRefusedError,
    StableAudioPermanentError,
)
from airflow_provider_stableaudio.generation_request import GenerationRequest
from airflow_provider_stableaudio.hooks import base as hook_module
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from airflow_provider_stableaudio.sensors.stable_audio import StableAudioGenerationSensor
from airflow_provider_stableaudio.triggers.stable_audio import StableAudioGenerationTrigger
from tests.conftest import API_KEY, set_connection
from tests.dags import load_dag
from tests.fake_clock import fake_clock
from tests.operators.test_stable_audio_operator import context
from tests.scripted_server import Reply


def submit(prompt: str = "a lonely saxophone") -> str:
    return StableAudioHook().submit_generation(GenerationRequest.build(prompt=prompt, seconds_total=1)).id


def sensor(generation_id: str, **kwargs: object) -> StableAudioGenerationSensor:
    return StableAudioGenerationSensor(
        task_id="wait", generation_id=generation_id, poke_interval=0.1, **kwargs
    )  # type: ignore[arg-type]


def test_template_fields() -> None:
    assert set(StableAudioGenerationSensor.template_fields) == {"generation_id", "output_path"}


def test_poke_pending_then_done_pushes_the_operators_xcoms(connection, tmp_path: Path) -> None:
    generation_id = submit()
    ctx = context()
    waiting = sensor(generation_id, output_path=str(tmp_path / "clip.wav"))
    assert waiting.poke(ctx) is False
    connection.set_generation_seconds(0)
    result = waiting.poke(ctx)
    assert isinstance(result, PokeReturnValue)
    assert result.is_done
    audio_file = ctx["ti"].xcom("audio_file")
    assert result.xcom_value == audio_file["url"]
    assert [k for k, _ in ctx["ti"].pushed] == ["audio_file", "local_path"]
    assert Path(ctx["ti"].xcom("local_path")).stat().st_size == audio_file["file_size"]


def test_deferrable_execute_defers_on_the_shared_trigger(connection) -> None:
    generation_id = submit()
    with pytest.raises(TaskDeferred) as deferred:
        sensor(generation_id, timeout=300).execute(context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, StableAudioGenerationTrigger)
    assert (trigger.generation_id, trigger.poll_interval) == (generation_id, 0.1)
    assert trigger.end_time == pytest.approx(time.time() + 300, abs=5)
    assert deferred.value.timeout == timedelta(seconds=300 + 30 + 60)


def test_deferrable_execute_returns_at_once_when_already_done(connection) -> None:
    generation_id = submit()
    connection.set_generation_seconds(0)
    ctx = context()
    url = sensor(generation_id).execute(ctx)
    assert url == ctx["ti"].xcom("audio_file")["url"]


def test_poke_mode_waits_on_the_worker(connection) -> None:
    generation_id = submit()
    connection.set_generation_seconds(0.5)
    ctx = context()
    url = sensor(generation_id, deferrable=False, mode="poke").execute(ctx)
    assert url == ctx["ti"].xcom("audio_file")["url"]


def test_failed_generation_fails_the_poke(connection) -> None:
    generation_id = submit("[emulator:error] kazoo")
    connection.set_generation_seconds(0)
    with pytest.raises(StableAudioGenerationFailed, match=f"{generation_id} failed"):
        sensor(generation_id).poke(context())


def test_unknown_generation_fails_the_poke(connection) -> None:
    with pytest.raises(StableAudioPermanentError, match="unknown to the API"):
        sensor("missing").poke(context())


@pytest.mark.parametrize("mode", ["reschedule", "poke"])
def test_a_poke_makes_one_attempt_and_returns(scripted, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    # A transient error is "not done yet": the sensor's own schedule retries, never a sleep in poke.
    clock = fake_clock(monkeypatch, hook_module)
    scripted.script(
        *[Reply(429, {"message": "slow down", "statusCode": 429}, headers={"Retry-After": "600"})] * 6
    )
    assert sensor("g", deferrable=False, mode=mode).poke(context()) is False
    assert len(scripted.seen) == 1
    assert clock.sleeps == []


def test_execute_complete(connection) -> None:
    generation_id = submit()
    connection.set_generation_seconds(0)
    generation = StableAudioHook().get_generation(generation_id)
    ctx = context()
    assert sensor(generation_id).execute_complete(ctx, success_event(generation)) == generation.audio_file.url  # type: ignore[union-attr]
    with pytest.raises(StableAudioGenerationFailed, match=f"{generation_id} failed: boom"):
        sensor(generation_id).execute_complete(context(), error_event(generation_id, "boom"))


# -- a deferred sensor ends the way every Airflow sensor does -----------------------------------


@pytest.mark.parametrize("poke_interval", [0, -1, timedelta(0)])
def test_poke_interval_must_be_greater_than_zero(poke_interval: object) -> None:
    with pytest.raises(
        StableAudioConfigError, match="poke_interval must be a number of seconds greater than 0"
    ):
        StableAudioGenerationSensor(task_id="wait", generation_id="g", poke_interval=poke_interval)  # type: ignore[arg-type]


def test_a_deferred_timeout_is_a_sensor_timeout() -> None:
    with pytest.raises(AirflowSensorTimeout, match="generation g-7 timed out: still 'queued'"):
        sensor("g-7").execute_complete(context(), timeout_event("g-7", "still 'queued'"))


@pytest.mark.parametrize(
    ("settings", "event", "outcome"),
    [({"soft_fail": True}, timeout_event("g", "still 'queued'"), AirflowSkipException),
     ({"never_fail": True}, timeout_event("g", "still 'queued'"), AirflowSkipException),
     ({"never_fail": True}, error_event("g", "GenerationError: boom"), AirflowSkipException),
     ({"soft_fail": True}, error_event("g", "GenerationError: boom"), StableAudioGenerationFailed),
     ({}, error_event("g", "GenerationError: boom"), StableAudioGenerationFailed)],
)  # fmt: skip
def test_resuming_applies_soft_fail_and_never_fail_as_in_poke_mode(
    settings: dict, event: dict, outcome: type[Exception]
) -> None:
    # resume_execution is how Airflow calls execute_complete after the trigger fired.
    with pytest.raises(outcome):
        sensor("g", **settings).resume_execution("execute_complete", {"event": event}, context())


def test_never_fail_skips_when_the_first_check_on_the_worker_fails(connection) -> None:
    generation_id = submit("[emulator:error] a cracked cymbal")
    connection.set_generation_seconds(0)
    with pytest.raises(AirflowSkipException, match="never_fail"):
        sensor(generation_id, never_fail=True).execute(context())


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("dag_id", ["sensor_soft_fail_times_out", "sensor_never_fail_meets_an_error"])
def test_a_deferred_sensor_that_gets_no_clip_is_skipped_end_to_end(connection, dag_id: str) -> None:
    connection.set_generation_seconds(3600 if "times_out" in dag_id else 0.3)
    run = load_dag("sensor_outcomes.py", dag_id).test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"submit": "success", "wait": "skipped"}


def test_an_unusable_connection_fails_the_sensor_without_retries(
    emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, host=emulator.base_url)  # no API key
    with pytest.raises(AirflowFailException, match="has no API key"):
        sensor("g", deferrable=False).execute(context())
    with pytest.raises(AirflowSkipException):  # a sensor failure, so soft_fail skips it
        sensor("g", deferrable=False, soft_fail=True).execute(context())
    assert emulator.ledger()["requests"] == []


def test_a_refused_key_fails_the_poke_naming_the_key(connection, monkeypatch: pytest.MonkeyPatch) -> None:
    generation_id = submit()
    set_connection(monkeypatch, host=connection.base_url, password="rotated-away-key")
    with pytest.raises(StableAudioKeyRefusedError, match="refused the connection's API key") as caught:
        sensor(generation_id, deferrable=False).poke(context())
    assert f"generation {generation_id} failed" not in str(caught.value)


def test_an_unwritable_output_path_fails_before_a_served_once_result_is_polled(
    stability, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow_provider_stableaudio.hooks.stability import StabilityAudioHook

    stability.set_variants(stability_results_once=True)
    set_connection(
        monkeypatch,
        "stability_default",
        conn_type="stability",
        host=stability.base_url,
        password=API_KEY,
        extra=json.dumps({"results_served_once": True}),
    )
    stability.set_generation_seconds(0)
    request = GenerationRequest.build("stable-audio-3", prompt="a bell", duration=3, output_format="wav")
    generation_id = StabilityAudioHook().submit_generation(request).id
    (tmp_path / "not-a-folder").write_bytes(b"")

    def waiting(output_path: Path) -> StableAudioGenerationSensor:
        return sensor(generation_id, conn_id="stability_default", output_path=str(output_path))

    with pytest.raises(AirflowFailException, match="cannot be created") as caught:
        waiting(tmp_path / "not-a-folder" / "clip.wav").execute(context())
    assert isinstance(caught.value.__cause__, StableAudioConfigError)
    (generation,) = stability.ledger()["stability"]["generations"]
    assert generation["served"] == 0  # the result is still there for a sensor that can store it
    stored_at = waiting(tmp_path / "clips" / "clip.wav").execute(context())
    assert Path(stored_at).stat().st_size > 0
