"""The web application and the HTML report in a real browser: Debian's chromium driven by Playwright.

The app is served on loopback by uvicorn in a thread; every request to anywhere else is blocked (and
recorded), so a page that renders completely proves it works offline. Screenshots are saved under
``tests/artifacts/`` (or ``$CRITMIN_ARTIFACTS``). Chromium is installed by the project's setup
(``make browser``, part of ``make test``); set ``CRITMIN_SKIP_BROWSER=1`` to skip these tests on a machine
without it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("CRITMIN_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))

if os.environ.get("CRITMIN_SKIP_BROWSER") == "1":
    pytest.skip("browser tests skipped (CRITMIN_SKIP_BROWSER=1)", allow_module_level=True)
if not CHROMIUM.exists():
    pytest.fail(
        "Debian's chromium is missing at /usr/bin/chromium: run `make browser` (apt-get install chromium), "
        "or set CRITMIN_SKIP_BROWSER=1",
        pytrace=False,
    )

from playwright.sync_api import Page, Route, sync_playwright  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    from critmin.web.app import create_app

    store = tmp_path_factory.mktemp("web") / "store.duckdb"
    port = _free_port()
    config = uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the app did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


class Offline:
    """A page whose requests to anything but the app (or a local file) are aborted and recorded."""

    def __init__(self, page: Page, allowed: str) -> None:
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.allowed = allowed
        page.route("**/*", self._route)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)

    def _route(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(self.allowed) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        b.close()


def _series(page: Page, chart: str) -> list[str]:
    return list(
        page.evaluate(f"[...(document.getElementById('{chart}').data || [])].map(t => (t.meta || {{}}).series)")
    )


def _click_country(page: Page, container: str, iso3: str) -> None:
    box = page.evaluate(
        f"""(() => {{
            const p = [...document.querySelectorAll('{container} path.choroplethlocation')]
                .find(el => el.__data__ && el.__data__.loc === '{iso3}');
            if (!p) return null;
            const r = p.getBoundingClientRect();
            return {{x: r.x + r.width / 2, y: r.y + r.height / 2}};
        }})()"""
    )
    assert box is not None, f"{iso3} is not drawn on {container}"
    page.mouse.click(box["x"], box["y"])


def _run_from_builder(page: Page) -> str:
    page.evaluate("delete document.body.dataset.runRendered")
    page.click("#run-button")
    page.wait_for_function("document.body.dataset.runRendered", timeout=180_000)
    return str(page.evaluate("document.body.dataset.runRendered"))


def test_build_run_compare_offline(server: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    net = Offline(page, server)
    page.goto(f"{server}/#/build")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)

    # a first, plain run of the default world to 2027
    page.fill("[data-path='name']", "plain")
    page.fill("[data-path='end']", "2027")
    page.wait_for_selector("#validation.ok", timeout=30_000)
    plain = _run_from_builder(page)

    # build a scenario: a club (one member ticked, one clicked on the map) and a CfD floor for NdPr
    page.goto(f"{server}/#/build")
    page.reload()  # a fresh builder (the builder keeps its scenario across views otherwise)
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    page.fill("[data-path='name']", "club-floor")
    page.fill("[data-path='end']", "2027")
    page.fill("#new-bloc-name", "club")
    page.click("#add-bloc")
    page.check("[data-bloc='club'] input[data-region='USA']")
    page.wait_for_function(
        "document.querySelectorAll('#bloc-map-club path.choroplethlocation').length > 150", timeout=30_000
    )
    _click_country(page, "#bloc-map-club", "AUS")
    page.wait_for_function("document.querySelector(\"[data-bloc='club'] input[data-region='AUS']\").checked")
    page.select_option("#new-instrument", "cfd")
    page.click("#add-instrument")
    page.fill("[data-path='instruments.0.floor']", "not a price")
    page.wait_for_selector("#validation.bad", timeout=30_000)
    assert "floor" in page.inner_text("#validation")
    assert page.locator("[data-path='instruments.0.floor'].invalid").count() == 1
    page.fill("[data-path='instruments.0.floor']", "110 USD/kg")
    page.fill("[data-path='instruments.0.eligible']", "club")
    page.click("[data-instrument='0'] details.more summary")
    page.fill("[data-path='instruments.0.minerals']", "ndpr")
    page.wait_for_selector("#validation.ok", timeout=30_000)
    assert "1 cfd" in page.inner_text("#validation")
    # the page asks for the YAML preview after the badge turns valid: wait for it rather than race it
    page.wait_for_function(
        "document.querySelector('#yaml-preview').innerText.includes('members:\\n    - AUS\\n    - USA')",
        timeout=30_000,
    )
    page.screenshot(path=str(ARTIFACTS / "builder.png"), full_page=True)
    floor = _run_from_builder(page)

    # the run view: charts hold the expected series; the map drew the world's countries
    assert page.inner_text("#run-status") == "complete"
    prices = _series(page, "chart-prices")
    assert {"price|mine|club", "price|refine|club", "price|refine|not club", "price|magnet|world"} <= set(prices)
    assert any(s.startswith("shortfall|club|") for s in _series(page, "chart-shortfall"))
    assert _series(page, "chart-sankey") == ["sankey|ndpr|2027"]
    assert _series(page, "chart-map") == ["dependence|ndpr|CHN|2027"]
    assert page.evaluate("document.querySelectorAll('#chart-map path.choroplethlocation').length") > 150
    assert page.evaluate("document.querySelectorAll('#chart-sankey .sankey-node').length") > 5
    assert page.locator("#run-table tbody tr").count() > 5
    page.screenshot(path=str(ARTIFACTS / "run.png"), full_page=True)

    # another mineral and supplier redraw the charts
    page.evaluate("delete document.body.dataset.runRendered")
    page.select_option("#sel-supplier", "club")
    page.wait_for_function("document.body.dataset.runRendered", timeout=60_000)
    assert _series(page, "chart-map") == ["dependence|ndpr|club|2027"]

    # compare the two runs from the runs page
    page.goto(f"{server}/#/runs")
    page.wait_for_selector(f"tr[data-run='{floor}'] input[type=checkbox]", timeout=30_000)
    page.check(f"tr[data-run='{plain}'] input[type=checkbox]")
    page.check(f"tr[data-run='{floor}'] input[type=checkbox]")
    page.click("#compare-selected")
    page.wait_for_function("document.body.dataset.compareRendered", timeout=60_000)
    assert len(_series(page, "chart-cmp-prices")) == 2
    assert page.locator("#cmp-table tbody tr").count() > 5
    assert "Δ" in page.inner_text("#cmp-table thead")
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)

    assert net.blocked == [], f"requests left the machine: {net.blocked[:5]}"
    assert net.errors == [], net.errors
    page.close()


def test_report_opens_offline(server: str, browser: Any, tmp_path: Path) -> None:
    from critmin.report.html import write_report

    out = write_report(["baseline"], tmp_path / "report.html", store=tmp_path / "s.duckdb", minerals=["dy", "lithium"])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    net = Offline(page, "file://")
    page.goto(out.as_uri())
    page.wait_for_function("document.body.dataset.rendered === 'dy'", timeout=60_000)
    charts = page.evaluate("[...document.querySelectorAll('[data-chart]')].map(d => d.dataset.chart)")
    assert {"prices", "shortfall", "reserve", "fiscal", "sankey", "map"} <= set(charts)
    assert page.evaluate("document.querySelectorAll('path.choroplethlocation').length") > 150
    page.select_option("#mineral", "lithium")
    page.wait_for_function("document.body.dataset.rendered === 'lithium'", timeout=60_000)
    assert page.locator("#headline-table tbody tr").count() > 5
    assert page.locator("#sources tbody tr").count() > 20
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=False)
    assert net.blocked == [], f"the report reached for the network: {net.blocked[:5]}"
    assert net.errors == [], net.errors
    page.close()


ENSEMBLE_YAML = """\
name: toy-ensemble
world: toy
end: 2028
uncertainty:
  sampler: lhs
  parameters:
    - path: dynamics.demand_half_life
      dist: uniform
      low: 2
      high: 6
"""


def test_import_export_yaml_and_ensemble_bands(server: str, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    net = Offline(page, server)
    page.goto(f"{server}/#/build")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    source = tmp_path / "toy-ensemble.yaml"
    source.write_text(ENSEMBLE_YAML, encoding="utf-8")
    page.set_input_files("#import-yaml", str(source))
    page.wait_for_function("document.querySelector(\"[data-path='name']\").value === 'toy-ensemble'")
    page.wait_for_selector("#validation.ok", timeout=30_000)
    assert page.input_value("[data-path='world']") == "toy"
    with page.expect_download() as info:
        page.click("#export-yaml")
    exported = Path(info.value.path()).read_text(encoding="utf-8")
    assert "name: toy-ensemble" in exported and "demand_half_life" in exported and "extends" not in exported

    page.fill("#draws", "6")
    page.evaluate("delete document.body.dataset.runRendered")
    page.click("#ensemble-button")
    page.wait_for_function("document.body.dataset.runRendered", timeout=180_000)
    assert "6 draws" in page.inner_text("#run-title")
    series = _series(page, "chart-price")
    assert {"price|world|p5", "price|world|p50", "price|world|p95"} <= set(series)
    assert {"shortfall_share|world|p5", "shortfall_share|world|p95"} <= set(_series(page, "chart-shortfall_share"))
    assert page.locator("#run-table tbody tr").count() >= 3
    assert page.locator("#sel-supplier").is_hidden()
    page.screenshot(path=str(ARTIFACTS / "ensemble.png"), full_page=True)
    assert net.blocked == [], net.blocked[:5]
    assert net.errors == [], net.errors
    page.close()
