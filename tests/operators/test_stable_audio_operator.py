"""The operator: validation first, the id pushed first, deferral, completion and the synchronous path."""

from __future__ import annotations

import hashlib
import random
import re
import time
import wave
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from airflow_provider_stableaudio import download
from airflow_provider_stableaudio.events import error_event, success_event, timeout_event
from airflow_provider_stableaudio.exceptions import (
    StableAudioConfigError,
    StableAudioGenerationFailed,
    StableAudioResponseError,
    StableAudioTimeoutError,
    StableAudioValidationError,
)
from airflow_provider_stableaudio.hooks import base as hook_module
from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator
from airflow_provider_stableaudio.triggers.stable_audio import StableAudioGenerationTrigger
from tests.conftest import API_KEY, set_connection
from tests.fake_clock import fake_clock
from tests.scripted_server import Reply


class RecordingTI:
    """Stands in for the task instance: records XCom pushes in order."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, Any]] = []

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed.append((key, value))

    def xcom(self, key: str) -> Any:
        return dict(self.pushed)[key]


def context() -> dict[str, Any]:
    return {"ti": RecordingTI()}


def operator(**kwargs: Any) -> StableAudioGenerateOperator:
    kwargs.setdefault("prompt", "a cheerful ukulele riff")
    kwargs.setdefault("seconds_total", 2)
    return StableAudioGenerateOperator(task_id="generate", poll_interval=0.1, **kwargs)


def test_template_fields() -> None:
    assert set(StableAudioGenerateOperator.template_fields) == {
        "prompt", "seconds_total", "seconds_start", "steps", "model", "output_path",
        "duration", "seed", "cfg_scale", "output_format", "init_audio", "mode", "strength",
        "mask_start", "mask_end",
    }  # fmt: skip


def test_defers_with_the_right_trigger_after_pushing_the_id(connection) -> None:
    ctx = context()
    with pytest.raises(TaskDeferred) as deferred:
        operator(timeout=120).execute(ctx)
    (generation,) = connection.ledger()["generations"]
    assert ctx["ti"].pushed == [("generation_id", generation["id"])]
    trigger = deferred.value.trigger
    assert isinstance(trigger, StableAudioGenerationTrigger)
    assert (trigger.generation_id, trigger.conn_id, trigger.poll_interval) == (
        generation["id"],
        "stableaudio_default",
        0.1,
    )
    assert trigger.end_time == pytest.approx(time.time() + 120, abs=5)
    assert deferred.value.method_name == "execute_complete"
    # The task's own timeout is later than the trigger's deadline plus its last poll (the 30 s
    # request timeout), so the trigger's clearer event wins.
    assert deferred.value.timeout == timedelta(seconds=120 + 30 + 60)
    assert generation["seconds_total"] == 2
    assert generation["steps"] == 100


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"prompt": " "}, "prompt must be a non-empty string"),
     ({"seconds_total": 48}, "seconds_total must be an integer from 1 to 47, got 48"),
     ({"seconds_total": "thirty"}, "seconds_total must be an integer from 1 to 47, got 'thirty' (str)"),
     ({"steps": 0}, "steps must be an integer from 1 to 1000, got 0"),
     ({"model": "stable-audio-9"}, "model must be one of ['stable-audio']")],
)  # fmt: skip
def test_bad_input_fails_before_any_request(connection, kwargs: dict, words: str) -> None:
    with pytest.raises(AirflowFailException) as caught:
        operator(**kwargs).execute(context())
    assert isinstance(caught.value.__cause__, StableAudioValidationError)
    assert words in str(caught.value)
    assert connection.ledger()["requests"] == []


def test_numbers_rendered_as_text_by_a_template_are_sent_as_integers(connection) -> None:
    operator(seconds_total=" 3 ", steps="12", wait_for_completion=False).execute(context())
    (generation,) = connection.ledger()["generations"]
    assert (generation["seconds_total"], generation["steps"]) == (3, 12)


def test_unusable_output_folder_fails_before_any_request(connection, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AirflowFailException, match=r"output_path folder .* cannot be created"):
        operator(output_path=str(blocker / "sub" / "clip.wav")).execute(context())
    assert connection.ledger()["requests"] == []


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"poll_interval": 0}, "poll_interval must be a number of seconds greater than 0, got 0"),
     ({"timeout": -5}, "timeout must be a number of seconds greater than 0, got -5"),
     ({"wait_for_completion": False, "output_path": "/tmp/x.wav"},
      "output_path needs wait_for_completion=True")],
)  # fmt: skip
def test_bad_settings_fail_when_the_dag_is_parsed(kwargs: dict, words: str) -> None:
    kwargs = {"poll_interval": 0.1, **kwargs}
    with pytest.raises(StableAudioConfigError, match=re.escape(words)):
        StableAudioGenerateOperator(task_id="t", prompt="x", **kwargs)


def test_submit_only_returns_the_generation_id(connection) -> None:
    ctx = context()
    result = operator(wait_for_completion=False).execute(ctx)
    assert result == connection.ledger()["generations"][0]["id"]
    assert ctx["ti"].pushed == [("generation_id", result)]


def test_synchronous_path_downloads_and_pushes_xcoms(connection, tmp_path: Path) -> None:
    ctx = context()
    target = tmp_path / "out" / "clip.wav"
    url = operator(deferrable=False, output_path=str(target)).execute(ctx)
    keys = [key for key, _ in ctx["ti"].pushed]
    assert keys == ["generation_id", "audio_file", "local_path"]
    audio_file = ctx["ti"].xcom("audio_file")
    assert audio_file["url"] == url
    assert audio_file["generation_id"] == ctx["ti"].xcom("generation_id")
    assert audio_file["credits_used"] == 25200
    assert ctx["ti"].xcom("local_path") == str(target)
    with wave.open(str(target)) as clip:
        assert clip.getnframes() / clip.getframerate() == 2
    assert target.stat().st_size == audio_file["file_size"]


def test_fractional_credits_reach_the_audio_file_xcom_and_the_log(connection) -> None:
    connection.set_variants(credits_per_step=0.125)  # 12.5 credits at 100 steps
    ctx = context()
    with structlog.testing.capture_logs() as logs:
        operator(deferrable=False).execute(ctx)
    assert ctx["ti"].xcom("audio_file")["credits_used"] == 12.5
    lines = [entry["event"] % entry.get("positional_args", ()) for entry in logs]
    assert any(line.startswith("Submitted") and "(12.5 credits)" in line for line in lines)
    assert any(line.endswith(" bytes, 12.5 credits)") for line in lines)  # on completion


def test_synchronous_failure_names_the_generation(connection) -> None:
    with pytest.raises(StableAudioGenerationFailed, match=r"generation .*:stable-audio failed"):
        operator(deferrable=False, prompt="[emulator:error] gong").execute(context())


def test_execute_complete_success_downloads(connection, tmp_path: Path) -> None:
    ctx = context()
    op = operator(output_path=str(tmp_path / "clip.wav"))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    trigger = deferred.value.trigger
    # Let the generation finish, then hand the operator the event the trigger would send.
    generation = op.hook.wait_for_generation(trigger.generation_id, poll_interval=0.1, timeout=10)
    url = op.execute_complete(ctx, success_event(generation))
    assert url == generation.audio_file.url  # type: ignore[union-attr]
    assert Path(ctx["ti"].xcom("local_path")).stat().st_size == generation.audio_file.file_size  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("event", "error", "words"),
    [(error_event("gen-9", "GenerationError: boom"), StableAudioGenerationFailed,
      "generation gen-9 failed: GenerationError: boom"),
     (timeout_event("gen-9", "still 'generating'"), StableAudioTimeoutError,
      "generation gen-9 timed out: still 'generating'"),
     ({"status": "cancelled", "generation_id": "gen-9"}, StableAudioResponseError,
      "unexpected trigger event for generation gen-9")],
)  # fmt: skip
def test_execute_complete_fails_on_anything_but_success(event: dict, error: type, words: str) -> None:
    ctx = context()
    with pytest.raises(error, match=re.escape(words)):
        operator().execute_complete(ctx, event)
    assert ctx["ti"].pushed == []


def test_already_completed_at_submission_does_not_defer(scripted) -> None:
    done = {"id": "g", "status": "completed", "audio_file": {"url": "https://cdn.example/g.wav"}}
    scripted.script(Reply(200, done))
    ctx = context()
    assert operator().execute(ctx) == "https://cdn.example/g.wav"
    assert [k for k, _ in ctx["ti"].pushed] == ["generation_id", "audio_file"]
    assert len(scripted.seen) == 1


def test_unknown_submission_outcome_fails_the_task_without_retries(scripted) -> None:
    scripted.script(Reply(drop=True))
    with pytest.raises(AirflowFailException, match="not sent again"):
        operator().execute(context())
    assert len(scripted.seen) == 1


def test_a_synchronous_wait_ends_at_its_timeout_whatever_retry_after_says(
    scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = fake_clock(monkeypatch, hook_module)
    queued = {"id": "g", "status": "queued"}
    slow_down = Reply(429, {"message": "slow down", "statusCode": 429}, headers={"Retry-After": "600"})
    scripted.script(Reply(200, queued), *[slow_down] * 20)
    with pytest.raises(StableAudioTimeoutError, match="timeout 900s"):
        operator(deferrable=False, timeout=900).execute(context())
    assert sum(clock.sleeps) <= 900


def test_a_download_cut_short_once_is_retried_in_the_task(
    connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before Airflow 3.3 (no task state) a task retry pays for a new generation: the task retries
    # the download itself. The emulator's documented draws: one random() per download, seeded.
    clock = fake_clock(monkeypatch, download)
    rate = 0.5
    seed = next(n for n in range(1000) if (draws := random.Random(n)).random() < rate <= draws.random())
    connection.set_generation_seconds(0)
    connection.set_faults(rate_download_truncated=rate, seed=seed)
    target = tmp_path / "clip.wav"
    operator(deferrable=False, output_path=str(target)).execute(
        {"ti": RecordingTI(), "task_state_store": None}
    )
    ledger = connection.ledger()
    assert ledger["faults"]["download_truncated"] == 1
    assert len(ledger["generations"]) == 1
    assert hashlib.sha256(target.read_bytes()).hexdigest() == ledger["generations"][0]["sha256"]
    assert len(clock.sleeps) == 1


@pytest.mark.parametrize(
    ("case", "words"),
    [("bad input", "seconds_total must be an integer from 1 to 47, got 48"),
     ("unusable connection", "has no API key"),
     ("unusable output_path", "no filesystem for this scheme")],
)  # fmt: skip
def test_input_and_config_errors_fail_without_task_retries(
    emulator, monkeypatch: pytest.MonkeyPatch, case: str, words: str
) -> None:
    # They fail the same way on every try: AirflowFailException skips the task's retries.
    set_connection(
        monkeypatch, host=emulator.base_url, password="" if case == "unusable connection" else API_KEY
    )
    kwargs = {
        "bad input": {"seconds_total": 48},
        "unusable connection": {},
        "unusable output_path": {"output_path": "nosuchscheme://bucket/clip.wav"},
    }[case]
    with pytest.raises(AirflowFailException, match=re.escape(words)) as caught:
        operator(**kwargs).execute(context())
    assert isinstance(caught.value.__cause__, (StableAudioValidationError, StableAudioConfigError))
    assert emulator.ledger()["requests"] == []
