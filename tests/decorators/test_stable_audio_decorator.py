"""``@task.stable_audio``: registered with Airflow, the function's request checked before any
request, the function called on the first try of a run (not on its automatic retries) and never on
resume, and otherwise the operator's behaviour."""

from __future__ import annotations

import re
from typing import Any

import pendulum
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred
from airflow.sdk import DAG, task

from airflow_provider_stableaudio.decorators.stable_audio import (
    RETURNED_KWARG,
    RETURNED_STATE_KEY,
    StableAudioDecoratedOperator,
    stable_audio_task,
)
from airflow_provider_stableaudio.events import success_event
from airflow_provider_stableaudio.exceptions import (
    StableAudioConfigError,
    StableAudioTimeoutError,
    StableAudioValidationError,
)
from airflow_provider_stableaudio.generation_result import AudioFile, Generation, GenerationState
from tests.operators.test_reattach import MemoryStore, a_try, after_a_clear
from tests.operators.test_stable_audio_operator import RecordingTI

ALLOWED = "['model', 'prompt', 'seconds_start', 'seconds_total', 'steps']"


def decorated(
    returns: Any, calls: list[str] | None = None, **decorator_args: Any
) -> StableAudioDecoratedOperator:
    """The task ``@task.stable_audio(**decorator_args)`` makes of a function returning ``returns``."""
    decorator_args.setdefault("poll_interval", 0.1)
    with DAG("decorated", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:

        @task.stable_audio(**decorator_args)
        def make_clip(topic: str) -> Any:
            if calls is not None:
                calls.append(topic)
            return returns

        make_clip("rain")
    op = dag.get_task("make_clip")
    assert isinstance(op, StableAudioDecoratedOperator)
    return op


def test_task_stable_audio_is_registered_with_airflow() -> None:
    try:
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Manager
    except ImportError:  # Airflow < 3.2: the core's providers manager lists them
        from airflow.providers_manager import ProvidersManager as Manager  # type: ignore[assignment]

    assert Manager().taskflow_decorators["stable_audio"] is stable_audio_task
    assert task.stable_audio is stable_audio_task  # as a DAG file reaches it
    assert decorated("a prompt").custom_operator_name == "@task.stable_audio"


@pytest.mark.parametrize(
    ("returns", "words"),
    [(None, f"'make_clip': returned None (NoneType); return the prompt (a string) or a dict of request fields from {ALLOWED}"),
     (42, "'make_clip': returned 42 (int); return the prompt"),
     (["rain"], "returned ['rain'] (list)"),
     ({"prompt": "rain", "tempo": 120}, f"'make_clip': returned a dict with unknown field(s) ['tempo']; return the prompt (a string) or a dict of request fields from {ALLOWED}"),
     ("  ", "'make_clip': prompt must be a non-empty string"),
     ({"seconds_total": 5}, "'make_clip': prompt is required"),
     ({"prompt": "rain", "seconds_total": 48}, "'make_clip': seconds_total must be an integer from 1 to 47, got 48"),
     ({"prompt": "rain", "model": "stable-audio-9"}, "'make_clip': model must be one of ['stable-audio']")],
)  # fmt: skip
def test_a_bad_return_fails_before_any_request_without_retries(connection, returns: Any, words: str) -> None:
    with pytest.raises(AirflowFailException, match=re.escape(words)) as caught:
        decorated(returns).execute({"ti": RecordingTI()})
    assert isinstance(caught.value.__cause__, StableAudioValidationError)
    assert "@task.stable_audio function" in str(caught.value)
    assert connection.ledger()["requests"] == []


def test_the_prompt_comes_from_the_function_not_the_decorator() -> None:
    with pytest.raises(StableAudioConfigError, match="not from prompt="):
        decorated("a prompt", prompt="another")


def test_a_dict_annotation_does_not_split_the_return_value() -> None:
    # TaskFlow would push a dict-annotated function's result as several XComs: the task returns a URL.
    assert decorated({"prompt": "rain"}).multiple_outputs is False


def test_the_function_runs_once_and_never_on_resume(connection) -> None:
    calls: list[str] = []
    returned = {"prompt": "rain on a tin roof", "steps": 20}
    ti = RecordingTI()
    with pytest.raises(TaskDeferred) as deferred:
        decorated(returned, calls, seconds_total=3).execute({"ti": ti})
    assert calls == ["rain"]
    (generation,) = connection.ledger()["generations"]
    assert (generation["prompt"], generation["steps"], generation["seconds_total"]) == (
        "rain on a tin roof",
        20,
        3,
    )
    assert ti.pushed == [("generation_id", generation["id"])]
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.kwargs == {RETURNED_KWARG: returned}

    # The resumed task is a new instance, as the worker builds it from the DAG file.
    resumed = decorated(returned, calls, seconds_total=3)
    done = Generation(
        id=generation["id"],
        status="completed",
        state=GenerationState.SUCCEEDED,
        audio_file=AudioFile(url="https://cdn.example/rain.wav", file_name="rain.wav", file_size=10),
        credits_used=1260,
    )
    ti = RecordingTI()
    url = resumed.execute_complete({"ti": ti}, success_event(done), **deferred.value.kwargs)
    assert calls == ["rain"]  # not called again
    assert url == "https://cdn.example/rain.wav"
    assert ti.xcom("audio_file")["credits_used"] == 1260
    assert resumed.build_request().params["prompt"] == "rain on a tin roof"


def test_a_retry_re_attaches_to_the_first_tries_generation(connection) -> None:
    calls: list[str] = []
    store = MemoryStore()
    connection.set_generation_seconds(60)
    with pytest.raises(TaskDeferred) as first:
        decorated("a retry-proof drum loop", calls, retries=1).execute(a_try(store, 1, retries=1))
    with pytest.raises(TaskDeferred) as second:
        decorated("a retry-proof drum loop", calls, retries=1).execute(a_try(store, 2, retries=1))
    assert first.value.trigger.generation_id == second.value.trigger.generation_id
    assert len(connection.ledger()["generations"]) == 1
    assert calls == ["rain"]  # the retry reuses the first try's request


def a_new_request_on_each_call(calls: list[str], **decorator_args: Any) -> Any:
    """A ``@task.stable_audio`` function that asks for something else each time (the time, say)."""
    with DAG("changing", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:

        @task.stable_audio(poll_interval=0.1, deferrable=False, retries=1, **decorator_args)
        def make_clip() -> str:
            calls.append("called")
            return f"a jingle for call {len(calls)}"

        make_clip()
    return dag.get_task("make_clip")


def test_an_automatic_retry_reuses_the_first_tries_request_and_pays_once(connection) -> None:
    calls: list[str] = []
    store = MemoryStore()
    connection.set_generation_seconds(60)
    with pytest.raises(StableAudioTimeoutError):
        a_new_request_on_each_call(calls, timeout=0.3).execute(a_try(store, 1, retries=1))
    connection.set_generation_seconds(0)
    url = a_new_request_on_each_call(calls).execute(a_try(store, 2, retries=1))
    (generation,) = connection.ledger()["generations"]  # paid once
    assert generation["prompt"] == "a jingle for call 1"
    assert url.endswith(".wav")
    assert calls == ["called"]


def test_a_clear_calls_the_function_again_and_pays_for_what_it_asks_now(connection) -> None:
    calls: list[str] = []
    store = MemoryStore()
    connection.set_generation_seconds(0)
    a_new_request_on_each_call(calls).execute(a_try(store, 1, retries=1))
    a_new_request_on_each_call(calls).execute(after_a_clear(store, 1, retries=1))
    assert [g["prompt"] for g in connection.ledger()["generations"]] == [
        "a jingle for call 1",
        "a jingle for call 2",
    ]
    assert store.values[RETURNED_STATE_KEY] == {"prompt": "a jingle for call 2"}


def test_on_the_worker_it_returns_the_url_and_pushes_the_operators_xcoms(connection, tmp_path) -> None:
    connection.set_generation_seconds(0)
    ti = RecordingTI()
    op = decorated(
        "a short kazoo jingle", deferrable=False, seconds_total=2, output_path=str(tmp_path / "c.wav")
    )
    url = op.execute({"ti": ti})
    assert [key for key, _ in ti.pushed] == ["generation_id", "audio_file", "local_path"]
    assert url == ti.xcom("audio_file")["url"]
    assert (tmp_path / "c.wav").stat().st_size == ti.xcom("audio_file")["file_size"]


def completed(generation_id: str) -> dict[str, Any]:
    return success_event(
        Generation(
            id=generation_id,
            status="completed",
            state=GenerationState.SUCCEEDED,
            audio_file=AudioFile(url=f"https://cdn.example/{generation_id}.wav"),
            credits_used=25200,
        )
    )


def test_without_the_deferral_kwargs_it_resumes_with_the_request_from_the_task_state(connection) -> None:
    # dag.test() drops a deferral's kwargs; Airflow >= 3.3's durable task state still has the request.
    calls: list[str] = []
    store = MemoryStore()
    with pytest.raises(TaskDeferred) as deferred:
        decorated({"prompt": "a foghorn", "steps": 30}, calls).execute(a_try(store))
    assert store.values[RETURNED_STATE_KEY] == {"prompt": "a foghorn", "steps": 30}
    resumed = decorated({"prompt": "a foghorn", "steps": 30}, calls)
    url = resumed.execute_complete(a_try(store), completed(deferred.value.trigger.generation_id))
    assert url.endswith(".wav")
    assert calls == ["rain"]
    assert resumed.build_request().params == {"prompt": "a foghorn", "seconds_total": 30, "steps": 30}


def test_resuming_without_the_request_fails_clearly_without_retries() -> None:
    with pytest.raises(AirflowFailException, match="Cannot resume: the request the function returned"):
        decorated("a foghorn").execute_complete({"ti": RecordingTI()}, completed("gen-1"))


def test_durable_false_keeps_the_request_out_of_the_task_state(connection) -> None:
    store = MemoryStore()
    with pytest.raises(TaskDeferred):
        decorated("a foghorn", durable=False).execute(a_try(store))
    assert store.values == {}


def test_asset_events_carry_the_request_the_function_returned(connection) -> None:
    from types import SimpleNamespace

    from airflow.sdk import Asset

    class OutletEvents:
        """Like the task context's accessors: keyed by asset (Airflow 3.1's Asset is unhashable)."""

        def __init__(self) -> None:
            self.by_uri: dict[str, SimpleNamespace] = {}

        def __getitem__(self, asset: Asset) -> SimpleNamespace:
            return self.by_uri.setdefault(asset.uri, SimpleNamespace(extra={}))

    clip = Asset("file:///clips/foghorn.wav")
    connection.set_generation_seconds(0)
    op = decorated({"prompt": "a foghorn", "seconds_total": 3}, deferrable=False, outlets=[clip])
    events = OutletEvents()
    op.execute({"ti": RecordingTI(), "task": op, "outlet_events": events})
    extra = events[clip].extra
    assert (extra["prompt"], extra["model"], extra["duration_seconds"]) == ("a foghorn", "stable-audio", 3)
    assert extra["credits_used"] == 25200
