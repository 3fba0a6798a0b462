"""`make clips-check`: the Clips page (docs/clips.md) in a real browser, on the `make up` stack.

Starts the same deployment as `make up` (``Stack`` of ``tests/system/stack.py``, from the wheel in
``dist/``) in ``build/stack-clips/`` on free ports; Airflow's version is ``STACK_AIRFLOW_VERSION``
(default 3.3.2; `make clips-check CLIPS_AIRFLOW=3.1.2` for the lowest supported). Then:

1. runs ``example_stable_audio`` (AI/ML API, deferred) and ``example_stability_text_to_audio``
   (Stability AI), each storing its clip, and waits for both to succeed;
2. in headless Chromium signs in as ``admin`` and opens **Browse -> Clips** from the navigation;
3. inside the page's iframe: both runs' clips are listed, newest first, with their prompts;
4. plays the AI/ML API clip: its ``<audio>`` reaches ``readyState >= 1`` with a duration equal to
   the clip's shown length, plays, and seeks (HTTP Range through the app); its waveform is drawn;
5. filters by DAG: only that DAG's clip is left, and the totals say one clip; its task link
   moves the UI (not the iframe) to that task instance's page;
6. opens the run's ``generate_clip`` task instance and its **Stable Audio clip** tab: the same
   player, for that task's clip.

Screenshots go to ``build/clips-check-<version>/`` (``failure.png`` too when a wait times out); with
``--docs`` the page and the tab are also copied to ``docs/images/`` (``clips-page.png``,
``clips-task-instance.png``). Every process it started is stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import headless
from headless import ROOT, Browser, log

sys.path.insert(0, str(ROOT))
from up_check import prepare, run_against

from tests.system.stack import ADMIN, AIRFLOW_VERSION, Stack

CHECK = "clips-check"
AIMLAPI_DAG, AIMLAPI_TASK = "example_stable_audio", "generate_clip"
STABILITY_DAG = "example_stability_text_to_audio"
IFRAME = "//iframe"
# Read in one go: the list is redrawn when it reloads, and elements found a moment ago go stale.
SHOWN_DAGS = "return [...document.querySelectorAll('article')].map((a) => a.dataset.dagId)"
DOCS_SHOTS = {"clips-page": "clips-page.png", "clips-task-instance": "clips-task-instance.png"}
# The audio element plays without a click: the check is not a person.
headless.CHROMIUM_FLAGS.append("--autoplay-policy=no-user-gesture-required")


def sign_in(browser: Browser, base: str, password: str) -> None:
    """The simple auth manager's login page, as a person fills it in (3.1's home page has no
    ``nav-dags-link`` test id: the Browse button says the UI is there)."""
    browser.driver.get(f"{base}/")
    browser.wait(lambda d: "/auth/login" in d.current_url, "the redirect to the login page")
    browser.element("//input[@name='username']", "the Username field").send_keys(ADMIN)
    browser.element("//input[@name='password']", "the Password field").send_keys(password)
    browser.click("//button[@type='submit']", "the Sign in button")
    browser.element("//button[normalize-space()='Browse']", "the UI's navigation after signing in")
    log(f"signed in as {ADMIN}")


def open_clips_from_the_navigation(browser: Browser) -> None:
    """Browse -> Clips, as a person clicks them; then into the page's iframe."""
    browser.click("//button[normalize-space()='Browse']", "Browse in the navigation")
    browser.click(
        "//*[@role='menu']//*[self::a or @role='menuitem'][normalize-space()='Clips']", "Clips in Browse"
    )
    browser.wait(lambda d: "/plugin/stableaudio-clips" in d.current_url, "the Clips page's URL")
    enter_iframe(browser)


def enter_iframe(browser: Browser) -> None:
    frame = browser.element(IFRAME, "the plugin's iframe")
    browser.driver.switch_to.frame(frame)
    browser.element("//body[@data-loaded='true']", "the Clips page to load its clips", timeout=60)


def clip_xpath(dag_id: str, run_id: str | None = None) -> str:
    xpath = f"//article[@data-dag-id='{dag_id}']"
    if run_id:
        xpath += f"[.//a[normalize-space()='run {run_id}']]"
    return xpath


def play(browser: Browser, article: str) -> dict[str, Any]:
    """Load, play and seek the article's audio; what the element reported."""
    browser.element(f"{article}//audio", "the clip's player")
    script = """
        const [xpath, done] = [arguments[0], arguments[arguments.length - 1]];
        const article = document.evaluate(xpath, document, null, 9, null).singleNodeValue;
        const audio = article.querySelector("audio");
        const report = (extra) => done(Object.assign({
            readyState: audio.readyState, duration: audio.duration, currentTime: audio.currentTime,
            error: audio.error && audio.error.code,
            shown: parseFloat(article.querySelector(".length").dataset.seconds),
            wave: (article.querySelector("canvas") || {dataset: {}}).dataset.drawn || null,
        }, extra));
        const ready = audio.readyState >= 1 ? Promise.resolve()
            : new Promise((ok, bad) => { audio.addEventListener("loadedmetadata", ok, {once: true});
                                         audio.addEventListener("error", bad, {once: true}); });
        ready.then(() => audio.play())
            .then(() => new Promise((ok) => setTimeout(ok, 700)))
            .then(() => { const played = audio.currentTime; audio.pause();
                return new Promise((ok) => { audio.addEventListener("seeked", () => ok(played), {once: true});
                                             audio.currentTime = audio.duration / 2; }); })
            .then((played) => report({played: played, seekedTo: audio.currentTime}))
            .catch((error) => report({failure: String(error)}));
    """
    browser.driver.set_script_timeout(60)
    result: dict[str, Any] = browser.driver.execute_async_script(script, article)
    return result


def check_played(browser: Browser, what: str, result: dict[str, Any]) -> None:
    if result.get("failure") or result["readyState"] < 1:
        raise browser.fail(f"{what}: the audio did not load or play: {result}")
    if abs(result["duration"] - result["shown"]) > 0.05:
        raise browser.fail(f"{what}: the player's duration {result['duration']} is not {result['shown']}")
    if not result["played"] > 0 or abs(result["seekedTo"] - result["duration"] / 2) > 0.5:
        raise browser.fail(f"{what}: did not play and seek: {result}")
    log(
        f"{what}: readyState {result['readyState']}, duration {result['duration']:.3f}s = shown "
        f"{result['shown']}s, played to {result['played']:.2f}s, seeked to {result['seekedTo']:.2f}s"
    )


def wait_wave(browser: Browser, article: str) -> None:
    browser.element(f"{article}//canvas[@data-drawn='true']", "the clip's waveform", timeout=30)


def make_runs(stack: Stack, timings: dict[str, float]) -> tuple[str, str]:
    """Start the stack and run both DAGs; their run ids (AI/ML API, Stability AI)."""
    started = time.monotonic()
    log(f"starting the `make up` stack (Airflow {stack.airflow_version}) in {stack.root}")
    stack.start()
    timings["stack up"] = time.monotonic() - started
    started = time.monotonic()
    # Stability first: the AI/ML API clip is then the newest, at the top of the page.
    stability_run = stack.trigger(STABILITY_DAG)
    if stack.wait_for_run(STABILITY_DAG, stability_run, timeout=600) != "success":
        raise SystemExit(f"{CHECK}: {STABILITY_DAG} run {stability_run} failed; logs in {stack.logs}")
    run_id = stack.trigger(AIMLAPI_DAG)
    if stack.wait_for_run(AIMLAPI_DAG, run_id, timeout=600) != "success":
        raise SystemExit(f"{CHECK}: {AIMLAPI_DAG} run {run_id} failed; logs in {stack.logs}")
    timings["two runs"] = time.monotonic() - started
    return run_id, stability_run


def last_runs(stack: Stack) -> tuple[str, str]:
    """The newest run of each DAG on a stack left running by ``--keep`` (for ``--reuse``)."""
    runs = [
        stack.api("GET", f"/dags/{dag}/dagRuns?order_by=-run_after&limit=1")["dag_runs"][0]["dag_run_id"]
        for dag in (AIMLAPI_DAG, STABILITY_DAG)
    ]
    return runs[0], runs[1]


def run_check(stack: Stack, shots: Path, *, docs: bool, reuse: bool) -> dict[str, float]:
    timings: dict[str, float] = {}
    run_id, stability_run = last_runs(stack) if reuse else make_runs(stack, timings)
    log(f"runs done: {AIMLAPI_DAG} {run_id}, {STABILITY_DAG} {stability_run}")

    browser = Browser(stack.root / "chromium-profile", shots, check=CHECK)
    try:
        started = time.monotonic()
        sign_in(browser, stack.api_url, stack.state["admin_password"])
        open_clips_from_the_navigation(browser)
        newest, older = clip_xpath(AIMLAPI_DAG, run_id), clip_xpath(STABILITY_DAG, stability_run)
        browser.element(newest, f"the clip of {AIMLAPI_DAG} run {run_id}")
        browser.element(older, f"the clip of {STABILITY_DAG} run {stability_run}")
        order = browser.driver.execute_script(SHOWN_DAGS)
        if order[:2] != [AIMLAPI_DAG, STABILITY_DAG]:
            raise browser.fail(f"clips not newest first: {order}")
        log(f"listed: {len(order)} clips, newest first ({order[:2]})")
        check_played(browser, f"{AIMLAPI_DAG} clip", play(browser, newest))
        wait_wave(browser, newest)
        browser.driver.switch_to.default_content()
        browser.screenshot("clips-page")
        enter_iframe(browser)

        from selenium.webdriver.support.ui import Select

        Select(browser.element("//select[@id='filter-dag']", "the DAG filter")).select_by_value(STABILITY_DAG)
        browser.wait(
            lambda d: set(d.execute_script(SHOWN_DAGS)) == {STABILITY_DAG},
            f"only {STABILITY_DAG}'s clips after filtering",
        )
        totals = browser.element("//p[@id='totals']", "the totals").text
        log(f"filtered by {STABILITY_DAG}: totals {totals!r}")
        check_played(browser, f"{STABILITY_DAG} clip", play(browser, older))
        browser.driver.switch_to.default_content()
        browser.screenshot("clips-filtered")
        # A clip's task link moves the UI itself (not the iframe) to the task instance's page.
        enter_iframe(browser)
        browser.click(f"{older}//a[starts-with(normalize-space(), 'task ')]", "the clip's task instance link")
        browser.driver.switch_to.default_content()
        task_path = f"/dags/{STABILITY_DAG}/runs/{stability_run}/tasks/generate_clip"
        browser.wait(
            lambda d: urllib.parse.unquote(urllib.parse.urlsplit(d.current_url).path) == task_path,
            f"the UI to show {task_path} after the link",
        )
        log(f"the clip's task link opened {task_path} in the UI")
        timings["page"] = time.monotonic() - started

        started = time.monotonic()
        run_page = f"{stack.api_url}/dags/{AIMLAPI_DAG}/runs/{urllib.parse.quote(run_id)}"
        browser.driver.get(f"{run_page}/tasks/{AIMLAPI_TASK}")
        tab = "//a[normalize-space()='Stable Audio clip'][contains(@href, 'plugin/')]"
        browser.click(tab, "the task instance's Stable Audio clip tab")
        enter_iframe(browser)
        article = clip_xpath(AIMLAPI_DAG, run_id)
        browser.element(article, "the task instance's clip in its tab")
        check_played(browser, "the task instance tab's clip", play(browser, article))
        wait_wave(browser, article)
        browser.driver.switch_to.default_content()
        browser.screenshot("clips-task-instance")
        timings["task instance tab"] = time.monotonic() - started
    finally:
        browser.quit()
    if docs:
        for shot, name in DOCS_SHOTS.items():
            shutil.copyfile(shots / f"{shot}.png", ROOT / "docs" / "images" / name)
            log(f"copied {shot}.png to docs/images/{name}")
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(ROOT / "build" / f"{CHECK}-{AIRFLOW_VERSION}"))
    parser.add_argument("--root", default=str(ROOT / "build" / "stack-clips"), help="the stack's folder")
    parser.add_argument("--port", type=int, default=0, help="the UI's port (default: a free one)")
    parser.add_argument("--generation-seconds", type=float, default=10.0, help="the emulator's")
    parser.add_argument("--docs", action="store_true", help="copy the screenshots to docs/images/")
    # For working on the check: leave the stack up, then check again without starting it anew.
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    parser.add_argument("--reuse", action="store_true", help="check the stack a --keep run left up")
    parser.add_argument("--stop", action="store_true", help="stop the stack a --keep run left up")
    args = parser.parse_args()
    if args.stop:
        Stack.load(Path(args.root).resolve()).stop()
        return 0
    stack, shots = prepare(CHECK, args)
    if args.reuse:
        stack = Stack.load(stack.root)
    check = lambda: run_check(stack, shots, docs=args.docs, reuse=args.reuse)  # noqa: E731
    if args.keep:
        timings = check()
        log(f"{CHECK} passed ({timings}); the stack is still up: {sys.argv[0]} --stop")
        return 0
    return run_against(CHECK, stack, shots, check)


if __name__ == "__main__":
    sys.exit(main())
