"""The lab dashboard: its pages and the endpoints it needs (``GET /configs``,
``GET /runs/{id}/config``, the devices' endurance), then the pages in a real headless
Chromium against a real server (see ``browser.py``).

With ``HIL_SCREENSHOTS=1`` the browser tests also save the screenshots of
``docs/dashboard.md`` into ``docs/screenshots/``.
"""

from __future__ import annotations

import dataclasses
import math
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


# --- the crossbar heatmaps: a canvas of one pixel a device, an SVG of marks over it -----------
#: The colours of the devices (r, c) of a heatmap's canvas, as "#rrggbb", and how many of
#: its pixels are not opaque entries of viridis (arguments[2]).
PIXELS = """
const canvas = document.querySelector(arguments[0] + ' canvas');
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
const hex = (i) => '#' + [0, 1, 2].map((k) => data[i + k].toString(16).padStart(2, '0')).join('');
const viridis = new Set(arguments[2]);
let off = 0;
for (let i = 0; i < data.length; i += 4) if (data[i + 3] !== 255 || !viridis.has(hex(i))) off += 1;
return [arguments[1].map(([r, c]) => hex(4 * (r * canvas.width + c))), off];
"""
#: Whether the mark of a kind (worn, stuck) of a heatmap covers the centre of each device
#: (r, c): the cross's stroke, the ring's disc.
MARKED = """
const path = document.querySelector(`${arguments[0]} .mark.${arguments[1]}`);
return arguments[2].map(([r, c]) => {
  const p = new DOMPoint(c + 0.5, r + 0.5);
  return path.hasAttribute('d') && (arguments[1] === 'worn' ? path.isPointInStroke(p)
    : path.isPointInFill(p));
});
"""
SI = {"G": 1e9, "M": 1e6, "k": 1e3, "": 1.0, "m": 1e-3, "µ": 1e-6, "n": 1e-9, "p": 1e-12}


def heatmap(kind: str, tile: int) -> str:
    return f".heatmap[data-kind={kind}][data-tile='{tile}']"


def page_viridis(driver: Any) -> list[str]:
    colours = driver.execute_async_script(
        "const done = arguments[0]; import('./charts.js').then(m => done(m.VIRIDIS))"
    )
    assert len(colours) == 256
    return colours


def colours_of(viridis: list[str], t: float) -> set[str]:
    """The viridis colour of t in [0, 1] as the page picks it (Math.round of 255 t); both
    neighbours when t is a rounding error away from half way between two."""
    x = min(1.0, max(0.0, t)) * 255
    near = {math.floor(x + 0.5)}
    if abs(x - math.floor(x) - 0.5) < 1e-6:
        near |= {math.floor(x), math.ceil(x)}
    return {viridis[k] for k in near}


def quantity(readout: str, name: str, unit: str) -> float:
    """The value of ``NAME = 2.97 µS`` in a readout."""
    found = re.search(rf"\b{name} = (-?[\d.]+(?:e[+-]?\d+)?) ([GMkmµnp]?){unit}", readout)
    assert found, readout
    return float(found.group(1)) * SI[found.group(2)]


def marks_drawn(driver: Any, selector: str, kind: str = "worn") -> int:
    """How many marks of a kind a heatmap's path draws."""
    return int(
        js(
            driver,
            "return document.querySelector(`${arguments[0]} .mark.${arguments[1]}`).dataset.count",
            selector,
            kind,
        )
    )


def park_pointer(driver: Any) -> None:
    """Rest the mouse on the page's (sticky) header, off every heatmap: a heatmap that
    scrolls under a resting pointer would read out the device there."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    ActionChains(driver).move_to_element(driver.find_element(By.CLASS_NAME, "brand")).perform()


def readout_of(driver: Any, starting: str) -> str:
    """The crossbar's readout once it starts with ``starting``."""
    from selenium.webdriver.common.by import By

    return wait(
        driver,
        lambda d: (
            (t := d.find_element(By.CSS_SELECTOR, ".crossbar .readout").text).startswith(starting)
            and t
        ),
    )


@pytest.fixture
def worn_server(browser: Any, tmp_path: Path) -> Iterator[DashboardServer]:
    """A dashboard whose bench's devices wear out after 200 pulses: a run of one epoch wears
    out a few of them (some 2 % of the devices), so that the heatmaps carry marks."""
    path = write_config(tmp_path / "worn.yaml", epochs=1)
    config = yaml.safe_load(path.read_text())
    config["bench"]["device"] = {"overrides": {"endurance": 200}}
    path.write_text(yaml.safe_dump(config))
    with serve_dashboard(make_settings(tmp_path, (path,))) as s:
        yield s
        browser.get("about:blank")


def test_the_heatmap_has_one_cell_per_device_of_each_tile(browser, worn_server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    server = worn_server
    run = finished_run(server)
    tiles = api(server, "GET", f"/benches/{BENCH}").json()["topology"]["tiles"]
    g = {
        t["tile"]: t["conductances"]
        for t in api(server, "GET", f"/runs/{run}/conductances").json()["tiles"]
    }
    pulses = api(server, "GET", f"/runs/{run}/pulse-counts").json()
    counts, endurance = pulses["counts"], pulses["endurance"]
    network = api(server, "GET", f"/runs/{run}/config").json()["network"]
    lo, hi = math.log10(network["g_min"]), math.log10(network["g_max"])
    peak = math.log10(1 + max(max(abs(n) for n in counts), 1))
    visit(browser, f"{server.url}/ui/run.html?id={run}")
    viridis = page_viridis(browser)
    wait(browser, lambda d: js(d, "return document.querySelectorAll('.heatmap canvas').length"))
    worn_seen = 0
    for kind in ("conductance", "pulses"):
        for tile in tiles:
            index, rows, cols, first = (
                tile["index"],
                tile["rows"],
                tile["cols"],
                tile["first_device"],
            )
            selector = heatmap(kind, index)
            # one pixel a device: the canvas is the tile's size, the element says so too
            size = js(
                browser,
                "const c = document.querySelector(arguments[0] + ' canvas');"
                "return [c.height, c.width]",
                selector,
            )
            assert size == [rows, cols]
            element = browser.find_element(By.CSS_SELECTOR, selector)
            assert (
                int(element.get_attribute("data-rows")),
                int(element.get_attribute("data-cols")),
            ) == (rows, cols)
            assert (
                element.get_attribute("role") == "img" and element.get_attribute("tabindex") == "0"
            )
            assert element.get_attribute("aria-label").startswith(f"Tile {index} ")
            # coloured from the API's values: viridis of log conductance between g_min and
            # g_max, of log(1 + pulses) up to the most pulses of any device
            cells = [(0, 0), (0, 1), (0, 2), (rows // 2, cols // 3), (rows - 1, cols - 1)]
            colours, off = js(browser, PIXELS, selector, cells, viridis)
            assert off == 0  # every pixel is opaque and a colour of viridis
            for (r, c), colour in zip(cells, colours, strict=True):
                if kind == "conductance":
                    t = (math.log10(g[index][r][c]) - lo) / (hi - lo)
                else:
                    t = math.log10(1 + abs(counts[first + r * cols + c])) / peak
                assert colour in colours_of(viridis, t), (kind, index, r, c)
            # the worn-out devices, and they only, carry a cross
            worn = [
                (r, c)
                for r in range(rows)
                for c in range(cols)
                if abs(counts[first + r * cols + c]) >= endurance
            ]
            assert marks_drawn(browser, selector) == len(worn)
            marked = set(worn)
            near = [(i, j) for i in range(-3, 4) for j in range(-3, 4)]
            far = [
                (r, c)
                for r in range(rows)
                for c in range(cols)
                if not any((r + i, c + j) in marked for i, j in near)
            ][:5]
            assert far
            assert all(js(browser, MARKED, selector, "worn", worn[:20]))
            assert not any(js(browser, MARKED, selector, "worn", far))
            assert not any(js(browser, MARKED, selector, "stuck", worn[:20] + far))  # one snapshot
            worn_seen += len(worn)
    assert worn_seen > 0  # the run wore devices out: the marks above were tested
    # the keyboard moves the cursor: the readout names the device and its values
    park_pointer(browser)
    tile = tiles[1]
    element = browser.find_element(By.CSS_SELECTOR, heatmap("pulses", tile["index"]))
    element.send_keys(Keys.ARROW_DOWN * 3 + Keys.ARROW_RIGHT * 5)
    device = tile["first_device"] + 3 * tile["cols"] + 5
    text = readout_of(browser, f"Tile {tile['index']}, row 3, column 5: device {device} ·")
    assert quantity(text, "G", "S") == pytest.approx(g[tile["index"]][3][5], rel=5e-3)
    assert f"· {counts[device]} pulses" in text
    assert ("worn out" in text) == (abs(counts[device]) >= endurance)
    assert js(browser, "return document.activeElement.dataset.kind") == "pulses"
    # and so does the pointer: 2 px into the cell under it
    tile = tiles[0]
    selector = heatmap("conductance", tile["index"])
    canvas = browser.find_element(By.CSS_SELECTOR, selector + " canvas")
    js(browser, "arguments[0].scrollIntoView({block: 'center'})", canvas)
    cell = int(browser.find_element(By.CSS_SELECTOR, selector).get_attribute("data-cell"))
    width, height = js(
        browser,
        "const b = arguments[0].getBoundingClientRect(); return [b.width, b.height]",
        canvas,
    )
    assert (width, height) == (tile["cols"] * cell, tile["rows"] * cell)
    r, c = tile["rows"] // 2 + 1, tile["cols"] // 2 + 2
    dx, dy = c * cell + 2 - width / 2, r * cell + 2 - height / 2  # from the centre
    ActionChains(browser).move_to_element_with_offset(canvas, round(dx), round(dy)).perform()
    text = readout_of(browser, f"Tile 0, row {r}, column {c}: device {r * tile['cols'] + c} ·")
    assert quantity(text, "G", "S") == pytest.approx(g[0][r][c], rel=5e-3)
    assert quantity(text, "R", "Ω") == pytest.approx(1 / g[0][r][c], rel=5e-3)
    # log resistance, at the press of a button: the colours run the other way
    cells = [(0, 0), (0, 1), (r, c)]
    toggle = browser.find_element(By.XPATH, "//button[text()='Show resistance']")
    toggle.send_keys(" ")  # keyboard: space presses the focused button
    wait(browser, lambda d: toggle.get_attribute("aria-pressed") == "true")
    flipped, off = js(browser, PIXELS, selector, cells, viridis)
    assert off == 0
    for (r, c), colour in zip(cells, flipped, strict=True):
        t = (math.log10(1 / g[0][r][c]) + hi) / (hi - lo)  # log10(1/g) between -hi and -lo
        assert colour in colours_of(viridis, t), (r, c)
    bars = js(
        browser,
        "return [...document.querySelectorAll('.histogram .bar')].map(b => +b.dataset.count)",
    )
    assert sum(bars) == sum(t["rows"] * t["cols"] for t in tiles)


def test_the_heatmap_draws_a_pixel_a_device_and_marks_by_shape(browser, server):
    """The Heatmap of charts.js on its own, in the page: colours, the grey of no value,
    marks, the keys and its size rule."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    visit(browser, server.url + "/ui/")
    viridis = page_viridis(browser)
    park_pointer(browser)
    sizes = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        import('./charts.js').then((m) => {
          const box = document.createElement('div');
          box.id = 'test-map';
          document.querySelector('main').prepend(box);
          window.seen = [];
          const map = new m.Heatmap(box, { rows: 3, cols: 4, label: 'Test tile',
            onReadout: (r, c) => window.seen.push([r, c]) });
          window.testMap = map;
          map.element.dataset.kind = 'test';
          map.element.dataset.tile = '0';
          map.setValues([[0, 0.25, 0.5, 1], [NaN, 2, -1, 0.75], [0.1, 0.2, 0.3]], (v) => v);
          map.setMarks([{ r: 0, c: 1, kind: 'worn' }, { r: 2, c: 3, kind: 'stuck' }]);
          // cells of 3 to 8 px for about 320 px wide; tall tiles smaller, to one pixel
          done([[3, 4], [130, 64], [66, 20], [1570, 100], [102, 20], [40, 400]].map(
            ([rows, cols]) => m.cellSize(rows, cols)));
        });
        """
    )
    assert sizes == [8, 5, 8, 1, 7, 3]
    selector = heatmap("test", 0)
    cells = [(r, c) for r in range(3) for c in range(4)]
    colours, off = js(browser, PIXELS, selector, cells, viridis)
    values = [[0, 0.25, 0.5, 1], [None, 2, -1, 0.75], [0.1, 0.2, 0.3, None]]
    for (r, c), colour in zip(cells, colours, strict=True):
        v = values[r][c]
        assert colour in ({"#bdbdbd"} if v is None else colours_of(viridis, v)), (r, c)
    assert off == 2  # the two devices without a value are grey
    assert js(browser, MARKED, selector, "worn", cells) == [cell == (0, 1) for cell in cells]
    assert js(browser, MARKED, selector, "stuck", cells) == [cell == (2, 3) for cell in cells]
    element = browser.find_element(By.CSS_SELECTOR, selector)
    assert element.get_attribute("aria-label") == (
        "Test tile: 3 rows by 4 columns; arrow keys move the cursor"
    )
    assert js(browser, "return arguments[0].getBoundingClientRect().width", element) == 4 * 8 + 2
    keys = [
        Keys.ARROW_RIGHT,
        Keys.END,
        Keys.PAGE_DOWN,
        Keys.ARROW_DOWN,
        Keys.HOME,
        Keys.ARROW_DOWN,
        Keys.PAGE_UP,
        Keys.ARROW_LEFT,
        Keys.ARROW_UP,
    ]
    element.send_keys("".join(keys))
    seen = wait(browser, lambda d: (s := js(d, "return window.seen")) and len(s) == 10 and s)
    assert seen == [
        [0, 0],  # focus
        [0, 1],
        [0, 3],
        [2, 3],  # ten rows down: the last row
        [2, 3],
        [2, 0],
        [2, 0],
        [0, 0],
        [0, 0],
        [0, 0],
    ]
    cursor = js(
        browser,
        "const g = document.querySelector(arguments[0] + ' .cursor');"
        "return [g.getAttribute('visibility'), g.getAttribute('transform')]",
        selector,
    )
    assert cursor == ["visible", "translate(0 0)"]
    # new marks replace the old ones; none at all leave the paths empty
    js(browser, "window.testMap.setMarks([{ r: 1, c: 2, kind: 'worn' }])")
    assert js(browser, MARKED, selector, "worn", cells) == [cell == (1, 2) for cell in cells]
    assert not any(js(browser, MARKED, selector, "stuck", cells))
    js(browser, "window.testMap.setMarks([])")
    assert not any(js(browser, MARKED, selector, "worn", cells))
    assert marks_drawn(browser, selector) == 0


def test_a_paper_size_crossbar_shows_every_tile_and_reads_out_its_far_devices(browser, tmp_path):
    """The founding paper's 784-100-10 network (159,040 devices; a tile of 1570 x 100) on
    the bench page: no training, one read of the bench's conductances."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    path = write_config(tmp_path / "paper.yaml", name="paper-size")
    config = yaml.safe_load(path.read_text())
    config["network"].update(inputs=784, hidden=[100], outputs=10)
    path.write_text(yaml.safe_dump(config))
    with serve_dashboard(make_settings(tmp_path, (path,))) as server:
        try:
            tiles = api(server, "GET", "/benches/paper-size").json()["topology"]["tiles"]
            assert [(t["rows"], t["cols"]) for t in tiles] == [(1570, 100), (102, 20)]
            visit(browser, f"{server.url}/ui/bench.html?id=paper-size")
            wait(browser, lambda d: status_of(d, "#bench-status") == "safe")
            browser.find_element(By.CSS_SELECTOR, "#lease-form button[type=submit]").click()
            wait(browser, lambda d: "Leased to" in d.find_element(By.ID, "lease-out").text)
            browser.find_element(By.ID, "read").click()
            wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".heatmap")) == len(tiles))
            summary = browser.find_element(By.CSS_SELECTOR, ".marks-summary").text
            assert summary.startswith("159040 devices.")
            lease = js(browser, "return sessionStorage.getItem('hil.lease.paper-size')")
            g = api(
                server, "GET", "/benches/paper-size/conductances", headers={"X-Lease-Token": lease}
            ).json()["tiles"]
            for tile in tiles:
                selector = heatmap("conductance", tile["index"])
                size = js(
                    browser,
                    "const c = document.querySelector(arguments[0] + ' canvas');"
                    "const b = c.getBoundingClientRect(); return [c.height, c.width, b.height]",
                    selector,
                )
                # a pixel of the canvas a device, and at least one pixel on screen each
                assert size[:2] == [tile["rows"], tile["cols"]]
                assert size[2] >= tile["rows"]
            # far down the big tile, by keyboard: row 1234, column 77
            park_pointer(browser)
            element = browser.find_element(By.CSS_SELECTOR, heatmap("conductance", 0))
            element.send_keys(Keys.PAGE_DOWN * 123 + Keys.ARROW_DOWN * 4 + Keys.END)
            element.send_keys(Keys.ARROW_LEFT * 22)
            value = g[0]["conductances"][1234][77]
            text = readout_of(browser, "Tile 0, row 1234, column 77: device 123477 ·")
            assert quantity(text, "G", "S") == pytest.approx(value, rel=5e-3)
            # its pixel: viridis of log conductance between the lowest and highest read
            every = [x for t in g for row in t["conductances"] for x in row if x > 0]
            lo, hi = math.log10(min(every)), math.log10(max(every))
            viridis = page_viridis(browser)
            (colour,), off = js(browser, PIXELS, heatmap("conductance", 0), [(1234, 77)], viridis)
            assert off == 0
            assert colour in colours_of(viridis, (math.log10(value) - lo) / (hi - lo))
            # the keys stop at the last row
            element.send_keys(Keys.PAGE_DOWN * 40)
            text = readout_of(browser, "Tile 0, row 1569, column 77: device 156977 ·")
            assert quantity(text, "G", "S") == pytest.approx(
                g[0]["conductances"][1569][77], rel=5e-3
            )
        finally:
            browser.get("about:blank")


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
