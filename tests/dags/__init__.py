"""DAG files used by the end-to-end tests (loaded through a DagBag, as Airflow would)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DAGS = Path(__file__).parent


def load_dag(file_name: str, dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / file_name))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags[dag_id]
