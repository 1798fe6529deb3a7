"""The HTTP API with FastAPI's test client: reference data, validation, runs in the background, results,
downloads, reports, comparisons, limits and errors."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from critmin.web.app import Limits, create_app
from critmin.web.jobs import JobManager

TOY = {"name": "toy-api", "world": "toy", "end": 2027}
TOY_FLOOR = {
    "name": "toy-floor",
    "world": "toy",
    "end": 2027,
    "blocs": {"club": {"members": ["USA", "AUS"]}},
    "instruments": [
        {"kind": "cfd", "minerals": ["lithium"], "floor": "60 USD/kg", "eligible": "club", "stage": "mine"}
    ],
}


@pytest.fixture()
def client(tmp_path: Path) -> TestClient:
    app = create_app(tmp_path / "store.duckdb", limits=Limits(max_draws=40, max_periods=30))
    return TestClient(app, raise_server_exceptions=False)


def wait(client: TestClient, run_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = client.get(f"/api/runs/{run_id}").json()
        if st["status"] != "running":
            return st
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s")


def start(client: TestClient, scenario: dict[str, Any], **extra: Any) -> str:
    res = client.post("/api/runs", json={"scenario": scenario, **extra})
    assert res.status_code == 202, res.text
    body = res.json()
    assert body["status_url"] == f"/api/runs/{body['run_id']}"
    return str(body["run_id"])


def test_reference_endpoints(client: TestClient) -> None:
    assert client.get("/api/health").json()["status"] == "ok"
    worlds = {w["name"]: w for w in client.get("/api/worlds").json()}
    assert set(worlds) == {"default", "toy"}
    default = worlds["default"]
    assert len(default["regions"]) == 20 and default["stages"]["ndpr"] == ["mine", "refine", "magnet"]
    eu = next(r for r in default["regions"] if r["code"] == "EU")
    assert "DEU" in eu["countries"] and len(eu["countries"]) == 27
    row = next(r for r in default["regions"] if r["code"] == "ROW")
    assert "IND" in row["countries"] and "DEU" not in row["countries"]
    names = [s["name"] for s in client.get("/api/scenarios").json()]
    assert {"baseline", "club-2026", "club-vs-ban"} <= set(names)
    doc = client.get("/api/scenarios/club-2026").json()
    assert doc["scenario"]["name"] == "club-2026" and all("kind" in i for i in doc["scenario"]["instruments"])
    assert client.get("/api/scenarios/nope").status_code == 404
    schema = client.get("/api/schema").json()
    assert "instruments" in schema["properties"]
    spec = client.get("/openapi.json").json()
    assert "/api/runs" in spec["paths"] and "/api/compare" in spec["paths"]


def test_validate_reports_field_and_reason(client: TestClient) -> None:
    ok = client.post("/api/validate", json={"scenario": TOY_FLOOR}).json()
    assert ok["valid"] and "1 cfd" in ok["summary"]
    bad_unit = {**TOY_FLOOR, "instruments": [{**TOY_FLOOR["instruments"][0], "floor": "abc"}]}
    res = client.post("/api/validate", json={"scenario": bad_unit}).json()
    assert (
        not res["valid"]
        and res["errors"][0]["field"].startswith("instruments.0")
        and "abc" in res["errors"][0]["reason"]
    )
    unknown = {**TOY, "blocs": {"club": {"members": ["USA", "XXX"]}}}
    res = client.post("/api/validate", json={"scenario": unknown}).json()
    assert res["errors"][0]["field"] == "blocs.club" and "XXX" in res["errors"][0]["reason"]
    # no file paths from requests: worlds are built-in, extends is refused in JSON
    res = client.post("/api/validate", json={"scenario": {**TOY, "world": "/etc"}}).json()
    assert res["errors"][0]["field"] == "world"
    res = client.post("/api/validate", json={"scenario": {**TOY, "extends": "/etc/passwd"}}).json()
    assert res["errors"][0]["field"] == "extends"
    # uncertain inputs are checked as an ensemble checks them
    drawn = {
        **TOY_FLOOR,
        "uncertainty": {
            "parameters": [
                {"path": "world.lithium.demand_elasticity.nope", "dist": "uniform", "low": -0.5, "high": -0.1}
            ]
        },
    }
    res = client.post("/api/validate", json={"scenario": drawn}).json()
    assert not res["valid"] and res["errors"][0]["field"] == "uncertainty: world.lithium"
    assert "no sector 'nope'" in res["errors"][0]["reason"]
    # malformed request bodies are 422 with the field named
    res = client.post("/api/validate", json={"nope": 1})
    assert res.status_code == 422 and res.json()["detail"][0]["field"].endswith("scenario")


def test_yaml_round_trip_and_import_limits(client: TestClient) -> None:
    text = client.post("/api/yaml/export", json={"scenario": TOY_FLOOR}).json()["yaml"]
    assert yaml.safe_load(text)["instruments"][0]["kind"] == "cfd"
    back = client.post("/api/yaml/import", json={"yaml": text}).json()["scenario"]
    assert back["instruments"][0]["floor"] == pytest.approx(60_000.0)  # 60 USD/kg, in USD/t
    built_in = client.post("/api/yaml/import", json={"yaml": "name: mine\nextends: club-2026\n"})
    assert built_in.status_code == 200 and built_in.json()["scenario"]["blocs"]["club"]
    for parent in ("/etc/passwd", "../src/critmin/scenarios/baseline.yaml"):
        res = client.post("/api/yaml/import", json={"yaml": f"name: x\nextends: {parent}\n"})
        assert res.status_code == 422 and "built-in" in res.json()["detail"]
    res = client.post("/api/yaml/import", json={"yaml": "name: [unclosed"})
    assert res.status_code == 422 and "YAML" in res.json()["detail"]


def test_limits_answer_4xx(client: TestClient) -> None:
    res = client.post("/api/runs", json={"scenario": TOY, "draws": 41})
    assert res.status_code == 422 and "limit is 40" in res.text
    res = client.post("/api/runs", json={"scenario": {**TOY, "period": "quarter", "end": 2035}})
    assert res.status_code == 422 and "limit is 30" in res.text
    huge = {"scenario": {**TOY, "description": "x" * 600_000}}
    assert client.post("/api/validate", json=huge).status_code == 413
    assert client.get("/api/runs/not-a-run").status_code == 422
    assert client.get("/api/runs/r-20260101-0000-abcdef").status_code == 404
    res = client.get("/api/compare", params={"runs": ["r-20260101-0000-abcdef"]})
    assert res.status_code == 422


def test_single_run_results_downloads_and_report(client: TestClient) -> None:
    run_id = start(client, TOY_FLOOR)
    st = wait(client, run_id)
    assert st["status"] == "complete" and st["kind"] == "single" and st["done"] == 1
    assert run_id in [r["run_id"] for r in client.get("/api/runs").json()]

    view = client.get(f"/api/runs/{run_id}/view", params={"mineral": "lithium", "period": "2026"}).json()
    assert view["kind"] == "single" and view["period"] == "2026"
    figs = view["figures"]
    assert set(figs) == {"prices", "shortfall", "reserve", "fiscal", "sankey", "map"}
    series = {t["meta"]["series"] for t in figs["prices"]["data"]}
    assert {"price|mine|club", "price|mine|not club", "price|mine|world"} <= series
    assert figs["sankey"]["data"][0]["type"] == "sankey" and figs["sankey"]["data"][0]["link"]["value"]
    assert figs["map"]["data"][0]["locationmode"] == "ISO-3"
    assert any(r["metric"] == "shortfall_peak" for r in view["headline"])
    assert client.get(f"/api/runs/{run_id}/view", params={"mineral": "gold"}).status_code == 422
    assert client.get(f"/api/runs/{run_id}/view", params={"period": "1999"}).status_code == 422

    metrics = client.get(f"/api/runs/{run_id}/metrics").json()
    assert {"metric", "mineral", "bloc", "unit", "value"} <= set(metrics[0])
    price = client.get(f"/api/runs/{run_id}/results", params={"variable": "price"}).json()
    assert price["unit"] == "USD/t" and price["dims"] == ["mineral", "stage", "region", "period"]

    csv = client.get(f"/api/runs/{run_id}/export", params={"format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    table = pd.read_csv(io.StringIO(csv.text))
    assert {"variable", "region", "partner", "period", "value", "unit"} <= set(table.columns)
    assert (table["variable"] == "price").any()
    parquet = client.get(f"/api/runs/{run_id}/export", params={"format": "parquet"})
    assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1"
    assert client.get(f"/api/runs/{run_id}/export", params={"format": "xlsx"}).status_code == 422

    report = client.get(f"/api/runs/{run_id}/report")
    assert report.status_code == 200 and "PlotlyGeoAssets" in report.text and "toy-floor" in report.text


def test_compare_two_runs(client: TestClient) -> None:
    a = start(client, TOY)
    assert wait(client, a)["status"] == "complete"
    b = start(client, TOY_FLOOR)
    assert wait(client, b)["status"] == "complete"
    res = client.get("/api/compare", params={"runs": [a, b], "mineral": "lithium"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert len(body["labels"]) == 2 and body["rows"] and len(body["rows"][0]["diffs"]) == 1
    names = [t["name"] for t in body["figures"]["prices"]["data"]]
    assert len(names) == 2
    assert client.get("/api/compare", params={"runs": [a, a]}).status_code == 422
    report = client.get(f"/api/runs/{a}/report", params={"compare": [b]})
    assert report.status_code == 200 and "Comparison" in report.text
    assert body["note"] is None  # the same minerals and periods
    # a run over fewer periods: both compared over the periods they share, and the page says so
    c = start(client, {**TOY_FLOOR, "name": "toy-floor-short", "end": 2025})
    assert wait(client, c)["status"] == "complete"
    res = client.get("/api/compare", params={"runs": [a, c]})
    assert res.status_code == 200, res.text
    assert "periods 2026-2027" in res.json()["note"]
    report = client.get(f"/api/runs/{a}/report", params={"compare": [c]})
    assert report.status_code == 200 and "compared over what every run has" in report.text


def test_an_ensemble_without_uncertain_inputs_is_refused(client: TestClient) -> None:
    res = client.post("/api/runs", json={"scenario": TOY, "draws": 5})
    assert res.status_code == 422 and "no uncertain inputs" in res.json()["detail"]


def test_ensemble_in_background(client: TestClient) -> None:
    scenario = {
        **TOY,
        "name": "toy-ens",
        "uncertainty": {"parameters": [{"path": "dynamics.demand_half_life", "dist": "uniform", "low": 2, "high": 6}]},
    }
    run_id = start(client, scenario, draws=4, seed=3)
    st = wait(client, run_id)
    assert st["status"] == "complete" and st["kind"] == "ensemble" and st["done"] == 4
    view = client.get(f"/api/runs/{run_id}/view").json()
    assert view["kind"] == "ensemble" and set(view["figures"]) == {
        "price",
        "shortfall_share",
        "fiscal_cost",
        "reserve_stock",
    }
    series = {t["meta"]["series"] for t in view["figures"]["price"]["data"]}
    assert {"price|world|p5", "price|world|p50", "price|world|p95"} <= series
    assert view["risk"] and {"p5", "p50", "p95", "cvar"} <= set(view["risk"][0])
    # an ensemble is not compared with single runs
    other = start(client, TOY)
    wait(client, other)
    assert client.get("/api/compare", params={"runs": [other, run_id]}).status_code == 422


def test_failed_run_reports_its_error(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from critmin.core.errors import SolveError

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise SolveError("lithium 2025", "test failure")

    monkeypatch.setattr("critmin.web.jobs.execute_single", boom)
    run_id = start(client, TOY)
    st = wait(client, run_id)
    assert st["status"] == "failed" and "lithium 2025" in st["error"]
    assert client.get(f"/api/runs/{run_id}/view").status_code == 409


def test_busy_server_answers_429(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    original = JobManager._single

    def slow(self: JobManager, job: Any, spec: Any) -> None:
        gate.wait(30)
        original(self, job, spec)

    monkeypatch.setattr(JobManager, "_single", slow)
    client = TestClient(
        create_app(tmp_path / "s.duckdb", limits=Limits(max_active_runs=1)), raise_server_exceptions=False
    )
    first = start(client, TOY)
    res = client.post("/api/runs", json={"scenario": TOY})
    assert res.status_code == 429 and "try again" in res.json()["detail"]
    gate.set()
    assert wait(client, first)["status"] == "complete"


def test_errors_do_not_leak_tracebacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = TestClient(create_app(tmp_path / "s.duckdb"), raise_server_exceptions=False)

    def broken(self: Any) -> Any:
        raise RuntimeError("secret internals at /home/x")

    monkeypatch.setattr("critmin.results.store.Store.list_runs", broken)
    res = client.get("/api/runs")
    assert res.status_code == 500
    assert res.json() == {"detail": "internal error; see the server log"}
    assert "secret" not in res.text and "Traceback" not in res.text


def test_cors_off_by_default(client: TestClient, tmp_path: Path) -> None:
    res = client.get("/api/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in res.headers
    allowed = TestClient(create_app(tmp_path / "c.duckdb", cors_origins=["http://ok.example"]))
    res = allowed.get("/api/health", headers={"Origin": "http://ok.example"})
    assert res.headers.get("access-control-allow-origin") == "http://ok.example"


def test_app_serves_its_own_assets(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/vendor/plotly.min.js" in page.text and "cdn" not in page.text.lower()
    js = client.get("/vendor/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000
    topo = client.get("/vendor/topojson/world_110m.json").json()
    assert topo["type"] == "Topology" and "countries" in topo["objects"]
    assert client.get("/static/app.js").status_code == 200
    assert "topojsonURL" in client.get("/static/app.js").text


def test_report_command_writes_one_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from critmin.cli import app

    out = tmp_path / "r.html"
    example = Path(__file__).resolve().parents[2] / "examples" / "tariff.yaml"
    args = ["report", str(example), "-o", str(out), "--store", str(tmp_path / "s.duckdb")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "PlotlyGeoAssets" in html and '<script src="http' not in html
    assert not list(tmp_path.glob("*.tmp"))
    bad = CliRunner().invoke(app, ["report", "no-such-scenario", "-o", str(tmp_path / "x.html")])
    assert bad.exit_code == 2 and "no built-in scenario" in bad.output
    assert not (tmp_path / "x.html").exists()
