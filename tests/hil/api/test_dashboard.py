"""The lab dashboard: its pages and the endpoints it needs (``GET /configs``,
``GET /runs/{id}/config``, the devices' endurance), then the pages in a real headless
Chromium against a real server (see ``browser.py``).

With ``HIL_SCREENSHOTS=1`` the browser tests also save the screenshots of
``docs/dashboard.md`` into ``docs/screenshots/``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from hil.api import create_app
from hil.api.operations import device_endurance
from hil.api.routers.dashboard import STATIC, shipped_files
from hil.config.loading import shipped_configs
from tests.conftest import REPO
from tests.hil.api.browser import (
    DashboardServer,
    chromium_session,
    console_errors,
    screenshot,
    serve_dashboard,
    viewport,
    visit,
    wait,
)
from tests.hil.api.conftest import (
    BENCH,
    assert_same_state,
    auth,
    make_settings,
    wait_for_end,
    write_config,
)


# --- the pages and the endpoints, without a browser ------------------------------------------
def test_the_pages_are_served_without_a_token_and_load_nothing_from_elsewhere(client):
    answer = client.get("/", follow_redirects=False)
    assert answer.status_code == 307 and answer.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "EMERGENCY STOP" in page.text
    for name in shipped_files():
        text = client.get(f"/ui/{name}").text
        assert not re.search(r"(src|href)=\"(https?:)?//", text), name
        assert not re.search(r"from \"(https?:)?//", text), name
        # every file a page or a script names is shipped and served
        for ref in re.findall(r"(?:src|href)=\"([\w.-]+\.(?:js|css|html))", text):
            assert client.get(f"/ui/{ref}").status_code == 200, (name, ref)
        for ref in re.findall(r"from \"\./([\w.-]+\.js)\"", text):
            assert client.get(f"/ui/{ref}").status_code == 200, (name, ref)
    assert {"index.html", "run.html", "bench.html"} <= set(shipped_files())


def test_only_shipped_files_are_served(client):
    for name in ("nope.html", "..%2Fapp.py", "%2E%2E/routers/dashboard.py", "../schemas.py"):
        assert client.get(f"/ui/{name}").status_code == 404, name
    assert not any(p.suffix == ".py" for p in STATIC.iterdir())


def test_the_pages_call_only_documented_endpoints():
    """Nothing the dashboard shows needs an endpoint a script could not call: every API path
    the scripts name is in docs/api.md's table of endpoints."""
    docs = (REPO / "docs" / "api.md").read_text()
    calls = set()
    for script in STATIC.glob("*.js"):
        source = script.read_text()
        prefix = re.search(r"const path = `(/\w+)/", source)
        for literal in re.findall(r"[`\"]((?:/[a-z]|\$\{path\}/)[^`\"?]*)", source):
            if prefix:
                literal = literal.replace("${path}", prefix.group(1) + "/{id}")
            calls.add(re.sub(r"\$\{[^}]+\}", "{id}", literal))
    assert {"/runs", "/configs", "/benches/{id}/safe-state", "/runs/{id}/events"} <= calls
    for call in calls:
        assert re.search(f"`(GET|POST|DELETE) {re.escape(call)}[`?]", docs), call


def test_configs_lists_the_shipped_configs_and_the_benches(client):
    answer = client.get("/configs", headers=auth("read"))
    assert answer.status_code == 200
    assert answer.json() == {"shipped": shipped_configs(), "benches": [BENCH]}
    assert client.get("/configs").status_code == 401
    assert client.get("/configs", headers=auth("none")).status_code == 403


def test_a_runs_config_and_its_endurance(tmp_path):
    path = write_config(tmp_path / "worn.yaml", epochs=1)
    config = yaml.safe_load(path.read_text())
    config["bench"]["device"] = {"overrides": {"endurance": 40}}
    path.write_text(yaml.safe_dump(config))
    with TestClient(create_app(make_settings(tmp_path, (path,)))) as client:
        answer = client.post("/runs", headers=auth(), json={"bench": BENCH, "config": BENCH})
        assert answer.status_code == 201, answer.text
        run = answer.json()["id"]
        assert wait_for_end(client, run)["status"] == "finished"
        stored = client.get(f"/runs/{run}/config", headers=auth("read"))
        assert stored.status_code == 200
        assert stored.json()["bench"]["device"]["overrides"] == {"endurance": 40}
        assert stored.json()["training"]["epochs"] == 1
        counts = client.get(f"/runs/{run}/pulse-counts", headers=auth("read")).json()
        assert counts["endurance"] == 40
        assert max(counts["counts"]) == 40  # worn out: the bench refused pulses beyond it
        assert client.get("/runs/nope/config", headers=auth()).status_code == 404


def test_without_an_endurance_the_pulse_counts_say_none(client):
    answer = client.post("/runs", headers=auth(), json={"bench": BENCH, "config": BENCH})
    run = answer.json()["id"]
    wait_for_end(client, run)
    assert client.get(f"/runs/{run}/pulse-counts", headers=auth()).json()["endurance"] is None


def test_device_endurance_of_every_kind_of_bench():
    simulated = {"bench": {"kind": "simulated", "device": {"overrides": {"endurance": 7}}}}
    emulated = {"bench": {"kind": "lab", "emulate": {"physics": simulated["bench"]}}}
    assert device_endurance(simulated) == 7
    assert device_endurance(emulated) == 7
    assert device_endurance({"bench": {"kind": "simulated"}}) is None
    assert device_endurance({"bench": {"kind": "lab", "instruments": {}}}) is None
    assert device_endurance({"bench": {"device": {"overrides": {"endurance": True}}}}) is None


# --- in a browser -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    yield from chromium_session()


@pytest.fixture
def browser(chromium: Any) -> Iterator[Any]:
    """The module's browser; the test fails on any error a page logged meanwhile."""
    console_errors(chromium)
    yield chromium
    assert console_errors(chromium) == []


@pytest.fixture
def server(browser: Any, tmp_path: Path, bench_config: Path) -> Iterator[DashboardServer]:
    with serve_dashboard(make_settings(tmp_path, (bench_config,))) as s:
        yield s
        browser.get("about:blank")  # the pages stop polling before the server goes


def api(server: DashboardServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {**auth(), **kwargs.pop("headers", {})}
    return httpx.request(method, server.url + path, headers=headers, timeout=30, **kwargs)


def finished_run(server: DashboardServer, epochs: int = 1) -> str:
    answer = api(server, "POST", "/runs", json={"bench": BENCH, "config": BENCH, "epochs": epochs})
    assert answer.status_code == 201, answer.text
    run = answer.json()["id"]
    wait_run(server, run, lambda r: r["status"] == "finished" and not r["active"])
    return run


def wait_run(server: DashboardServer, run: str, done) -> dict:
    from selenium.webdriver.support.ui import WebDriverWait

    def check(_: Any) -> dict | None:
        record = api(server, "GET", f"/runs/{run}").json()
        return record if done(record) else None

    return WebDriverWait(None, 60, poll_frequency=0.05).until(check)


def js(driver: Any, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def status_of(driver: Any, selector: str) -> str | None:
    return js(
        driver,
        "const b = document.querySelector(arguments[0] + ' .badge'); return b && b.dataset.status",
        selector,
    )


def points(driver: Any, chart: str = "accuracy-chart", series: str = "train") -> int:
    return js(
        driver,
        "const g = document.querySelector(`#${arguments[0]} [data-series=${arguments[1]}]`);"
        "return g ? Number(g.dataset.points) : 0",
        chart,
        series,
    )


def test_the_runs_page_lists_a_finished_run(browser, server):
    run = finished_run(server)
    visit(browser, server.url + "/")
    row = f"tr[data-run='{run}']"
    wait(browser, lambda d: status_of(d, row) == "finished")
    best = wait(
        browser,
        lambda d: (
            (t := js(d, f'return document.querySelector("{row}").cells[4].textContent'))
            and t.endswith("%")
            and t
        ),
    )
    metrics = api(server, "GET", f"/runs/{run}/metrics").json()
    assert best == f"{100 * max(m['test_accuracy'] for m in metrics):.1f} %"
    assert js(browser, f'return document.querySelector("{row}").cells[3].textContent') == "1 / 1"
    screenshot(browser, "runs")


def test_a_run_started_from_the_page_trains_while_the_page_shows_its_curves(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    server.slow_down(0.02)  # about a second an epoch: the run trains while the page watches
    visit(browser, server.url + "/ui/")
    wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#start-form select[name=config] option"),
    )
    form = browser.find_element(By.ID, "start-form")
    Select(form.find_element(By.NAME, "bench")).select_by_value(BENCH)
    Select(form.find_element(By.NAME, "config")).select_by_value(BENCH)
    form.find_element(By.NAME, "epochs").send_keys("50")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, lambda d: "run.html?id=" in d.current_url)
    run = browser.current_url.split("id=")[1]
    wait(browser, lambda d: status_of(d, "#run-status") == "running")
    seen = wait(browser, lambda d: points(d))
    wait(browser, lambda d: points(d) > seen)  # the curve gains points, no reload
    # a dropped connection: the stream reconnects with Last-Event-ID, loses and repeats nothing
    js(browser, "window.hilRun.stream.drop()")
    before = points(browser)
    wait(browser, lambda d: js(d, "return window.hilRun.stream.reconnects") >= 1)
    wait(browser, lambda d: points(d) > before)
    drawn, counted = js(
        browser,
        "const g = document.querySelector('#accuracy-chart [data-series=train]');"
        "return [g.querySelector('polyline').getAttribute('points').split(' ').length,"
        " Number(g.dataset.drawn)]",
    )
    assert drawn == counted
    assert "step" in browser.find_element(By.ID, "progress-text").text
    assert wait(browser, lambda d: "steps/s" in d.find_element(By.ID, "progress-text").text)
    wait(
        browser,
        lambda d: js(d, "return document.querySelectorAll('[data-kind=conductance]').length"),
    )
    screenshot(browser, "run", full_page=True)
    viewport(browser, 800, 1280)  # a tablet held upright
    screenshot(browser, "run-tablet")
    viewport(browser, 1280, 800)
    browser.find_element(By.ID, "stop").click()
    wait(browser, lambda d: status_of(d, "#run-status") == "stopped")
    record = wait_run(server, run, lambda r: not r["active"])
    assert record["status"] == "stopped"
    # the events the page drew are the run's steps, once each
    steps = [
        line
        for line in api(server, "GET", f"/runs/{run}/events").text.splitlines()
        if line == "event: step"
    ]
    wait(browser, lambda d: points(d) == len(steps))


def test_the_heatmap_has_one_cell_per_device_of_each_tile(browser, server):
    from selenium.webdriver.common.by import By

    run = finished_run(server)
    tiles = api(server, "GET", f"/benches/{BENCH}").json()["topology"]["tiles"]
    visit(browser, f"{server.url}/ui/run.html?id={run}")
    for kind in ("conductance", "pulses"):
        for tile in tiles:
            selector = f"svg[data-kind={kind}][data-tile='{tile['index']}']"
            cells = wait(
                browser,
                lambda d, s=selector: js(
                    d, "return document.querySelectorAll(arguments[0] + ' .cells rect').length", s
                ),
            )
            assert cells == tile["rows"] * tile["cols"]
            svg = browser.find_element(By.CSS_SELECTOR, selector)
            assert (int(svg.get_attribute("data-rows")), int(svg.get_attribute("data-cols"))) == (
                tile["rows"],
                tile["cols"],
            )
    # coloured from the conductances read through the API: viridis, log scale
    g = api(server, "GET", f"/runs/{run}/conductances").json()["tiles"][0]["conductances"]
    colours = js(
        browser,
        "return [...document.querySelectorAll(\"svg[data-kind=conductance][data-tile='0'] "
        ".cells rect\")].slice(0, 3).map(r => r.getAttribute('fill'))",
    )
    viridis = browser.execute_async_script(
        "const done = arguments[0]; import('./charts.js').then(m => done(m.VIRIDIS))"
    )
    assert len(viridis) == 256 and set(colours) <= set(viridis)
    assert len(set(colours)) > 1 or len(set(g[0][:3])) == 1
    toggle = browser.find_element(By.XPATH, "//button[text()='Show resistance']")
    toggle.send_keys(" ")  # keyboard: space presses the focused button
    wait(browser, lambda d: toggle.get_attribute("aria-pressed") == "true")
    flipped = js(
        browser,
        "return [...document.querySelectorAll(\"svg[data-kind=conductance][data-tile='0'] "
        ".cells rect\")].slice(0, 3).map(r => r.getAttribute('fill'))",
    )
    assert flipped != colours or len(set(colours)) == 1
    bars = js(
        browser,
        "return [...document.querySelectorAll('.histogram .bar')].map(b => +b.dataset.count)",
    )
    assert sum(bars) == sum(t["rows"] * t["cols"] for t in tiles)


def test_the_emergency_stop_makes_the_bench_safe_while_a_run_trains(browser, server):
    from selenium.webdriver.common.by import By

    server.slow_down(0.02)
    answer = api(server, "POST", "/runs", json={"bench": BENCH, "config": BENCH, "epochs": 50})
    run = answer.json()["id"]
    visit(browser, f"{server.url}/ui/run.html?id={run}")
    wait(browser, lambda d: status_of(d, "#run-status") == "running" and points(d) > 0)
    button = browser.find_element(By.ID, "estop")
    assert button.text == "EMERGENCY STOP"
    button.click()
    result = wait(
        browser,
        lambda d: (
            (e := d.find_element(By.ID, "estop-result")).get_attribute("class").endswith("done")
            and e.text
        ),
    )
    assert f"run {run} told to stop" in result
    wait(browser, lambda d: status_of(d, "#run-status") == "stopped")
    bench = api(server, "GET", f"/benches/{BENCH}").json()
    assert bench["status"] == "safe" and bench["estop"] is True
    assert bench["estop_by"] == "lab-admin"
    record = wait_run(server, run, lambda r: not r["active"])
    assert record["status"] == "stopped"
    assert server.benches[0].safe_states  # the bench itself was put in its safe state
    screenshot(browser, "estop")


def test_a_settle_outside_the_limits_shows_the_apis_message_and_changes_nothing(
    browser,
    server,
):
    from selenium.webdriver.common.by import By

    visit(browser, f"{server.url}/ui/bench.html?id={BENCH}")
    wait(browser, lambda d: status_of(d, "#bench-status") == "safe")
    lease_form = browser.find_element(By.ID, "lease-form")
    lease_form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, lambda d: "Leased to dashboard" in d.find_element(By.ID, "lease-out").text)
    wait(browser, lambda d: "dashboard, expires" in d.find_element(By.ID, "bench-facts").text)
    assert "±12 V" in browser.find_element(By.ID, "limits").text
    assert "±12 V" in browser.find_element(By.ID, "inputs-hint").text
    before = server.slot.guard.state_dict()
    form = browser.find_element(By.ID, "settle-form")
    feature = form.find_element(By.NAME, "feature")
    feature.clear()
    feature.send_keys("50")  # the bench allows 12 V
    browser.find_element(By.ID, "fill-inputs").click()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    message = wait(
        browser, lambda d: (e := d.find_element(By.ID, "settle-error")).is_displayed() and e.text
    )
    # the API's own answer to the same request
    lease = js(browser, f"return sessionStorage.getItem('hil.lease.{BENCH}')")
    inputs = js(browser, "return JSON.parse(document.querySelector('#settle-form textarea').value)")
    answer = api(
        server,
        "POST",
        f"/benches/{BENCH}/settle",
        headers={"X-Lease-Token": lease},
        json={"inputs": inputs},
    )
    assert answer.status_code == 422
    assert message == answer.json()["detail"]
    assert browser.find_element(By.ID, "settle-error").get_attribute("data-field") == "inputs"
    assert_same_state(before, server.slot.guard.state_dict())
    assert api(server, "GET", f"/benches/{BENCH}").json()["status"] == "safe"
    screenshot(browser, "bench", full_page=True)
    # within the limits, the same form settles and shows the outputs
    feature.clear()
    feature.send_keys("1")
    browser.find_element(By.ID, "fill-inputs").click()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#settle-out table tbody tr"))
    assert not browser.find_element(By.ID, "settle-error").is_displayed()


def test_without_tokens_the_page_never_asks_for_one(browser, tmp_path, bench_config):
    from selenium.webdriver.common.by import By

    settings = make_settings(tmp_path, (bench_config,))
    settings = dataclasses.replace(settings, tokens=(), anonymous=True)
    with serve_dashboard(settings) as s:
        visit(browser, s.url + "/", token=None)
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#runs-table td.empty"))
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#bench-links a"))
        assert not js(browser, "return document.getElementById('login').open")
        assert not js(browser, "return sessionStorage.getItem('hil.token')")
        browser.get("about:blank")


def test_the_pages_fit_a_narrow_screen_and_reach_the_stop_by_keyboard(browser, server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    finished_run(server)
    viewport(browser, 800, 1280)
    try:
        run = api(server, "GET", "/runs").json()["runs"][0]["id"]
        for page in ("/ui/", f"/ui/run.html?id={run}", f"/ui/bench.html?id={BENCH}"):
            visit(browser, server.url + page)
            wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".badge"))
            # nothing wider than the window but the scrolling tables
            width = js(browser, "return document.documentElement.scrollWidth")
            assert width <= js(browser, "return window.innerWidth")
            # the skip link comes first; from the header, a few tabs reach the emergency stop
            first = "return document.querySelector('a[href], button, input, select, textarea')"
            assert js(browser, first + ".className") == "skip"
            ActionChains(browser).click(browser.find_element(By.CLASS_NAME, "brand")).perform()
            focused = []
            for _ in range(6):
                ActionChains(browser).send_keys(Keys.TAB).perform()
                focused.append(js(browser, "return document.activeElement.id"))
                if focused[-1] == "estop":
                    break
            assert focused[-1] == "estop", focused
    finally:
        viewport(browser, 1280, 800)
