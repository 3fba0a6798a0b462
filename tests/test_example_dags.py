"""Every example DAG imports cleanly and runs end to end against the emulator with ``dag.test()``."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

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
    assert len(bag.dag_ids) == len(list(EXAMPLE_DAGS.glob("*.py"))) == 6


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
