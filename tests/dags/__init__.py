"""DAG files used by the end-to-end tests (loaded through a DagBag, as Airflow would)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DAGS = Path(__file__).parent
EXAMPLE_DAGS = DAGS.parent.parent / "example_dags"


def load_dag(file_name: str, dag_id: str) -> Any:
    """Load ``dag_id`` from a file of the tests' DAGs or of ``example_dags/``."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2 keeps it in airflow.models
        from airflow.models.dagbag import DagBag

    path = DAGS / file_name if (DAGS / file_name).exists() else EXAMPLE_DAGS / file_name
    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags[dag_id]
