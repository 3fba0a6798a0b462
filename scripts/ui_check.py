"""`make ui-check`: the provider's connection forms, checked in a real browser.

Starts ``airflow api-server`` on loopback with a throwaway AIRFLOW_HOME (SimpleAuthManager, every
user an admin, so no login; connection testing enabled) and the bundled API emulator (which serves
both the AI/ML API's routes and Stability AI's), then drives headless Chromium (Debian's
``chromium`` and ``chromedriver``) the way a person would, for each connection type of
``CONNECTION_TYPES`` ("Stable Audio" and "Stability AI (Stable Audio)"):

1. Admin -> Connections -> Add Connection, picks the type;
2. checks the form: "Base URL" (with the type's placeholder) and "API Key" replace Host and
   Password, Login / Port / Schema are hidden, "Request timeout (seconds)" is an extra field;
3. fills in the emulator's URL, the key and a timeout, saves, and finds the row in the list;
4. presses the row's "Test Connection" button and waits for "Test Connection Successful" with the
   hook's message naming the emulator's URL (the request went API server -> hook -> emulator);
   for Stability the message carries the account's balance;
5. does the same with a wrong key and expects "Test Connection Failed" with the API's 401.

Screenshots go to ``build/ui-check/``, named ``<connection type>-<step>.png``. Every process it
starts is stopped at the end.

Airflow 3.3.2 rejects the Test of any saved connection without a port ("Bad Request"): its UI sends
``port: 0`` and the API compares that with the stored NULL (apache/airflow#73298, fixed upstream
after 3.3.2 by treating 0 as blank). The check runs the API server through this file with that
one-line fix applied only when the installed Airflow still has the bug, and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headless import ROOT, Browser, log, require_chromium

CHECK = "ui-check"
TIMEOUT = "12"  # typed into the "Request timeout (seconds)" extra field


@dataclass(frozen=True)
class ConnectionType:
    """One connection type of the provider as the UI shows it, and what its Test answers."""

    conn_type: str
    option: str  # the Connection Type as listed in the form
    placeholder: str  # of the Base URL field
    success: str  # a regular expression for the successful Test's message; ``{url}`` is the emulator's
    extra_labels: tuple[str, ...] = ("Request timeout (seconds)",)  # its typed extra fields

    @property
    def conn_id(self) -> str:
        return f"{self.conn_type}_ui_check"

    @property
    def wrong_key_conn_id(self) -> str:
        return f"{self.conn_type}_ui_check_wrong_key"

    def success_pattern(self, url: str) -> re.Pattern[str]:
        return re.compile(self.success.replace("{url}", re.escape(url)))


CONNECTION_TYPES = (
    ConnectionType(
        conn_type="stableaudio",
        option="Stable Audio",
        placeholder="https://api.aimlapi.com",
        success=r"Connected to {url}: the API accepted the key\.",
    ),
    ConnectionType(
        conn_type="stability",
        option="Stability AI (Stable Audio)",
        placeholder="https://api.stability.ai",
        success=r"Connected to {url}: Stability AI accepted the key; balance: \d+(\.\d+)? credits\.",
        extra_labels=("Request timeout (seconds)", "Results are served once only"),
    ),
)


# -- the API server, with Airflow's port-0 fix when it lacks it ---------------------------------


def serve_api_server(argv: list[str]) -> None:
    """Run ``airflow api-server`` in this process, with apache/airflow#73298 applied if needed."""
    from airflow.api_fastapi.core_api.routes.public import connections

    if not connections._same_endpoint(0, None):
        original = connections._same_endpoint

        def same_endpoint(requested: Any, stored: Any) -> bool:
            return bool(original(None if requested == 0 else requested, None if stored == 0 else stored))

        connections._same_endpoint = same_endpoint
        print("ui-check: applied apache/airflow#73298 (Test of a connection without a port)", flush=True)
    from airflow.__main__ import main

    sys.argv = ["airflow", "api-server", *argv]
    main()


# -- processes --------------------------------------------------------------------------------


class Processes:
    """Processes started in their own session, stopped (with their children) at the end."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, argv: list[str], *, env: dict[str, str], log_file: Path
    ) -> subprocess.Popen[bytes]:
        with log_file.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=log_file.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append((name, proc))
        log(f"started {name} (pid {proc.pid}), log: {log_file}")
        return proc

    def stop_all(self) -> None:
        for name, proc in reversed(self.started):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
            # Children that outlived their leader still carry its process group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            log(f"stopped {name} (pid {proc.pid})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Any, *, timeout: float, proc: subprocess.Popen[bytes], log_file: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.stdout.write(log_file.read_text(errors="replace")[-4000:])
            raise SystemExit(f"ui-check: {what} exited with code {proc.returncode}")
        with contextlib.suppress(Exception):
            result = check()
            if result:
                return result
        time.sleep(0.3)
    sys.stdout.write(log_file.read_text(errors="replace")[-4000:])
    raise SystemExit(f"ui-check: {what} not ready after {timeout:.0f}s")


def api_server_healthy(base: str) -> bool:
    with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=5) as response:
        return json.load(response)["metadatabase"]["status"] == "healthy"


def label_of(dialog: Any, field_name: str) -> str:
    """The visible label of the form field ``name=field_name``."""
    field = dialog.find_element("name", field_name)
    label = dialog.find_element("xpath", f".//label[@for='{field.get_attribute('id')}']")
    return str(label.text).replace("*", "").strip()


def add_connection(
    browser: Browser, kind: ConnectionType, *, conn_id: str, host: str, key: str, first: bool
) -> None:
    """Admin -> Connections -> Add Connection, fill the form of ``kind``, save; checks it on ``first``."""
    browser.click("//button[normalize-space()='Admin']", "the Admin menu")
    browser.click("//*[@role='menuitem'][normalize-space()='Connections']", "Admin -> Connections")
    browser.wait(lambda d: d.current_url.rstrip("/").endswith("/connections"), "the connections page")
    browser.click("//button[normalize-space()='Add Connection']", "the Add Connection button")
    dialog = browser.element("//*[@role='dialog'][.//h2[normalize-space()='Add Connection']]", "the dialog")
    dialog.find_element("name", "connection_id").send_keys(conn_id)
    dialog.find_element("css selector", "input[role=combobox]").send_keys(kind.option)
    browser.click(f"//*[@role='option'][normalize-space()='{kind.option}']", f"the {kind.option} option")
    host_input = browser.element("//*[@role='dialog']//input[@name='host']", "the Base URL field")

    if first:
        problems = []
        labels = {name: label_of(dialog, name) for name in ("host", "password")}
        if labels != {"host": "Base URL", "password": "API Key"}:
            problems.append(f"labels {labels}, expected Base URL and API Key")
        if host_input.get_attribute("placeholder") != kind.placeholder:
            problems.append(f"Base URL placeholder {host_input.get_attribute('placeholder')!r}")
        for hidden in ("login", "port", "schema"):
            if [e for e in dialog.find_elements("name", hidden) if e.is_displayed()]:
                problems.append(f"the {hidden!r} field is shown but should be hidden")
        browser.screenshot(f"{kind.conn_type}-01-form")
        if problems:
            raise SystemExit(f"ui-check: the {kind.option} form is wrong: " + "; ".join(problems))
        log(f"{kind.conn_type} form: labels {labels}, Base URL placeholder {kind.placeholder!r}")
        log(f"{kind.conn_type} form: login/port/schema hidden")

    host_input.send_keys(host)
    dialog.find_element("name", "password").send_keys(key)
    if first:
        browser.screenshot(f"{kind.conn_type}-02-form-filled")
    browser.click("//*[@role='dialog']//button[normalize-space()='Extra Fields']", "the Extra Fields section")
    timeout_input = browser.element(
        "//*[@role='dialog']//label[normalize-space()='Request timeout (seconds)']/following::input[1]",
        "the Request timeout extra field",
    )
    timeout_input.send_keys(TIMEOUT)
    for label in kind.extra_labels:
        browser.element(
            f"//*[@role='dialog']//label[normalize-space()='{label}']", f"the {label!r} extra field"
        )
    if first:
        log(f"{kind.conn_type} form: the extra fields {list(kind.extra_labels)} are there")
        browser.screenshot(f"{kind.conn_type}-03-form-extra-fields")
    browser.click("//*[@role='dialog']//button[normalize-space()='Save']", "the Save button")
    browser.wait(lambda d: not d.find_elements("xpath", "//*[@role='dialog']"), "the dialog to close")
    browser.element(f"//tr[td[normalize-space()='{conn_id}']]", f"the row of {conn_id}")


def test_connection(browser: Browser, conn_id: str) -> None:
    row = browser.element(f"//tr[td[normalize-space()='{conn_id}']]", f"the row of {conn_id}")
    row.find_element("css selector", "button[aria-label='Test Connection']").click()


def saved_connection(browser: Browser, conn_id: str) -> dict[str, Any]:
    """The connection as the API server stored it, read with the browser's own session."""
    script = """
        const done = arguments[arguments.length - 1];
        fetch('/api/v2/connections/' + arguments[0])
            .then(r => r.json())
            .then(done, e => done({error: String(e)}));
    """
    result: dict[str, Any] = browser.driver.execute_async_script(script, conn_id)
    return result


def delete_connections(browser: Browser, *conn_ids: str) -> None:
    """Delete with the browser's own session and reload, so the next type starts from an empty list
    (the list's Test icons are page state that would otherwise stay on the rows below)."""
    script = """
        const done = arguments[arguments.length - 1];
        Promise.all(arguments[0].map(id => fetch('/api/v2/connections/' + id, {method: 'DELETE'})))
            .then(rs => done(rs.map(r => r.status)), e => done([String(e)]));
    """
    statuses = browser.driver.execute_async_script(script, list(conn_ids))
    if statuses != [204] * len(conn_ids):
        raise SystemExit(f"ui-check: deleting {conn_ids} answered {statuses}")
    browser.driver.refresh()


def check_connection_type(browser: Browser, kind: ConnectionType, *, emulator_url: str, api_key: str) -> None:
    """Steps 1-5 of the module's docstring for one connection type; screenshots ``<type>-NN-*.png``."""
    add_connection(browser, kind, conn_id=kind.conn_id, host=emulator_url, key=api_key, first=True)
    stored = saved_connection(browser, kind.conn_id)
    if stored.get("conn_type") != kind.conn_type or stored.get("host") != emulator_url:
        raise SystemExit(f"ui-check: the saved connection is not what was typed: {stored}")
    if json.loads(stored.get("extra") or "{}").get("timeout") not in (int(TIMEOUT), TIMEOUT):
        raise SystemExit(f"ui-check: the timeout extra field was not saved: {stored.get('extra')!r}")
    log(f"saved: {kind.conn_id} ({kind.conn_type}, {emulator_url}, extra {stored.get('extra')})")
    browser.screenshot(f"{kind.conn_type}-04-saved-list")

    test_connection(browser, kind.conn_id)
    message = browser.toast("success", "Test Connection Successful")
    if not kind.success_pattern(emulator_url).search(message):
        raise SystemExit(
            f"ui-check: the {kind.conn_type} test succeeded with an unexpected message: {message!r}"
        )
    log(f"Test: {' / '.join(message.splitlines())}")
    browser.screenshot(f"{kind.conn_type}-05-test-success")
    browser.close_toasts()

    add_connection(
        browser, kind, conn_id=kind.wrong_key_conn_id, host=emulator_url, key="not-the-key", first=False
    )
    test_connection(browser, kind.wrong_key_conn_id)
    message = browser.toast("error", "Test Connection Failed")
    if "401" not in message:
        raise SystemExit(f"ui-check: a wrong {kind.conn_type} key failed without the API's 401: {message!r}")
    log(f"Test with a wrong key: {' / '.join(message.splitlines())}")
    browser.screenshot(f"{kind.conn_type}-06-test-wrong-key")
    browser.close_toasts()
    delete_connections(browser, kind.conn_id, kind.wrong_key_conn_id)


def run_check(work: Path, shots: Path) -> None:
    timings: dict[str, float] = {}
    processes = Processes()
    browser: Browser | None = None
    home = work / "airflow-home"
    (home / "dags").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
    )
    api_key = f"ui-check-{secrets.token_hex(8)}"
    try:
        started = time.monotonic()
        log(f"airflow db migrate (AIRFLOW_HOME={home})")
        migrate_log = work / "db-migrate.log"
        with migrate_log.open("wb") as out:
            migrated = subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if migrated.returncode != 0:
            sys.stdout.write(migrate_log.read_text(errors="replace")[-4000:])
            raise SystemExit("ui-check: airflow db migrate failed")
        timings["db migrate"] = time.monotonic() - started

        started = time.monotonic()
        port_file = work / "emulator.port"
        emulator_log = work / "emulator.log"
        emulator = processes.start(
            "the Stable Audio emulator",
            [
                sys.executable,
                "-m",
                "airflow_provider_stableaudio.emulator",
                "--port",
                "0",
                "--port-file",
                str(port_file),
                "--api-key",
                api_key,
            ],
            env=env,
            log_file=emulator_log,
        )
        wait_for(
            "the emulator",
            lambda: port_file.read_text().strip(),
            timeout=30,
            proc=emulator,
            log_file=emulator_log,
        )
        emulator_url = f"http://127.0.0.1:{int(port_file.read_text())}"

        api_port = free_port()
        api_base = f"http://127.0.0.1:{api_port}"
        api_log = work / "api-server.log"
        api_server = processes.start(
            "airflow api-server",
            [
                sys.executable,
                __file__,
                "--serve-api-server",
                "-H",
                "127.0.0.1",
                "-p",
                str(api_port),
                "-w",
                "1",
            ],
            env=env,
            log_file=api_log,
        )
        wait_for(
            "airflow api-server",
            lambda: api_server_healthy(api_base),
            timeout=120,
            proc=api_server,
            log_file=api_log,
        )
        timings["servers up"] = time.monotonic() - started
        log(f"airflow api-server on {api_base}, emulator on {emulator_url}")
        if "applied apache/airflow#73298" in api_log.read_text(errors="replace"):
            log("this Airflow fails the Test of a connection without a port (apache/airflow#73298): fixed")

        started = time.monotonic()
        browser = Browser(work / "chromium-profile", shots, check=CHECK)
        browser.driver.get(f"{api_base}/")
        for kind in CONNECTION_TYPES:
            check_connection_type(browser, kind, emulator_url=emulator_url, api_key=api_key)
        timings["browser"] = time.monotonic() - started
    finally:
        if browser is not None:
            browser.quit()
        processes.stop_all()
    log("timings: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings.items()))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-api-server":
        serve_api_server(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(ROOT / "build" / "ui-check"), help="folder for the screenshots")
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME and logs")
    args = parser.parse_args()
    require_chromium(CHECK)
    shots = Path(args.out).resolve()
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    work = Path(tempfile.mkdtemp(prefix="stableaudio-ui-check-"))
    started = time.monotonic()
    try:
        run_check(work, shots)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log(f"ui-check passed in {time.monotonic() - started:.1f}s; screenshots in {shots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
