"""A retry of the task re-attaches to the generation an earlier try submitted: never pays twice."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import airflow
import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_stableaudio.exceptions import StableAudioDownloadError, StableAudioTimeoutError
from airflow_provider_stableaudio.operators.stable_audio import STATE_KEY
from tests.operators.test_stable_audio_operator import RecordingTI, operator


class MemoryStore:
    """Airflow 3.3's ``task_state_store`` as the operator sees it: get/set of JSON values."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def a_try(store: MemoryStore | None) -> dict[str, Any]:
    """The context of one try of the task: fresh XComs (Airflow clears them), the same store."""
    return {"ti": RecordingTI(), "task_state_store": store}


def test_a_retry_waits_for_the_first_tries_generation(connection) -> None:
    store = MemoryStore()
    connection.set_generation_seconds(60)
    with pytest.raises(StableAudioTimeoutError):
        operator(deferrable=False, timeout=0.3).execute(a_try(store))
    (generation,) = connection.ledger()["generations"]
    assert store.values[STATE_KEY]["generation_id"] == generation["id"]

    connection.set_generation_seconds(0)
    second = a_try(store)
    url = operator(deferrable=False).execute(second)
    assert len(connection.ledger()["generations"]) == 1
    assert second["ti"].xcom("generation_id") == generation["id"]
    assert url == second["ti"].xcom("audio_file")["url"]


def test_a_deferrable_retry_defers_on_the_same_generation(connection) -> None:
    store = MemoryStore()
    connection.set_generation_seconds(60)
    with pytest.raises(TaskDeferred) as first:
        operator().execute(a_try(store))
    with pytest.raises(TaskDeferred) as second:
        operator().execute(a_try(store))
    assert first.value.trigger.generation_id == second.value.trigger.generation_id
    assert len(connection.ledger()["generations"]) == 1


def test_a_failed_generation_is_submitted_again(connection) -> None:
    store = MemoryStore()
    connection.set_generation_seconds(0)
    with pytest.raises(Exception, match="failed"):
        operator(deferrable=False, prompt="[emulator:error] bells").execute(a_try(store))
    # The user fixed nothing, but the API may succeed this time: a failed generation is not reused.
    with pytest.raises(Exception, match="failed"):
        operator(deferrable=False, prompt="[emulator:error] bells").execute(a_try(store))
    assert len(connection.ledger()["generations"]) == 2


def test_a_changed_request_is_a_new_generation(connection) -> None:
    store = MemoryStore()
    connection.set_generation_seconds(0)
    operator(deferrable=False, prompt="first idea").execute(a_try(store))
    operator(deferrable=False, prompt="second idea").execute(a_try(store))
    assert [g["prompt"] for g in connection.ledger()["generations"]] == ["first idea", "second idea"]


def test_an_unknown_stored_generation_is_submitted_again(connection) -> None:
    store = MemoryStore()
    op = operator(deferrable=False)
    store.set(STATE_KEY, {"generation_id": "expired-id", "request": op.build_request().fingerprint()})
    connection.set_generation_seconds(0)
    op.execute(a_try(store))
    assert len(connection.ledger()["generations"]) == 1


def test_without_durable_state_every_try_submits(connection) -> None:
    # Airflow < 3.3 has no task_state_store: the documented fallback is a fresh submission.
    connection.set_generation_seconds(0)
    operator(deferrable=False).execute(a_try(None))
    operator(deferrable=False).execute(a_try(None))
    assert len(connection.ledger()["generations"]) == 2


@pytest.mark.skipif(
    tuple(int(part) for part in airflow.__version__.split(".")[:2]) < (3, 3),
    reason="durable task state needs Airflow >= 3.3; before it every try submits (tested above)",
)
@pytest.mark.usefixtures("airflow_db")
def test_airflow_retry_re_attaches_end_to_end(connection) -> None:
    """A real task retry in ``dag.test()``: the first try times out, the second re-attaches."""
    from tests.dags import load_dag

    # Done 3 s after submission: after the first try's 2 s timeout, within the retry's.
    connection.set_generation_seconds(3)
    run = load_dag("reattach.py", "reattach_e2e").test()
    assert run.state == "success"
    (generation,) = connection.ledger()["generations"]
    assert generation["polls"] >= 2
    assert run.get_task_instance("generate").try_number == 2


def test_a_404_download_keeps_the_generation_for_the_next_try(connection, tmp_path: Path) -> None:
    store = MemoryStore()
    connection.set_generation_seconds(0)
    connection.set_faults(rate_download_404=1.0)
    with pytest.raises(StableAudioDownloadError, match="may have expired") as caught:
        operator(deferrable=False, output_path=str(tmp_path / "c.wav")).execute(a_try(store))
    assert caught.value.url_expired
    # A CDN 404 may be passing: the next try downloads the same clip again rather than pay anew.
    connection.clear_faults()
    operator(deferrable=False, output_path=str(tmp_path / "c.wav")).execute(a_try(store))
    assert STATE_KEY in store.values
    assert len(connection.ledger()["generations"]) == 1
    assert (tmp_path / "c.wav").exists()


# -- durable=False: a fresh clip on every try, after a Clear too --------------------------------


@pytest.mark.filterwarnings("ignore:`durable` has no effect:UserWarning")  # Airflow < 3.3
def test_durable_false_submits_a_fresh_generation_after_a_clear(connection) -> None:
    # The store survives a Clear of a succeeded task on Airflow 3.3 (unless clear_on_success is set).
    store = MemoryStore()
    connection.set_generation_seconds(0)
    first = operator(deferrable=False).execute(a_try(store))
    assert operator(deferrable=False).execute(a_try(store)) == first  # durable: the same clip back
    fresh = operator(deferrable=False, durable=False).execute(a_try(store))
    assert fresh != first
    assert len(connection.ledger()["generations"]) == 2


@pytest.mark.filterwarnings("ignore:`durable` has no effect:UserWarning")  # Airflow < 3.3
def test_durable_false_neither_reads_nor_writes_the_store(connection) -> None:
    store = MemoryStore()
    connection.set_generation_seconds(60)
    with pytest.raises(TaskDeferred):
        operator(durable=False).execute(a_try(store))
    assert store.values == {}


@pytest.mark.parametrize("durable", [True, False])
def test_durable_warns_that_it_has_no_effect_before_airflow_3_3(
    monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    from airflow.providers.common.compat import version_compat

    monkeypatch.setattr(version_compat, "AIRFLOW_V_3_3_PLUS", False)
    with pytest.warns(UserWarning, match="`durable` has no effect on Airflow versions below 3.3"):
        operator(durable=durable)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        operator()  # left at its default: nothing to warn about
        monkeypatch.setattr(version_compat, "AIRFLOW_V_3_3_PLUS", True)
        operator(durable=durable)


class FailingStore(MemoryStore):
    """A ``task_state_store`` whose writes fail (the API server unreachable, say)."""

    def set(self, key: str, value: Any) -> None:
        raise RuntimeError("state store unavailable")


@pytest.mark.parametrize("deferrable", [False, True])
def test_a_failed_state_save_keeps_waiting_for_the_paid_generation(connection, deferrable: bool) -> None:
    connection.set_generation_seconds(0 if not deferrable else 60)
    ctx = a_try(FailingStore())
    if deferrable:
        with pytest.raises(TaskDeferred) as deferred:
            operator().execute(ctx)
        waited_for = deferred.value.trigger.generation_id
    else:
        operator(deferrable=False).execute(ctx)
        waited_for = ctx["ti"].xcom("audio_file")["generation_id"]
    (generation,) = connection.ledger()["generations"]
    assert ctx["ti"].xcom("generation_id") == waited_for == generation["id"]
