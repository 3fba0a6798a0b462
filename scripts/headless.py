"""Headless Chromium for the browser checks (`make ui-check`, `make up-check`).

Debian's ``chromium`` and ``chromedriver`` driven with Selenium (the ``uicheck`` extra); Selenium
Manager is kept offline, so nothing is downloaded. Every wait has a bound and a name: a check that
times out exits with ``<check>: timed out waiting for <what>`` and leaves ``failure.png`` beside the
other screenshots.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]
WAIT = 30  # seconds for any one thing to appear in the page


def log(message: str) -> None:
    print(f"==> {message}", flush=True)


def require_chromium(check: str) -> None:
    """Exit with what to install when Chromium or its driver is missing."""
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"{check}: {tool} is missing: apt-get install chromium chromium-driver")


class Browser:
    """A headless Chromium session with the few helpers the checks need."""

    def __init__(self, profile: Path, shots: Path, *, check: str) -> None:
        os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never download a driver
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.shots = shots
        self.check = check

    def quit(self) -> None:
        service = self.driver.service
        with contextlib.suppress(Exception):
            self.driver.quit()
        process = getattr(service, "process", None)
        if process is not None and process.poll() is None:
            process.kill()

    def fail(self, message: str) -> SystemExit:
        """A screenshot of the page as it is (``failure.png``) and the exit to raise."""
        with contextlib.suppress(Exception):
            self.screenshot("failure")
        return SystemExit(f"{self.check}: {message}")

    def wait(self, condition: Any, what: str, *, timeout: float = WAIT) -> Any:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout).until(condition)
        except TimeoutException:
            raise self.fail(f"timed out after {timeout:g}s waiting for {what}") from None

    def element(self, xpath: str, what: str, *, clickable: bool = False, timeout: float = WAIT) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        locator = (By.XPATH, xpath)
        condition = (
            ec.element_to_be_clickable(locator) if clickable else ec.visibility_of_element_located(locator)
        )
        return self.wait(condition, what, timeout=timeout)

    def shows(self, xpath: str, *, timeout: float) -> bool:
        """Whether an element at ``xpath`` becomes visible within ``timeout`` (no failure if not)."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            WebDriverWait(self.driver, timeout).until(ec.visibility_of_element_located((By.XPATH, xpath)))
        except TimeoutException:
            return False
        return True

    def _act(self, xpath: str, what: str, action: Any) -> None:
        """``action(element)`` on the element at ``xpath`` once it is clickable, found afresh on each try:
        React re-renders lists while they load, and an element found a moment ago may be gone."""
        from selenium.common.exceptions import (
            ElementClickInterceptedException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        def attempt(driver: Any) -> bool:
            try:
                element = ec.element_to_be_clickable((By.XPATH, xpath))(driver)
                if not element:
                    return False
                action(element)
            except (StaleElementReferenceException, ElementClickInterceptedException):
                return False
            return True

        self.wait(attempt, what)

    def click(self, xpath: str, what: str) -> None:
        self._act(xpath, what, lambda element: element.click())

    def hover(self, xpath: str, what: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        self._act(xpath, what, lambda element: ActionChains(self.driver).move_to_element(element).perform())

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        log(f"screenshot {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return path

    def toast(self, kind: str, title: str) -> str:
        """The text of the newest toast of ``kind`` with ``title``, once it appears."""
        xpath = (
            f"//*[@data-scope='toast' and @data-part='root' and @data-type='{kind}']"
            f"[.//*[@data-part='title'][normalize-space()='{title}']]"
        )
        text: str = self.element(xpath, f"a {kind} toast {title!r}").text
        return text

    def close_toasts(self) -> None:
        for button in self.driver.find_elements(
            "xpath", "//*[@data-scope='toast' and @data-part='close-trigger']"
        ):
            with contextlib.suppress(Exception):
                button.click()
        self.wait(
            lambda d: not d.find_elements("xpath", "//*[@data-scope='toast' and @data-part='root']"),
            "the toasts to close",
        )
