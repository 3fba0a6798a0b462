"""The real-stack tier: one deployment (Postgres, api-server, scheduler, dag-processor, two triggerers;
with ``STACK_EXECUTOR=celery`` also Redis and two Celery workers) for the whole session, started from
the wheel in ``dist/``; figures printed at the end."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.stack import EXECUTOR, ROOT, Stack, StackError, postgres_bindir

FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    if postgres_bindir() is None and os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip(
            "the real-stack tier needs a PostgreSQL server: install it with `sudo apt-get install postgresql` "
            "(or run as root, and the tier installs it)"
        )
    # Not build/stack: that is `make up`'s, and a person's running stack must survive `make test`.
    # The Celery tier (STACK_EXECUTOR=celery) in a folder of its own: its logs and venv differ.
    default_root = ROOT / "build" / ("stack-test" if EXECUTOR == "local" else f"stack-test-{EXECUTOR}")
    root = Path(os.environ.get("STACK_DIR", default_root)).resolve()
    deployment = Stack(
        root=root,
        dag_folders=(ROOT / "example_dags", ROOT / "tests" / "system" / "dags"),
        config={
            # Below the 40-clip fan-out: one triggerer alone cannot take all of it, so both carry it.
            "AIRFLOW__TRIGGERER__CAPACITY": "25",
            # A dead triggerer's triggers move once its heartbeat is older than the threshold
            # (default 5 s and 30 s): the failover scenario need not wait half a minute.
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
            # The watchdog times its own 0.1 s sleep too: 0.15 flags 50 ms beyond it (0.05 would fire
            # every 0.1 s on an idle triggerer).
            "AIRFLOW__TRIGGERER__BLOCKED_MAIN_THREAD_WARNING_THRESHOLD": "0.15",
        },
        # asyncio's debug mode names the task of any callback that holds the loop over 50 ms, and
        # triggerer_site/sitecustomize.py samples the loop's stack meanwhile and writes what it held
        # to logs/loop-stalls/: the watchdog cannot say which trigger it was, nor which code.
        triggerer_env={
            "PYTHONASYNCIODEBUG": "1",
            "PYTHONPATH": str(Path(__file__).parent / "triggerer_site"),
            "STACK_LOOP_STALL_DIR": str(root / "logs" / "loop-stalls"),
        },
    )
    started = time.monotonic()
    try:
        deployment.start()
    except StackError as exc:
        deployment.stop()
        pytest.fail(f"the real stack did not start: {exc}", pytrace=False)
    FIGURES["executor"] = deployment.executor
    FIGURES["start"] = {k: round(v, 1) for k, v in deployment.state["timings"].items()}
    try:
        yield deployment
    finally:
        deployment.stop()
        FIGURES["tier_seconds"] = round(time.monotonic() - started, 1)
        (deployment.root / "figures.json").write_text(json.dumps(measured(), indent=2))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A dict for the running scenario's figures, printed at the end of the session."""
    return FIGURES.setdefault(request.node.name, {})


def measured() -> dict[str, Any]:
    """The figures, less the empty ones of scenarios that were skipped."""
    return {name: value for name, value in FIGURES.items() if value != {}}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if measured():
        terminalreporter.section("real-stack figures")
        for name, value in measured().items():
            terminalreporter.write_line(f"{name}: {json.dumps(value)}")
