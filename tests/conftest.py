"""Shared fixtures: an isolated AIRFLOW_HOME, the bundled emulator, and the connection to it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Before anything imports Airflow: its state goes to a throwaway folder, never ~/airflow.
ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_HOME = tempfile.mkdtemp(prefix="stableaudio-tests-airflow-")
os.environ["AIRFLOW_HOME"] = AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "example_dags")
# dag.test() syncs DAGs from the configured bundles: the examples, and the tests' own DAGs.
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": name,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(path), "refresh_interval": 0},
        }
        for name, path in (
            ("provider_examples", ROOT / "example_dags"),
            ("provider_test_dags", ROOT / "tests" / "dags"),
        )
    ]
)
os.environ.pop("AIRFLOW_CONN_STABLEAUDIO_DEFAULT", None)
os.environ.pop("AIRFLOW_CONN_STABILITY_DEFAULT", None)

import pytest  # noqa: E402

from airflow_provider_stableaudio.emulator import EmulatorConfig, EmulatorServer  # noqa: E402
from tests.scripted_server import ScriptedServer  # noqa: E402

API_KEY = "test-key-5f3a9c"
GENERATION_SECONDS = 0.6


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_request_budgets(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Each test starts with no key paused: a 429 one test provoked never slows the next, in this
    process or (through the machine's shared schedule, a folder of each test's own) in any other.

    Tests of other things start a key without a figure (the AI/ML API's) at 1,000 requests a second,
    not 10: the budget's spacing of requests would otherwise add waits of its own to the waits they
    count. Tests marked ``default_budget`` keep the real starting rate.
    """
    from airflow_provider_stableaudio import request_budget
    from airflow_provider_stableaudio.hooks import base as hook_base

    if request.node.get_closest_marker("default_budget") is None:
        monkeypatch.setattr(request_budget, "START_RATE", 1000.0)
    # Tests change a connection between one trigger and the next: each trigger reads it afresh
    # (tests/hooks/test_async_settings.py checks the reuse itself).
    monkeypatch.setattr(hook_base, "SETTINGS_REUSE_SECONDS", 0.0)
    monkeypatch.setenv("AIRFLOW__STABLEAUDIO__BUDGET_DIR", str(tmp_path_factory.mktemp("budgets") / "shared"))
    request_budget.forget_budgets()
    yield
    request_budget.forget_budgets()


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(generation_seconds=GENERATION_SECONDS, api_keys=frozenset({API_KEY}))
    with EmulatorServer(config=config, port=0) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorServer:
    """The session's emulator, emptied, without faults, answering as the API's current schema does,
    with the default generation time."""
    emulator_server.clear_faults()
    emulator_server.clear_variants()
    emulator_server.reset()
    emulator_server.set_generation_seconds(GENERATION_SECONDS)
    return emulator_server


def set_connection(
    monkeypatch: pytest.MonkeyPatch, conn_id: str = "stableaudio_default", **fields: object
) -> None:
    """Define an Airflow connection through its ``AIRFLOW_CONN_<ID>`` variable."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "stableaudio", **fields}))


@pytest.fixture
def connection(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """``stableaudio_default`` pointing at the emulator with a valid key."""
    set_connection(monkeypatch, host=emulator.base_url, password=API_KEY)
    return emulator


@pytest.fixture
def stability(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """``stability_default`` (type ``stability``) pointing at the emulator's Stability AI routes."""
    set_connection(
        monkeypatch, "stability_default", conn_type="stability", host=emulator.base_url, password=API_KEY
    )
    return emulator


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    """A loopback server answering from a script, for failures the emulator cannot stage yet."""
    with ScriptedServer() as server:
        set_connection(monkeypatch, host=server.base_url, password=API_KEY)
        yield server


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata database, for ``dag.test()``."""
    from airflow.utils.db import initdb

    initdb()
