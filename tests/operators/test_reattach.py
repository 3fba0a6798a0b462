"""A retry of the task re-attaches to the generation an earlier try submitted: never pays twice."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import airflow
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from airflow_provider_stableaudio.exceptions import (
    StableAudioDownloadError,
    StableAudioResultGoneError,
    StableAudioTimeoutError,
)
from airflow_provider_stableaudio.operators.stable_audio import STATE_KEY, StableAudioGenerateOperator
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


class TryTI(RecordingTI):
    """The task instance of one try: its ``try_number`` and ``max_tries``, as Airflow sets them."""

    def __init__(self, try_number: int, max_tries: int) -> None:
        super().__init__()
        self.try_number = try_number
        self.max_tries = max_tries


def a_try(store: MemoryStore | None, try_number: int = 1, *, retries: int = 0) -> dict[str, Any]:
    """The context of one try of the task's first run (``retries`` automatic retries allowed):
    fresh XComs (Airflow clears them), the same store."""
    return {"ti": TryTI(try_number, max_tries=retries), "task_state_store": store}


def after_a_clear(store: MemoryStore | None, last_try: int, *, retries: int = 0) -> dict[str, Any]:
    """The context of the first try after a person cleared the task when ``last_try`` had run:
    Airflow raises ``max_tries`` to ``last_try + retries`` (``clear_task_instances``)."""
    return {"ti": TryTI(last_try + 1, max_tries=last_try + retries), "task_state_store": store}


def test_a_retry_waits_for_the_first_tries_generation(connection) -> None:
    store = MemoryStore()
    connection.set_generation_seconds(60)
    with pytest.raises(StableAudioTimeoutError):
        operator(deferrable=False, timeout=0.3, retries=1).execute(a_try(store, 1, retries=1))
    (generation,) = connection.ledger()["generations"]
    assert store.values[STATE_KEY]["generation_id"] == generation["id"]

    connection.set_generation_seconds(0)
    second = a_try(store, 2, retries=1)
    url = operator(deferrable=False, retries=1).execute(second)
    assert len(connection.ledger()["generations"]) == 1
    assert second["ti"].xcom("generation_id") == generation["id"]
    assert url == second["ti"].xcom("audio_file")["url"]


def test_a_deferrable_retry_defers_on_the_same_generation(connection) -> None:
    store = MemoryStore()
    connection.set_generation_seconds(60)
    with pytest.raises(TaskDeferred) as first:
        operator(retries=1).execute(a_try(store, 1, retries=1))
    with pytest.raises(TaskDeferred) as second:
        operator(retries=1).execute(a_try(store, 2, retries=1))
    assert first.value.trigger.generation_id == second.value.trigger.generation_id
    assert len(connection.ledger()["generations"]) == 1


def test_a_failed_generation_is_submitted_again(connection) -> None:
    store = MemoryStore()
    connection.set_generation_seconds(0)
    failing = {"deferrable": False, "prompt": "[emulator:error] bells", "retries": 1}
    with pytest.raises(Exception, match="failed"):
        operator(**failing).execute(a_try(store, 1, retries=1))
    # The user fixed nothing, but the API may succeed this time: a failed generation is not reused.
    with pytest.raises(Exception, match="failed"):
        operator(**failing).execute(a_try(store, 2, retries=1))
    assert len(connection.ledger()["generations"]) == 2


def test_a_changed_request_is_a_new_generation(connection) -> None:
    store = MemoryStore()
    connection.set_generation_seconds(0)
    operator(deferrable=False, prompt="first idea").execute(a_try(store))
    operator(deferrable=False, prompt="second idea").execute(after_a_clear(store, 1))  # the DAG changed
    assert [g["prompt"] for g in connection.ledger()["generations"]] == ["first idea", "second idea"]


def test_after_a_clear_a_generation_the_api_no_longer_knows_is_submitted_anew(connection) -> None:
    store = MemoryStore()
    op = operator(deferrable=False)
    store.set(STATE_KEY, {"generation_id": "expired-id", "request": op.build_request().fingerprint()})
    connection.set_generation_seconds(0)
    op.execute(after_a_clear(store, 1))
    assert len(connection.ledger()["generations"]) == 1


def test_without_durable_state_every_try_submits(connection) -> None:
    # Airflow < 3.3 has no task_state_store: the documented fallback is a fresh submission.
    connection.set_generation_seconds(0)
    operator(deferrable=False, retries=1).execute(a_try(None, 1, retries=1))
    operator(deferrable=False, retries=1).execute(a_try(None, 2, retries=1))
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
    downloading = {"deferrable": False, "output_path": str(tmp_path / "c.wav"), "retries": 1}
    with pytest.raises(StableAudioDownloadError, match="may have expired") as caught:
        operator(**downloading).execute(a_try(store, 1, retries=1))
    assert caught.value.url_expired
    # A CDN 404 may be passing: the next try downloads the same clip again rather than pay anew.
    connection.clear_faults()
    operator(**downloading).execute(a_try(store, 2, retries=1))
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
    assert operator(deferrable=False).execute(after_a_clear(store, 1)) == first  # durable: the same clip
    fresh = operator(deferrable=False, durable=False).execute(after_a_clear(store, 2))
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


# -- a result lost or unknown: an automatic retry never pays again; a Clear does -----------------


@pytest.fixture
def served_once(stability, monkeypatch: pytest.MonkeyPatch):
    """The emulator serves each Stable Audio 3 result once; the connection says so."""
    import json

    from tests.conftest import API_KEY, set_connection

    stability.set_variants(stability_results_once=True)
    set_connection(
        monkeypatch,
        "stability_default",
        conn_type="stability",
        host=stability.base_url,
        password=API_KEY,
        extra=json.dumps({"results_served_once": True}),
    )
    return stability


def stable_audio_3(tmp_path: Path, **kwargs: Any) -> StableAudioGenerateOperator:
    return StableAudioGenerateOperator(
        task_id="generate",
        conn_id="stability_default",
        prompt="a slow cello drone",
        duration=3,
        output_format="wav",
        output_path=str(tmp_path / "clip.wav"),
        poll_interval=0.1,
        **kwargs,
    )


def submits(emulator) -> int:
    return emulator.ledger()["stability"]["submit_count"]


def test_a_retry_that_loses_a_served_once_result_fails_without_paying_again(
    served_once, tmp_path: Path
) -> None:
    store = MemoryStore()
    served_once.set_generation_seconds(60)
    with pytest.raises(StableAudioTimeoutError):  # try 1 ends on a timeout: Airflow retries it
        stable_audio_3(tmp_path, retries=1, timeout=0.3).execute(a_try(store, 1, retries=1))
    served_once.set_generation_seconds(0)
    served_once.set_faults(rate_download_truncated=1.0, fault_methods=["GET"], seed=1)

    # Try 2 re-attaches, finds the clip ready, and its stream breaks: the result is used up.
    with pytest.raises(AirflowFailException, match="served once only, is lost") as caught:
        stable_audio_3(tmp_path, retries=1).execute(a_try(store, 2, retries=1))
    assert submits(served_once) == 1
    assert isinstance(caught.value.__cause__, StableAudioResultGoneError)
    assert "clear the task to pay for a new one" in str(caught.value)
    assert list(tmp_path.iterdir()) == []

    # Only a person's Clear pays for a new clip.
    served_once.clear_faults()
    stored_at = stable_audio_3(tmp_path, retries=1).execute(after_a_clear(store, 2, retries=1))
    assert submits(served_once) == 2
    assert Path(stored_at).exists()


@pytest.mark.skipif(
    tuple(int(part) for part in airflow.__version__.split(".")[:2]) < (3, 3),
    reason="durable task state needs Airflow >= 3.3; before it every try submits (tested above)",
)
@pytest.mark.usefixtures("airflow_db")
def test_airflow_retry_that_loses_a_served_once_result_pays_once_and_stops(
    served_once, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real task retries in ``dag.test()``: try 1 times out, try 2 loses the result, no try 3."""
    from tests.dags import load_dag

    monkeypatch.setenv("STABLEAUDIO_TEST_OUTPUT", str(tmp_path / "clip.wav"))
    served_once.set_generation_seconds(60)
    run = load_dag("reattach_lost.py", "reattach_served_once").test()
    assert submits(served_once) == 1
    assert run.state == "failed"
    assert run.get_task_instance("generate").try_number == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    tuple(int(part) for part in airflow.__version__.split(".")[:2]) < (3, 3),
    reason="durable task state needs Airflow >= 3.3; before it every try submits (tested above)",
)
@pytest.mark.usefixtures("airflow_db")
def test_airflow_retry_never_resubmits_a_generation_the_api_no_longer_knows(connection) -> None:
    """Real task retries in ``dag.test()``: Airflow's try numbers mark try 2 as an automatic retry."""
    from tests.dags import load_dag

    connection.set_generation_seconds(60)
    run = load_dag("reattach_lost.py", "reattach_unknown").test()
    assert connection.ledger()["generations"] == []  # forgotten after try 1; none submitted since
    assert run.state == "failed"
    assert run.get_task_instance("generate").try_number == 2


@pytest.mark.parametrize("service", ["stableaudio", "stability"])
def test_an_automatic_retry_never_resubmits_a_generation_the_api_no_longer_knows(
    request: pytest.FixtureRequest, tmp_path: Path, service: str
) -> None:
    emulator = request.getfixturevalue("connection" if service == "stableaudio" else "stability")
    task = (
        operator(deferrable=False, retries=1)
        if service == "stableaudio"
        else stable_audio_3(tmp_path, retries=1)
    )
    store = MemoryStore()
    store.set(STATE_KEY, {"generation_id": "expired-id", "request": task.build_request().fingerprint()})
    with pytest.raises(AirflowFailException, match="clear the task to pay for a new one") as caught:
        task.execute(a_try(store, 2, retries=1))
    assert [r["method"] for r in emulator.ledger()["requests"]] == ["GET"]  # the poll, and no submit
    assert isinstance(caught.value.__cause__, StableAudioResultGoneError)
    assert "expired-id" in str(caught.value)


class RecordingLog:
    """Stands in for the operator's logger: keeps its warnings (but Airflow's own about a test
    calling ``execute`` outside the task runner)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
        if "outside of the Task Runner" not in message:
            self.warnings.append(message % args)

    def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture
def warnings_logged(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    log = RecordingLog()
    monkeypatch.setattr(StableAudioGenerateOperator, "log", log)
    return log.warnings


def test_a_retry_whose_request_changed_warns_that_it_pays_again(connection, warnings_logged) -> None:
    store = MemoryStore()
    connection.set_generation_seconds(0)
    operator(deferrable=False, retries=1, prompt="at 10:00").execute(a_try(store, 1, retries=1))
    (first,) = connection.ledger()["generations"]
    operator(deferrable=False, retries=1, prompt="at 10:05").execute(a_try(store, 2, retries=1))
    assert len(connection.ledger()["generations"]) == 2
    (warning,) = warnings_logged
    assert f"differs from the one an earlier try submitted as generation {first['id']}" in warning
    assert "paid for again" in warning


@pytest.mark.filterwarnings("ignore:`durable` has no effect:UserWarning")  # Airflow < 3.3
@pytest.mark.parametrize(("store", "durable"), [(None, None), (MemoryStore(), False)])
def test_a_retry_without_durable_state_warns_that_it_pays_again(
    connection, warnings_logged, store: MemoryStore | None, durable: bool | None
) -> None:
    connection.set_generation_seconds(0)
    operator(deferrable=False, retries=1, durable=durable).execute(a_try(store, 1, retries=1))
    assert warnings_logged == []
    operator(deferrable=False, retries=1, durable=durable).execute(a_try(store, 2, retries=1))
    (warning,) = warnings_logged
    assert "cannot re-attach" in warning
    assert "paid for again" in warning


def test_a_clear_whose_re_attach_loses_a_served_once_result_fails_without_paying_again(
    served_once, tmp_path: Path
) -> None:
    store = MemoryStore()
    served_once.set_generation_seconds(60)
    with pytest.raises(StableAudioTimeoutError):
        stable_audio_3(tmp_path, timeout=0.3).execute(a_try(store))
    served_once.set_generation_seconds(0)
    served_once.set_faults(rate_download_truncated=1.0, fault_methods=["GET"], seed=1)
    # A person cleared it: the re-attach finds the clip ready and loses it. That try pays no more.
    with pytest.raises(AirflowFailException, match="served once only, is lost"):
        stable_audio_3(tmp_path).execute(after_a_clear(store, 1))
    assert submits(served_once) == 1
    # The next Clear finds the result gone (404): that run asks for a new clip.
    served_once.clear_faults()
    assert Path(stable_audio_3(tmp_path).execute(after_a_clear(store, 2))).exists()
    assert submits(served_once) == 2
