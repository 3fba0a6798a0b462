"""Every example DAG imports cleanly, and the main one runs end to end against the emulator."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from tests.conftest import API_KEY, ROOT

EXAMPLE_DAGS = ROOT / "example_dags"


def test_example_dags_import_without_errors() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    assert bag.import_errors == {}
    assert "example_stable_audio" in bag.dag_ids
    assert len(list(EXAMPLE_DAGS.glob("*.py"))) == len(bag.dag_ids)


def xcoms_of(run_id: str) -> dict[tuple[str, str], object]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(XComModel).where(XComModel.run_id == run_id)).all()
        return {(row.task_id, row.key): XComModel.deserialize_value(row) for row in rows}


@pytest.mark.usefixtures("airflow_db")
def test_example_dag_end_to_end(connection, tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(EXAMPLE_DAGS / "example_stable_audio.py")).dags["example_stable_audio"]
    run = dag.test(run_conf={"seconds": 3, "output_dir": str(tmp_path)})
    assert run.state == "success"

    xcoms = xcoms_of(run.run_id)
    (generation,) = connection.ledger()["generations"]
    assert xcoms[("generate_clip", "generation_id")] == generation["id"]
    audio_file = xcoms[("generate_clip", "audio_file")]
    assert xcoms[("generate_clip", "return_value")] == audio_file["url"]  # type: ignore[index]
    local_path = Path(str(xcoms[("generate_clip", "local_path")]))
    assert local_path.is_relative_to(tmp_path / "example_stable_audio")
    with wave.open(str(local_path)) as clip:
        assert clip.getnframes() / clip.getframerate() == 3
    assert local_path.stat().st_size == generation["bytes_served"]
    assert xcoms[("describe_clip", "return_value")] == 3.0
    assert API_KEY not in repr(xcoms)
