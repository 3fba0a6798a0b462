"""The API key never appears in a log, an XCom, a trigger row, a rendered template or an error message."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import AIRFLOW_HOME, API_KEY, set_connection
from tests.dags import load_dag
from tests.scripted_server import Reply, ScriptedServer

CANARY = "sk-canary-7d1e0b5a9f"


def database_text() -> str:
    """Every row of every table of the metadata database, as text (trigger kwargs decrypted too)."""
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import MetaData, select

    parts = []
    with create_session() as session:
        metadata = MetaData()
        metadata.reflect(bind=session.get_bind())
        for table in metadata.sorted_tables:
            parts.extend(repr(tuple(row)) for row in session.execute(select(table)))
        parts.extend(repr(trigger.kwargs) for trigger in session.scalars(select(Trigger)))
    return "\n".join(parts)


def log_files_text() -> str:
    return "\n".join(
        path.read_text(errors="replace")
        for path in Path(AIRFLOW_HOME).rglob("*")
        if path.is_file() and path.suffix != ".db"
    )


def assert_nowhere(key: str, captured: str) -> None:
    assert key not in captured, "in the task output"
    assert key not in log_files_text(), "in a log file"
    assert key not in database_text(), "in the metadata database"
    assert "Bearer" not in captured, "a header was logged"


@pytest.mark.usefixtures("airflow_db")
def test_a_successful_run_leaves_no_key(
    connection, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = load_dag("example_stable_audio.py", "example_stable_audio").test(
        run_conf={"seconds": 1, "output_dir": str(tmp_path)}
    )
    captured = "".join(capfd.readouterr())
    assert run.state == "success"
    assert "Generation" in captured  # the task's own log lines were captured
    assert_nowhere(API_KEY, captured)


@pytest.mark.usefixtures("airflow_db")
def test_failing_runs_leave_no_key(emulator, monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    # 401: the API refuses the canary key (the emulator only accepts the tests' key).
    set_connection(monkeypatch, "stableaudio_401", host=emulator.base_url, password=CANARY)
    # 500: the API accepts the submission, then every poll fails until the task's timeout.
    with ScriptedServer() as scripted:
        scripted.script(Reply(200, {"id": "g-500", "status": "queued"}))
        scripted.script(
            *[Reply(500, {"message": f"boom, your key {CANARY} is fine", "statusCode": 500})] * 200
        )
        set_connection(monkeypatch, "stableaudio_500", host=scripted.base_url, password=CANARY)
        refused = load_dag("failing_runs.py", "failing_401").test()
        broken = load_dag("failing_runs.py", "failing_500").test()
    captured = "".join(capfd.readouterr())
    assert (refused.state, broken.state) == ("failed", "failed")
    assert "HTTP 401" in captured
    assert "g-500 timed out" in captured  # names the generation, and:
    assert "still 'queued'" in captured or "still 'unknown'" in captured
    assert "HTTP 500" in captured  # the poll errors were reported, with the key redacted
    assert_nowhere(CANARY, captured)
    assert not Path("/tmp/stableaudio-tests/never-written.wav").exists()
