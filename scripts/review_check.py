"""`make review-check`: the review example's request as a person sees it, in headless Chromium.

Starts the deployment of `make up` (``Stack`` of ``tests/system/stack.py``) in ``build/stack-review-ui/``
on free ports, triggers ``example_stable_audio_review`` through the REST API and waits until its
``review`` task waits for a person. Then, in headless Chromium (``scripts/headless.py``):

1. signs in as ``admin`` (as `make up-check` does);
2. opens **Required Actions** from the navigation's Browse menu, where the pending request is listed
   by its subject (``required-actions.png``);
3. opens it: the review page shows the request's body, rendered from Markdown; checks that it links
   each candidate ("listen to Candidate N") to that candidate's clip, the ``audio_file`` URL of its
   mapped task, and screenshots it (``review-page.png``);
4. chooses "Candidate 2" on that page, waits for the run to succeed and checks, through the REST
   API and on disk, that the published clip is candidate 2's and that the asset event names it.

Screenshots go to ``build/review-check/`` (``failure.png`` too when a wait times out). Every process
it started is stopped at the end, also on failure; any failed check exits non-zero with what failed.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headless import ROOT, Browser, log
from up_check import prepare, run_against, sign_in

if TYPE_CHECKING:
    from tests.system.stack import Stack

CHECK = "review-check"
DAG_ID = "example_stable_audio_review"
TASK_ID = "review"
SUBJECT = "Which intro should we publish?"
CANDIDATES = ["Candidate 1", "Candidate 2", "Candidate 3"]
CHOICE = "Candidate 2"
# An answer within seconds of the request can meet an Airflow race (tests/system/test_human_review.py).
ANSWER_AFTER_SECONDS = 10


def wait_for_review(stack: Stack, run_id: str, timeout: float = 300) -> dict[str, Any]:
    """The run's pending review request, once its task waits for a person."""
    path = f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{TASK_ID}/-1/hitlDetails"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {ti["task_id"]: ti["state"] for ti in stack.task_instances(DAG_ID, run_id)}
        if states.get(TASK_ID) in ("awaiting_input", "deferred"):
            return dict(stack.api("GET", path))
        if stack.run_state(DAG_ID, run_id) in ("success", "failed"):
            raise SystemExit(f"{CHECK}: run {run_id} ended before its review: {states}; logs in {stack.logs}")
        time.sleep(1)
    raise SystemExit(f"{CHECK}: run {run_id} asked for no review in {timeout:g}s; logs in {stack.logs}")


def open_required_actions(browser: Browser) -> None:
    """Browse -> Required Actions: the pending request is listed by its subject."""
    browser.click("//button[normalize-space()='Browse']", "Browse in the navigation")
    browser.click("//*[@role='menuitem'][normalize-space()='Required Actions']", "Required Actions in Browse")
    browser.wait(lambda d: "/required_actions" in d.current_url, "the Required Actions page")
    browser.element(f"//a[normalize-space()={SUBJECT!r}]", f"the pending request {SUBJECT!r}")
    browser.screenshot("required-actions")


def see_review_page(browser: Browser, audio_files: list[dict[str, Any]]) -> None:
    """Open the request; each candidate's listen link must point at that candidate's clip."""
    browser.click(f"//a[normalize-space()={SUBJECT!r}]", f"the request {SUBJECT!r}")
    browser.wait(
        lambda d: d.current_url.split("?")[0].endswith(f"/tasks/{TASK_ID}/required_actions"),
        "the review page",
    )
    for option, audio_file in zip(CANDIDATES, audio_files, strict=True):
        link = browser.element(
            f"//a[normalize-space()='listen to {option}']", f"the link 'listen to {option}'"
        )
        href = link.get_attribute("href")
        if href != audio_file["url"]:
            raise browser.fail(f"'listen to {option}' links to {href!r}, not its clip {audio_file['url']!r}")
        log(f"review page: 'listen to {option}' -> {href}")
    for option in [*CANDIDATES, "Reject"]:
        browser.element(f"//button[normalize-space()={option!r}]", f"the {option!r} button")
    browser.screenshot("review-page")


def choose(browser: Browser, request: dict[str, Any]) -> None:
    """Click the chosen candidate's button on the review page, once the request is old enough."""
    age = datetime.now(UTC) - datetime.fromisoformat(request["created_at"])
    time.sleep(max(0.0, ANSWER_AFTER_SECONDS - age.total_seconds()))
    browser.click(f"//button[normalize-space()={CHOICE!r}]", f"the {CHOICE!r} button")
    log(f"chose {CHOICE!r} on the review page")


def check_published(stack: Stack, run_id: str, audio_files: list[dict[str, Any]]) -> Path:
    """The run succeeded and published candidate 2's clip, and only it; its asset event names it."""
    state = stack.wait_for_run(DAG_ID, run_id, timeout=300)
    states = {ti["task_id"]: ti["state"] for ti in stack.task_instances(DAG_ID, run_id)}
    if state != "success" or states.get("publish") != "success":
        raise SystemExit(f"{CHECK}: run {run_id} ended {state!r} (tasks {states}); logs in {stack.logs}")
    chosen = CANDIDATES.index(CHOICE)
    hitl = stack.api(
        "GET", f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{TASK_ID}/-1/hitlDetails"
    )
    if hitl["chosen_options"] != [CHOICE]:
        raise SystemExit(f"{CHECK}: the review recorded {hitl['chosen_options']}, not [{CHOICE!r}]")
    query = urllib.parse.urlencode({"source_dag_id": DAG_ID, "source_run_id": run_id})
    events = stack.api("GET", f"/assets/events?{query}")["asset_events"]
    if len(events) != 1 or events[0]["extra"]["generation_id"] != audio_files[chosen]["generation_id"]:
        raise SystemExit(f"{CHECK}: expected one asset event for {CHOICE}'s clip, got {events}")
    published = Path(events[0]["extra"]["local_path"])
    candidate = Path(stack.xcom(DAG_ID, run_id, "generate_candidates", "local_path", chosen))
    if (
        sorted((stack.output / "published").iterdir()) != [published]
        or published.read_bytes() != candidate.read_bytes()
    ):
        raise SystemExit(f"{CHECK}: {stack.output / 'published'} does not hold exactly {CHOICE}'s clip")
    log(
        f"published {published} ({CHOICE}, chosen by {hitl['responded_by_user']['name']}); "
        f"asset event of {events[0]['name']}"
    )
    return published


def run_check(stack: Stack, shots: Path) -> dict[str, float]:
    timings: dict[str, float] = {}
    started = time.monotonic()
    log(f"starting the `make up` stack in {stack.root} (logs in {stack.logs})")
    stack.start()
    timings["stack up"] = time.monotonic() - started
    started = time.monotonic()
    run_id = stack.trigger(DAG_ID)
    log(f"triggered {DAG_ID}: run {run_id}")
    request = wait_for_review(stack, run_id)
    audio_files = [stack.xcom(DAG_ID, run_id, "generate_candidates", "audio_file", i) for i in range(3)]
    timings["to the review request"] = time.monotonic() - started
    log(f"{TASK_ID} waits for a person: {request['subject']!r}, options {request['options']}")

    browser = Browser(stack.root / "chromium-profile", shots, check=CHECK)
    try:
        sign_in(browser, stack.api_url, stack.state["admin_password"])
        open_required_actions(browser)
        see_review_page(browser, audio_files)
        choose(browser, request)
        check_published(stack, run_id, audio_files)
        timings["to the published clip"] = time.monotonic() - started
    finally:
        browser.quit()
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", default=str(ROOT / "build" / "review-check"), help="folder for the screenshots"
    )
    parser.add_argument(
        "--root",
        default=str(ROOT / "build" / "stack-review-ui"),
        help="the stack's folder (default: %(default)s)",
    )
    parser.add_argument("--port", type=int, default=0, help="the UI's port (default: a free one)")
    # At least 10 s: shorter generations meet an Airflow race (docs/deployment.md).
    parser.add_argument("--generation-seconds", type=float, default=10.0, help="emulator's generation time")
    args = parser.parse_args()
    stack, shots = prepare(CHECK, args)
    return run_against(CHECK, stack, shots, lambda: run_check(stack, shots))


if __name__ == "__main__":
    sys.exit(main())
