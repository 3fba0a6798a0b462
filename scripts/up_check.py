"""`make up-check`: what `make up` gives a newcomer, checked in a real browser.

Starts the same deployment as `make up` (``Stack`` of ``tests/system/stack.py``: Postgres, the
emulator, api-server, scheduler, dag-processor and two triggerers, from the wheel in ``dist/``), but
in ``build/stack-ui/`` and on free ports, so it never meets a running `make up`. Then, in headless
Chromium (``scripts/headless.py``), as a person would:

1. signs in on the simple auth manager's login page as ``admin`` with the generated password;
2. Dags -> ``example_stable_audio`` -> **Trigger** -> **Trigger** in the dialog (the UI's own button;
   the run id is read from the run page the UI opens);
3. on that page (the grid on the left, the run's task instances on the right) waits until
   ``generate_clip`` shows **Deferred**, and screenshots it (``grid-deferred.png``);
4. waits for the run to succeed (through the REST API, which tells a failure from a slow run);
5. clicks the task's square in the grid, opens its **Details** tab, where the **Extra Links** section
   has the "Stable Audio clip" button, screenshots it (``clip-link.png``) and checks that its href is
   the clip's URL on the emulator (``/files/<id>.wav``, the ``audio_file`` XCom);
6. fetches that URL: HTTP 200 and a RIFF/WAVE header.

Screenshots go to ``build/up-check/`` (``failure.png`` too when a wait times out). Every process it
started is stopped at the end, also on failure; any failed check exits non-zero with what failed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headless import ROOT, Browser, log, require_chromium

sys.path.insert(0, str(ROOT))
from tests.system.stack import ADMIN, Stack, StackError
from tests.system.stack import BUILD as MAKE_UP_DIR

if TYPE_CHECKING:
    from collections.abc import Callable

CHECK = "up-check"
DAG_ID = "example_stable_audio"
TASK_ID = "generate_clip"
LINK = "Stable Audio clip"


def sign_in(browser: Browser, base: str, password: str) -> None:
    """The simple auth manager's "Sign into Airflow" page, as a person fills it in."""
    browser.driver.get(f"{base}/")
    browser.wait(lambda d: "/auth/login" in d.current_url, "the redirect to the login page")
    browser.element("//h2[normalize-space()='Sign into Airflow']", "the 'Sign into Airflow' page")
    browser.element("//input[@name='username']", "the Username field").send_keys(ADMIN)
    browser.element("//input[@name='password']", "the Password field").send_keys(password)
    browser.click("//button[@type='submit'][normalize-space()='Sign in']", "the Sign in button")
    browser.element("//*[@data-testid='nav-dags-link']", "the home page after signing in")
    if "/auth/login" in browser.driver.current_url:
        raise browser.fail(f"still on the login page after signing in as {ADMIN}")
    log(f"signed in as {ADMIN}")


def trigger_in_ui(browser: Browser) -> str:
    """Dags -> the DAG -> Trigger -> Trigger; the run id, from the run page the UI then opens."""
    browser.click("//*[@data-testid='nav-dags-link']", "Dags in the navigation")
    browser.click(f"//a[@href='/dags/{DAG_ID}'][normalize-space()='{DAG_ID}']", f"{DAG_ID} in the Dags list")
    browser.click("//button[@data-testid='trigger-dag-button']", "the Trigger button")
    # Pages keep closed dialogs in the DOM: the open one is the one to use.
    dialog = "//*[@role='dialog'][@data-state='open']"
    browser.element(f"{dialog}//h2[contains(., '{DAG_ID}')]", "the Trigger dialog")
    browser.click(f"{dialog}//button[@data-testid='trigger-dag-submit']", "the Trigger button of the dialog")
    pattern = re.compile(rf"/dags/{DAG_ID}/runs/([^/?#]+)")
    found = browser.wait(lambda d: pattern.search(d.current_url), "the new run's page")
    run_id = urllib.parse.unquote(found.group(1))
    log(f"triggered {DAG_ID} in the UI: run {run_id}")
    return run_id


def see_deferred(browser: Browser, stack: Stack, run_id: str, timeout: float) -> None:
    """Wait on the run page until the task shows Deferred, then screenshot the grid.

    The grid draws a task instance as a small coloured square (``data-testid=task-state-badge``
    inside the link ``#grid-<run_id>-<task_id>``) with an icon and no text: the state is in its
    colour and in the tooltip shown on hover ("State: Deferred"). Colours are theme details, so the
    check reads words a person reads: the run's Task Instances table beside the grid gives the state
    as the text of a badge (``data-testid=state-badge``), and hovering the square must show the
    tooltip. Both come from the UI's own refresh of a running run; the page is not reloaded.
    """
    row_state = (
        f"//*[@data-testid='table-list']//tr[.//a[normalize-space()='{TASK_ID}']]"
        "//*[@data-testid='state-badge']"
    )
    shown: dict[str, str] = {}

    def deferred_or_past(driver: Any) -> bool:
        badges = driver.find_elements("xpath", row_state)
        shown["state"] = badges[0].text.strip() if badges else ""
        return shown["state"].lower() in ("deferred", "success", "failed", "up for retry")

    browser.wait(deferred_or_past, f"{TASK_ID} to show Deferred on the run page", timeout=timeout)
    if shown["state"] != "Deferred":
        raise browser.fail(f"{TASK_ID} went to {shown['state']!r} without being shown as Deferred")
    api_state = {ti["task_id"]: ti["state"] for ti in stack.task_instances(DAG_ID, run_id)}.get(TASK_ID)
    browser.hover(f"//a[@id='grid-{run_id}-{TASK_ID}']", f"the grid square of {TASK_ID}")
    tooltip = browser.element(
        "//*[@data-scope='tooltip' and @data-part='content']"
        f"[contains(., 'Task ID: {TASK_ID}')][contains(., 'State: Deferred')]",
        f"the grid square's tooltip 'State: Deferred' for {TASK_ID}",
    )
    log(f"grid: {TASK_ID} is Deferred (table badge; tooltip {' / '.join(tooltip.text.splitlines()[:2])});"
        f" the REST API says {api_state!r}")  # fmt: skip
    browser.screenshot("grid-deferred")


def see_success(browser: Browser, run_id: str) -> None:
    """The run page (still open) shows the run's Success badge, by the UI's own refresh or a reload."""
    badge = "//*[@data-testid='header-card']//*[@data-testid='state-badge'][normalize-space()='Success']"
    if not browser.shows(badge, timeout=20):
        log("the run page did not show Success on its own within 20s: reloading it")
        browser.driver.refresh()
        browser.element(badge, "the run's Success badge after a reload")
    log(f"run {run_id}: Success in the UI and the REST API")


def open_clip_link(browser: Browser, run_id: str) -> str:
    """Click the task's grid square, open its Details tab; the href of the "Stable Audio clip" button."""
    browser.click(f"//a[@id='grid-{run_id}-{TASK_ID}']", f"the grid square of {TASK_ID}")
    browser.wait(
        lambda d: d.current_url.split("?")[0].rstrip("/").endswith(f"/tasks/{TASK_ID}"),
        f"the task instance page of {TASK_ID}",
    )
    browser.element(
        "//*[@data-testid='header-card']//*[@data-testid='state-badge'][normalize-space()='Success']",
        f"the Success badge of {TASK_ID}",
    )
    # Airflow 3.3's task instance page shows extra links in its Details tab, under "Extra Links".
    browser.click("//a[normalize-space()='Details'][contains(@href, '/details')]", "the Details tab")
    browser.element("//h2[normalize-space()='Extra Links']", "the Extra Links section")
    link = browser.element(
        f"//h2[normalize-space()='Extra Links']/following::a[normalize-space()='{LINK}'][1]",
        f"the {LINK!r} button",
    )
    href = str(link.get_attribute("href") or "")
    browser.screenshot("clip-link")
    return href


def fetch_wav(url: str) -> int:
    """The size of the WAV at ``url``; exits unless it is HTTP 200 with a RIFF/WAVE header."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            status, body = response.status, response.read()
    except OSError as exc:
        raise SystemExit(f"{CHECK}: the clip link {url} does not serve the clip: {exc}") from None
    if status != 200 or body[:4] != b"RIFF" or body[8:12] != b"WAVE":
        raise SystemExit(f"{CHECK}: {url} answered {status} with {body[:12]!r}, not a WAV")
    return len(body)


def run_check(stack: Stack, shots: Path, *, deferred_timeout: float) -> dict[str, float]:
    timings: dict[str, float] = {}
    started = time.monotonic()
    log(f"starting the `make up` stack in {stack.root} (logs in {stack.logs})")
    stack.start()
    stack.unpause(DAG_ID)  # as `make up` does
    timings["stack up"] = time.monotonic() - started
    log(f"Airflow is up on {stack.api_url}, the emulator on {stack.state['emulator_url']}")

    browser = Browser(stack.root / "chromium-profile", shots, check=CHECK)
    try:
        started = time.monotonic()
        sign_in(browser, stack.api_url, stack.state["admin_password"])
        run_id = trigger_in_ui(browser)
        see_deferred(browser, stack, run_id, deferred_timeout)
        timings["to deferred"] = time.monotonic() - started

        state = stack.wait_for_run(DAG_ID, run_id, timeout=600)
        if state != "success":
            states = {ti["task_id"]: ti["state"] for ti in stack.task_instances(DAG_ID, run_id)}
            raise browser.fail(f"run {run_id} ended {state!r} (tasks {states}); logs in {stack.logs}")
        see_success(browser, run_id)
        audio_file = stack.xcom(DAG_ID, run_id, TASK_ID, "audio_file")
        href = open_clip_link(browser, run_id)
        timings["to the clip link"] = time.monotonic() - started
    finally:
        browser.quit()

    expected = re.compile(re.escape(stack.state["emulator_url"]) + r"/files/[^/?#]+\.wav")
    if href != audio_file["url"] or not expected.fullmatch(href):
        raise SystemExit(
            f"{CHECK}: the {LINK!r} button links to {href!r}; expected the clip {audio_file['url']!r} "
            f"on the emulator ({stack.state['emulator_url']}/files/....wav)"
        )
    size = fetch_wav(href)
    log(f"{LINK!r} -> {href}: HTTP 200, RIFF/WAVE, {size} bytes")
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(ROOT / "build" / "up-check"), help="folder for the screenshots")
    # Not $STACK_DIR: that names `make up`'s folder, and starting a stack stops the one in its folder.
    parser.add_argument(
        "--root", default=str(ROOT / "build" / "stack-ui"), help="the stack's folder (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=0, help="the UI's port (default: a free one)")
    parser.add_argument(
        "--generation-seconds", type=float, default=20.0, help="emulator's generation time, as `make up`"
    )
    args = parser.parse_args()
    stack, shots = prepare(CHECK, args)
    deferred_timeout = max(120.0, args.generation_seconds * 3)
    return run_against(
        CHECK, stack, shots, lambda: run_check(stack, shots, deferred_timeout=deferred_timeout)
    )


def prepare(check: str, args: argparse.Namespace) -> tuple[Stack, Path]:
    """The check's stack (never in `make up`'s folder) and its emptied screenshot folder."""
    require_chromium(check)
    root = Path(args.root).resolve()
    if root == MAKE_UP_DIR.resolve():
        raise SystemExit(f"{check}: {root} is `make up`'s folder; starting there would stop that stack")
    shots = Path(args.out).resolve()
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    return Stack(root=root, api_port=args.port, generation_seconds=args.generation_seconds), shots


def run_against(check: str, stack: Stack, shots: Path, run: Callable[[], dict[str, float]]) -> int:
    """Run a browser check against ``stack``; stop every process it started, whatever happens."""
    started = time.monotonic()
    try:
        timings = run()
    except StackError as exc:
        raise SystemExit(f"{check}: {exc}") from None
    finally:
        names = [n for n in stack.state.get("pids", {}) if stack.alive(n)]
        try:
            stack.stop()
        except Exception as exc:
            raise SystemExit(f"{check}: could not stop the stack ({exc}); pids in {stack.root}") from exc
        log(f"stopped {', '.join(names) or 'nothing'}")
        shutil.rmtree(stack.root / "chromium-profile", ignore_errors=True)
    log("timings: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings.items()))
    log(f"{check} passed in {time.monotonic() - started:.1f}s; screenshots in {shots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
