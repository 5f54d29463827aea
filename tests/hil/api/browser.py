"""A headless Chromium driven by selenium (Debian's ``chromium`` and ``chromium-driver``,
installed by ``scripts/ensure-system-packages.sh``), and a dashboard server to point it at.

Tests that need the browser skip, saying why, when selenium, chromium or chromedriver is
missing (a machine where the packages could not be installed without root).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from hil.api import Settings, create_app
from hil.api.pool import BenchSlot
from hil.api.server import background_server
from tests.conftest import REPO
from tests.hil.api.conftest import BENCH, TOKENS, SlowBench, slow_factory

CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "chromedriver")
#: Where HIL_SCREENSHOTS=1 writes the pages' screenshots (linked from docs/dashboard.md).
SCREENSHOTS = REPO / "docs" / "screenshots"
#: Seconds an explicit wait may take before the test fails (a bound, not a measurement).
WAIT_S = 60


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium() -> tuple[str, str]:
    """The paths of chromium and chromedriver; skips the test when one is missing."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install '.[test]')")
    browser, driver = _find(CHROMIUM), _find(CHROMEDRIVER)
    if browser is None or driver is None:
        pytest.skip(
            "chromium and chromium-driver are not installed: run "
            "`sudo apt-get install chromium chromium-driver` (scripts/ensure-system-packages.sh "
            "installs them as root)"
        )
    return browser, driver


def chromium_session() -> Iterator[Any]:
    """A headless Chromium at 1280x800 with a fresh profile (for a fixture to yield from);
    it keeps the pages' console messages for :func:`console_errors`."""
    binary, driver_path = chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="hil-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-features=Translate,OptimizationHints,MediaRouter",
        "--window-size=1280,800",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        viewport(driver, 1280, 800)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class DashboardServer:
    """A real uvicorn serving the API and the dashboard, on loopback."""

    url: str
    app: FastAPI
    benches: list[SlowBench] = field(default_factory=list)

    @property
    def slot(self) -> BenchSlot:
        return self.app.state.services.pool.get(BENCH)

    def slow_down(self, delay: float) -> None:
        """Seconds every settle of the bench takes from now on (0: full speed)."""
        for bench in self.benches:
            bench.delay = delay


@contextmanager
def serve_dashboard(settings: Settings) -> Iterator[DashboardServer]:
    """Serve ``settings`` with a bench whose settles can be slowed down (a run that trains
    for as long as a test watches it)."""
    made: list[SlowBench] = []
    app = create_app(settings, bench_factory=slow_factory(0.0, made))
    with background_server(app) as url:
        yield DashboardServer(url, app, made)


#: Console messages that are the API's answers, not errors of the pages (a 401 before the
#: token is entered, a 409 while a run trains, the 422 a test asks for).
EXPECTED = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")


def console_errors(driver: Any) -> list[str]:
    """The page errors logged since the last call (uncaught exceptions, failed scripts)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not EXPECTED.search(entry["message"])
    ]


def wait(driver: Any, condition: Callable[[Any], Any], timeout: float = WAIT_S) -> Any:
    """selenium's explicit wait for ``condition(driver)`` to be truthy; its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def visit(driver: Any, url: str, token: str | None = TOKENS["admin"].secret) -> None:
    """Open ``url``; sign in through the page's dialog when the API asks for a token (the
    token then stays in the tab's session storage for that server)."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    if token is None or driver.execute_script("return sessionStorage.getItem('hil.token')"):
        return
    wait(driver, lambda d: d.execute_script("return document.getElementById('login').open"))
    field_ = driver.find_element(By.CSS_SELECTOR, "#login input[name=token]")
    field_.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait(driver, lambda d: not d.execute_script("return document.getElementById('login').open"))


def viewport(driver: Any, width: int, height: int) -> None:
    """Make the page's viewport ``width`` x ``height`` CSS pixels (a laptop: 1280x800; a
    tablet held upright: 800x1280), as a window of that inner size would."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def screenshot(driver: Any, name: str, full_page: bool = False) -> Path | None:
    """With ``HIL_SCREENSHOTS=1``, save the page as ``docs/screenshots/NAME.png`` (the whole
    page with ``full_page``, else the 1280x800 window); otherwise nothing."""
    if os.environ.get("HIL_SCREENSHOTS") != "1":
        return None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    width, height = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    if full_page:  # a viewport as tall as the page: the sticky header stays on top
        full = driver.execute_script("return document.documentElement.scrollHeight")
        viewport(driver, width, full)
    try:
        driver.save_screenshot(str(path))
    finally:
        viewport(driver, width, height)
    return path
