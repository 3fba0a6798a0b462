"""Every example DAG imports cleanly and runs end to end against the emulator with ``dag.test()``."""

from __future__ import annotations

import hashlib
import wave
from pathlib import Path
from typing import Any

import airflow
import pytest

from tests.conftest import API_KEY, ROOT
from tests.dags import load_dag

EXAMPLE_DAGS = ROOT / "example_dags"
LINK_XCOM = "_link_StableAudioClipLink"


def test_example_dags_import_without_errors() -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2 keeps it in airflow.models
        from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    assert bag.import_errors == {}
    assert len(bag.dag_ids) == len(list(EXAMPLE_DAGS.glob("*.py"))) == 10


def xcoms_of(run_id: str) -> dict[tuple[str, str, int], Any]:
    """Every XCom of a run, keyed by (task id, key, map index)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(XComModel).where(XComModel.run_id == run_id)).all()
        return {(row.task_id, row.key, row.map_index): XComModel.deserialize_value(row) for row in rows}


def duration(path: str | Path) -> float:
    with wave.open(str(path)) as clip:
        return clip.getnframes() / clip.getframerate()


@pytest.mark.usefixtures("airflow_db")
def test_example_stable_audio(connection, tmp_path: Path) -> None:
    run = load_dag("example_stable_audio.py", "example_stable_audio").test(
        run_conf={"seconds": 3, "output_dir": str(tmp_path)}
    )
    assert run.state == "success"

    xcoms = xcoms_of(run.run_id)
    (generation,) = connection.ledger()["generations"]
    assert xcoms[("generate_clip", "generation_id", -1)] == generation["id"]
    audio_file = xcoms[("generate_clip", "audio_file", -1)]
    assert xcoms[("generate_clip", "return_value", -1)] == audio_file["url"]
    assert xcoms[("generate_clip", LINK_XCOM, -1)] == audio_file["url"]  # the "Stable Audio clip" link
    local_path = Path(xcoms[("generate_clip", "local_path", -1)])
    assert local_path.is_relative_to(tmp_path / "example_stable_audio")
    assert duration(local_path) == 3
    assert local_path.stat().st_size == generation["bytes_served"]
    assert xcoms[("describe_clip", "return_value", -1)] == 3.0
    assert API_KEY not in repr(xcoms)


@pytest.mark.usefixtures("airflow_db")
def test_daily_jingle_feeds_the_asset_consumer(connection, tmp_path: Path) -> None:
    jingle = load_dag("example_stable_audio_daily_jingle.py", "example_stable_audio_daily_jingle")
    run = jingle.test(run_conf={"mood": "epic", "instrument": "kazoo", "output_dir": str(tmp_path)})
    assert run.state == "success"
    (generation,) = connection.ledger()["generations"]
    assert generation["prompt"].startswith("A short epic kazoo jingle for ")
    assert generation["prompt"].endswith(run.run_after.strftime("%A, %B %-d"))
    (clip,) = (tmp_path / "jingles").iterdir()
    assert clip.name == f"{run.run_after:%Y-%m-%d}.wav"
    assert duration(clip) == 5

    consumer = load_dag("example_stable_audio_asset_consumer.py", "example_stable_audio_asset_consumer")
    consumed = consumer.test()
    assert consumed.state == "success"
    extra = xcoms_of(consumed.run_id)[("publish_jingle", "return_value", -1)]
    assert extra["generation_id"] == generation["id"]
    assert extra["prompt"] == generation["prompt"]
    assert (extra["model"], extra["duration_seconds"]) == ("stable-audio", 5)
    assert extra["file_size"] == clip.stat().st_size
    assert extra["credits_used"] == 25200
    assert extra["local_path"] == str(clip)
    assert extra["url"].endswith(".wav")


@pytest.mark.usefixtures("airflow_db")
def test_batch_maps_one_task_per_prompt(connection, tmp_path: Path) -> None:
    # The schema's credits_used is a number: the cost report must keep a fraction.
    connection.set_variants(credits_per_step=0.125)
    dag = load_dag("example_stable_audio_batch.py", "example_stable_audio_batch")
    run = dag.test(run_conf={"output_dir": str(tmp_path)})
    assert run.state == "success"
    ledger = connection.ledger()
    by_prompt = {g["prompt"]: g for g in ledger["generations"]}
    prompts = dag.get_task("generate").expand_input.value["prompt"]
    assert sorted(by_prompt) == sorted(prompts)
    xcoms = xcoms_of(run.run_id)
    urls = xcoms[("playlist", "return_value", -1)]
    assert len(urls) == len(prompts) == 3
    for index, prompt in enumerate(prompts):
        assert xcoms[("generate", "generation_id", index)] == by_prompt[prompt]["id"]
        assert xcoms[("generate", "return_value", index)] == urls[index]
        assert duration(xcoms[("generate", "local_path", index)]) == 4
    # 0.125 credits per diffusion step: 3 clips of 100 steps.
    assert [xcoms[("generate", "audio_file", i)]["credits_used"] for i in range(3)] == [12.5] * 3
    assert xcoms[("report_cost", "return_value", -1)] == {
        "clips": 3,
        "credits_used": 37.5,
        "cost_unknown": [],
    }


def test_batch_takes_its_pool_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    dag_file, dag_id = "example_stable_audio_batch.py", "example_stable_audio_batch"
    assert load_dag(dag_file, dag_id).get_task("generate").partial_kwargs["pool"] == "default_pool"
    monkeypatch.setenv("STABLEAUDIO_POOL", "stable_audio")
    assert load_dag(dag_file, dag_id).get_task("generate").partial_kwargs["pool"] == "stable_audio"


@pytest.mark.usefixtures("airflow_db")
def test_submit_then_sensor(connection, tmp_path: Path) -> None:
    run = load_dag("example_stable_audio_sensor.py", "example_stable_audio_sensor").test(
        run_conf={"output_dir": str(tmp_path)}
    )
    assert run.state == "success"
    xcoms = xcoms_of(run.run_id)
    (generation,) = connection.ledger()["generations"]
    assert xcoms[("submit", "return_value", -1)] == xcoms[("submit", "generation_id", -1)] == generation["id"]
    url = xcoms[("wait_for_clip", "return_value", -1)]
    assert url == xcoms[("wait_for_clip", "audio_file", -1)]["url"]
    assert xcoms[("wait_for_clip", LINK_XCOM, -1)] == url
    assert duration(xcoms[("wait_for_clip", "local_path", -1)]) == 6


# A deferred @task.stable_audio resumes under dag.test() on Airflow >= 3.3 only.
DAG_TEST_RESUMES_DECORATED_TASKS = pytest.mark.skipif(
    tuple(int(part) for part in airflow.__version__.split(".")[:2]) < (3, 3),
    reason="dag.test() drops a deferral's kwargs, and only Airflow >= 3.3 has the task state that "
    "hands the resumed task its request there (deployments pass the kwargs on every version: the "
    "real-stack tier runs these DAGs on 3.1 and 3.2)",
)


@DAG_TEST_RESUMES_DECORATED_TASKS
@pytest.mark.usefixtures("airflow_db")
def test_decorator_maps_one_deferred_clip_per_topic_with_the_operators_xcoms(
    connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_stableaudio.decorators.stable_audio import StableAudioDecoratedOperator

    # Which try ran the function, and which resumed from the trigger with its request.
    executed: list[int] = []
    resumed: list[tuple[int, dict]] = []
    execute, execute_complete = (
        StableAudioDecoratedOperator.execute,
        StableAudioDecoratedOperator.execute_complete,
    )

    def spy_execute(self, context):
        executed.append(context["ti"].map_index)
        return execute(self, context)

    def spy_execute_complete(self, context, event, returned_request=None):
        url = execute_complete(self, context, event, returned_request)
        resumed.append((context["ti"].map_index, self.returned_request))
        return url

    monkeypatch.setattr(StableAudioDecoratedOperator, "execute", spy_execute)
    monkeypatch.setattr(StableAudioDecoratedOperator, "execute_complete", spy_execute_complete)

    dag = load_dag("example_stable_audio_decorator.py", "example_stable_audio_decorator")
    run = dag.test(run_conf={"output_dir": str(tmp_path)})
    assert run.state == "success"

    xcoms = xcoms_of(run.run_id)
    topics = xcoms[("todays_topics", "return_value", -1)]
    assert len(topics) == 2
    prompts = [f"Calm ambient field recording of {topic}" for topic in topics]
    by_prompt = {g["prompt"]: g for g in connection.ledger()["generations"]}
    assert sorted(by_prompt) == sorted(prompts)
    # Deferred: each mapped task ran its function once, then resumed with that request.
    assert sorted(executed) == [0, 1]
    assert sorted(resumed, key=lambda r: r[0]) == [
        (i, {"prompt": p, "steps": 50}) for i, p in enumerate(prompts)
    ]
    urls = xcoms[("announce", "return_value", -1)]
    for index, prompt in enumerate(prompts):
        generation = by_prompt[prompt]
        assert (generation["seconds_total"], generation["steps"]) == (4, 50)
        audio_file = xcoms[("ambience", "audio_file", index)]
        assert xcoms[("ambience", "generation_id", index)] == generation["id"] == audio_file["generation_id"]
        assert xcoms[("ambience", "return_value", index)] == audio_file["url"] == urls[index]
        assert xcoms[("ambience", LINK_XCOM, index)] == audio_file["url"]
        local_path = Path(xcoms[("ambience", "local_path", index)])
        assert local_path == tmp_path / "topics" / f"{run.run_after:%Y%m%dT%H%M%S}" / f"{index}.wav"
        assert duration(local_path) == 4
        assert local_path.stat().st_size == audio_file["file_size"]


@pytest.mark.usefixtures("airflow_db")
def test_example_stability_text_to_audio_defers_and_stores_the_clip(stability, tmp_path: Path) -> None:
    run = load_dag("example_stability_text_to_audio.py", "example_stability_text_to_audio").test(
        run_conf={"seconds": 3, "output_dir": str(tmp_path)}
    )
    assert run.state == "success"
    ledger = stability.ledger()["stability"]
    assert ledger["submits"] == {"stable-audio-3": {"text-to-audio": 1}}
    (generation,) = ledger["generations"]
    xcoms = xcoms_of(run.run_id)
    assert xcoms[("generate_clip", "generation_id", -1)] == generation["id"]
    stored_at = Path(xcoms[("generate_clip", "return_value", -1)])
    assert stored_at.is_relative_to(tmp_path / "example_stability_text_to_audio")
    assert hashlib.sha256(stored_at.read_bytes()).hexdigest() == generation["sha256"]
    assert xcoms[("describe_clip", "return_value", -1)] == 3.0
    assert xcoms[("generate_clip", "audio_file", -1)]["finish_reason"] == "SUCCESS"
    assert API_KEY not in repr(xcoms)


@pytest.mark.usefixtures("airflow_db")
def test_example_stability_sync_streams_the_answer_to_output_path(stability, tmp_path: Path) -> None:
    run = load_dag("example_stability_sync.py", "example_stability_sync").test(
        run_conf={"output_dir": str(tmp_path)}
    )
    assert run.state == "success"
    ledger = stability.ledger()["stability"]
    assert ledger["submits"] == {"stable-audio-2.5": {"text-to-audio": 1}}
    (generation,) = ledger["generations"]
    (clip,) = (tmp_path / "example_stability_sync").iterdir()
    assert hashlib.sha256(clip.read_bytes()).hexdigest() == generation["sha256"]
    assert duration(clip) == 4
    assert generation["seed"] == 1234


@DAG_TEST_RESUMES_DECORATED_TASKS
@pytest.mark.usefixtures("airflow_db")
def test_example_stability_remix_varies_last_weeks_clip(stability, tmp_path: Path) -> None:
    import pendulum

    dag = load_dag("example_stability_remix.py", "example_stability_remix")
    first_week = pendulum.datetime(2026, 11, 2, tz="UTC")
    conf = {"output_dir": str(tmp_path)}
    assert dag.test(run_after=first_week, logical_date=first_week, run_conf=conf).state == "success"
    next_week = first_week.add(weeks=1)
    assert dag.test(run_after=next_week, logical_date=next_week, run_conf=conf).state == "success"

    ledger = stability.ledger()["stability"]
    assert ledger["submits"] == {"stable-audio-3": {"text-to-audio": 1, "audio-to-audio": 1}}
    first, remix = ledger["generations"]
    week_1 = tmp_path / "remix" / "week_20261102.wav"
    week_2 = tmp_path / "remix" / "week_20261109.wav"
    assert hashlib.sha256(week_1.read_bytes()).hexdigest() == first["sha256"] == remix["input_sha256"]
    assert hashlib.sha256(week_2.read_bytes()).hexdigest() == remix["sha256"]
    assert (remix["derived_from_input"], remix["strength"]) == (True, 0.6)
    assert remix["prompt"].endswith(", a fresh variation")
