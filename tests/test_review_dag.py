"""The review example end to end with ``dag.test()``, its human step answered through Airflow's REST API.

``dag.test()`` cannot answer a human-in-the-loop task: it waits for the answer while the task is
parked. A reviewer thread plays the person: it waits for the review request, reads it, and answers
with the same call the UI's Required Actions page makes (``PATCH .../taskInstances/{task_id}/
{map_index}/hitlDetails``), on Airflow's own API app sharing the test's metadata database.
"""

from __future__ import annotations

import faulthandler
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS

from tests.dags import load_dag
from tests.test_example_dags import xcoms_of

# Verified on Airflow 3.3 only: there the review task waits in Awaiting Input; on 3.1 and 3.2 it
# defers to the standard provider's HITL trigger, and this reviewer's first test failed on 3.2.2
# in `make test-compat` (not investigated yet; docs/compatibility.md).
pytestmark = pytest.mark.skipif(
    not AIRFLOW_V_3_3_PLUS,
    reason="the review example is verified on Airflow 3.3 only (docs/compatibility.md)",
)

DAG_ID = "example_stable_audio_review"
ASSET = "stable_audio_published_clip"
REVIEW_TIMEOUT = 120


@pytest.fixture
def api(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A client of Airflow's public REST API (the simple auth manager treats every caller as an admin)."""
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    # A key of the length PyJWT asks for (the generated default is shorter, and warns on every call).
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_hex(32))
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(apps="core")) as client:
        yield client


class Reviewer(threading.Thread):
    """Waits for the review request of the DAG's newest run, records it, then chooses ``option``."""

    def __init__(self, api: Any, option: str) -> None:
        super().__init__(name="reviewer", daemon=True)
        self.api = api
        self.option = option
        self.request: dict[str, Any] = {}
        self.answer: dict[str, Any] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.request = self._wait_for_request()
            task = self.request["task_instance"]
            path = (
                f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(task['dag_run_id'])}"
                f"/taskInstances/{task['task_id']}/{task['map_index']}/hitlDetails"
            )
            response = self.api.patch(path, json={"chosen_options": [self.option]})
            assert response.status_code == 200, response.text
            self.answer = response.json()
        except BaseException as exc:  # reported by the test, on its own thread
            self.error = exc
            self._fail_the_run()

    def _fail_the_run(self) -> None:
        """Without an answer ``dag.test()`` would wait for ever: fail its run, as a person could in the UI."""
        runs = self.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns?state=running").json()["dag_runs"]
        for run in runs:
            run_id = urllib.parse.quote(run["dag_run_id"])
            self.api.patch(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", json={"state": "failed"})

    def _wait_for_request(self) -> dict[str, Any]:
        deadline = time.monotonic() + REVIEW_TIMEOUT
        while time.monotonic() < deadline:
            response = self.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/~/hitlDetails")
            assert response.status_code == 200, response.text
            pending = [d for d in response.json()["hitl_details"] if not d["response_received"]]
            if pending:
                (request,) = pending
                return dict(request)
            time.sleep(0.5)
        raise TimeoutError(f"no review request within {REVIEW_TIMEOUT}s")


def review_run(api: Any, option: str, output_dir: Path) -> tuple[Any, Reviewer]:
    """Run the example with ``dag.test()`` while the reviewer answers ``option``."""
    reviewer = Reviewer(api, option)
    reviewer.start()
    # Should the run still hang, every thread's stack is printed and the session ends, rather than
    # waiting for ever.
    faulthandler.dump_traceback_later(REVIEW_TIMEOUT + 180, exit=True)
    try:
        run = load_dag("example_stable_audio_review.py", DAG_ID).test(
            run_conf={"output_dir": str(output_dir)}
        )
    finally:
        faulthandler.cancel_dump_traceback_later()
    reviewer.join(timeout=10)
    if reviewer.error is not None:
        raise reviewer.error
    return run, reviewer


def asset_events(api: Any, run_id: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"source_dag_id": DAG_ID, "source_run_id": run_id})
    response = api.get(f"/api/v2/assets/events?{query}")
    assert response.status_code == 200, response.text
    return list(response.json()["asset_events"])


def task_states(run: Any) -> dict[str, set[str]]:
    states: dict[str, set[str]] = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, set()).add(ti.state)
    return states


def test_the_review_request_lists_every_candidate_with_its_listen_link(connection, api, tmp_path) -> None:
    run, reviewer = review_run(api, "Candidate 1", tmp_path)
    assert run.state == "success"

    request = reviewer.request
    xcoms = xcoms_of(run.run_id)
    urls = [xcoms[("generate_candidates", "audio_file", index)]["url"] for index in range(3)]
    assert request["options"] == ["Candidate 1", "Candidate 2", "Candidate 3", "Reject"]
    assert request["multiple"] is False
    assert request["subject"] == "Which intro should we publish?"
    prompts = load_dag("example_stable_audio_review.py", DAG_ID).get_task("generate_candidates")
    for number, (url, prompt) in enumerate(zip(urls, prompts.expand_input.value["prompt"], strict=True), 1):
        assert (
            f"- **Candidate {number}**: {prompt} ([listen to Candidate {number}]({url})," in request["body"]
        )
    assert len(set(urls)) == 3


def test_approving_a_candidate_publishes_exactly_that_clip(connection, api, tmp_path) -> None:
    run, reviewer = review_run(api, "Candidate 2", tmp_path)
    assert run.state == "success"
    assert task_states(run) == {
        "generate_candidates": {"success"},
        "shortlist": {"success"},
        "review": {"success"},
        "publish": {"success"},
    }
    assert reviewer.answer["chosen_options"] == ["Candidate 2"]

    xcoms = xcoms_of(run.run_id)
    chosen = xcoms[("generate_candidates", "audio_file", 1)]
    candidate_path = Path(xcoms[("generate_candidates", "local_path", 1)])
    (published,) = (tmp_path / "published").iterdir()  # only the chosen one
    assert published == tmp_path / "published" / f"{run.run_after:%Y%m%dT%H%M%S}.wav"
    assert published.read_bytes() == candidate_path.read_bytes()
    others = [Path(xcoms[("generate_candidates", "local_path", index)]).read_bytes() for index in (0, 2)]
    assert published.read_bytes() not in others  # (each prompt makes different audio)
    assert len(connection.ledger()["generations"]) == 3  # one paid generation per candidate, no more

    (event,) = asset_events(api, run.run_id)
    assert event["name"] == ASSET
    assert event["source_task_id"] == "publish"
    assert event["extra"] == xcoms[("publish", "return_value", -1)]
    assert event["extra"]["option"] == "Candidate 2"
    assert event["extra"]["generation_id"] == chosen["generation_id"]
    assert event["extra"]["url"] == chosen["url"]
    assert event["extra"]["credits_used"] == chosen["credits_used"]
    assert event["extra"]["local_path"] == str(published)
    assert event["extra"]["prompt"] == "A bright synth-pop intro with hand claps"
    assert event["extra"]["reviewed_by"] == reviewer.answer["responded_by"]["name"]


def test_rejecting_publishes_nothing_and_emits_no_asset_event(connection, api, tmp_path) -> None:
    run, reviewer = review_run(api, "Reject", tmp_path)
    assert run.state == "success"
    assert task_states(run) == {
        "generate_candidates": {"success"},
        "shortlist": {"success"},
        "review": {"success"},
        "publish": {"skipped"},
    }
    assert reviewer.answer["chosen_options"] == ["Reject"]
    assert len(list((tmp_path / "review").rglob("candidate_*.wav"))) == 3  # the candidates stay
    assert not (tmp_path / "published").exists()
    assert asset_events(api, run.run_id) == []


def test_a_rejection_taken_by_default_at_the_deadline_publishes_nothing(tmp_path) -> None:
    """With ``response_timeout`` and ``defaults=["Reject"]`` the answer has no user (docs/review.md)."""
    from airflow.providers.common.compat.sdk import AirflowSkipException

    publish = load_dag("example_stable_audio_review.py", DAG_ID).get_task("publish").python_callable
    decision = {"chosen_options": ["Reject"], "params_input": {}, "responded_by_user": None}
    with pytest.raises(AirflowSkipException, match="Rejected by the deadline: nothing published"):
        publish(decision, [], params={"output_dir": str(tmp_path)}, dag_run=None, outlet_events={})
    assert list(tmp_path.iterdir()) == []
