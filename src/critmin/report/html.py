"""Self-contained HTML reports of one or more runs: scenario, headline metrics, charts, data sources.

A report is one file: plotly.js, the world map's topojson and every chart's data are inlined, so it opens
in a browser with no network. Charts are drawn per mineral (a selector switches between minerals) from the
same figure specs the web application shows (:mod:`critmin.report.figures`).

Targets are stored run ids (read from the results store) or scenarios (built-in names or YAML files), which
are run first and stored. With two or more targets the report compares them: headline metrics side by side
with differences from the first, and price and shortfall paths of every run on one chart.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, cast

import pandas as pd
import xarray as xr
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

import critmin
from critmin.core.errors import CritminError, DataError
from critmin.metrics import HEADLINE_DEFINITIONS, MetricError, common_window, compare
from critmin.report.figures import (
    TOPOJSON_NAME,
    Figure,
    compare_figures,
    ensemble_figures,
    region_countries,
    run_figures,
    world_topojson,
)
from critmin.results.store import Store
from critmin.simulate.scenario import Scenario, scenario_data, scenario_from_dict

#: Risk metrics of an ensemble report: (metric, label, scale, unit shown).
_ENSEMBLE_ROWS = (
    ("price", "Peak price, last stage", 1e-3, "USD/kg"),
    ("shortfall_share", "Peak shortfall", 100.0, "%"),
    ("fiscal_cost", "Fiscal cost, summed over periods", 1e-6, "M USD"),
)


#: Supplier whose dependence the report's map shows unless another is named (where the world has it).
DEFAULT_SUPPLIER = "CHN"


@dataclass
class ReportRun:
    """One run in a report: a single run's results Dataset, or an ensemble's per-draw metrics."""

    label: str
    scenario: Scenario
    kind: str = "single"
    run_id: str | None = None
    ds: xr.Dataset | None = None
    metrics: pd.DataFrame | None = None
    draws: pd.DataFrame | None = None
    n_draws: int = 1
    notes: list[str] = field(default_factory=list)


def plotly_js() -> str:
    """The plotly.js bundle shipped with the ``plotly`` Python package."""
    return resources.files("plotly").joinpath("package_data/plotly.min.js").read_text(encoding="utf-8")


def _script_json(value: Any) -> str:
    """JSON safe to inline in a ``<script>`` element."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def fmt_value(value: Any, unit: str) -> str:
    """A headline value for reading: shares as percentages, money in M/bn USD."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    v = float(value)
    if unit == "1":
        return f"{100 * v:.1f}%"
    if unit == "USD":
        if abs(v) >= 1e9:
            return f"{v / 1e9:,.2f} bn USD"
        return f"{v / 1e6:,.1f} M USD"
    if unit in {"periods", "regions"}:
        return f"{v:,.0f}"
    return f"{v:,.4g} {unit}"


def fmt_diff(a: Any, b: Any, unit: str) -> str:
    """The difference ``b - a`` of two headline values (shares in percentage points; 0 within the solver's
    tolerance, :func:`critmin.metrics.headline.difference`)."""
    from critmin.metrics.headline import difference

    if a is None or b is None:
        return "–"
    d = float(difference(float(a), float(b)))
    if unit == "1":
        return f"{100 * d:+.1f} pp"
    return ("+" if d >= 0 else "") + fmt_value(d, unit)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_target(target: str, store: Store, *, on_progress: Callable[[str], None] | None = None) -> ReportRun:
    """A stored run (by id or unique prefix) or a scenario (name or file), run now and stored."""
    from critmin.results.ensemble import run_single
    from critmin.simulate.scenario import load_scenario

    run_id: str | None = None
    if target.startswith("r-"):
        try:
            run_id = store.resolve(target)
        except CritminError:
            run_id = None
    if run_id is None:
        spec = load_scenario(target)
        if on_progress is not None:
            on_progress(f"running {spec.name}")
        run_id, ds = run_single(spec, store=store)
        return ReportRun(label=spec.name, scenario=spec, run_id=run_id, ds=ds)
    return load_run(run_id, store)


def load_run(run_id: str, store: Store) -> ReportRun:
    """A stored run: a single run's full cube, or an ensemble's per-draw metrics."""
    info = store.get_run(run_id)
    if info["status"] != "complete":
        raise CritminError(f"run {run_id} is {info['status']}, not complete: there is nothing to report yet")
    spec = scenario_from_dict(yaml.safe_load(info["scenario_yaml"]), file=f"run {run_id}")
    label = f"{spec.name} ({run_id})"
    if info["kind"] == "single":
        ds = store.load_cube(run_id).isel(draw=0, drop=True)
        return ReportRun(label=label, scenario=spec, run_id=run_id, ds=ds)
    return ReportRun(
        label=label,
        scenario=spec,
        kind="ensemble",
        run_id=run_id,
        metrics=store.load_metrics(run_id),
        draws=store.load_draws(run_id),
        n_draws=int(info["n_draws"]),
    )


def _scenario_view(spec: Scenario) -> dict[str, Any]:
    instruments = []
    for i, inst in enumerate(spec.instruments):
        data = inst.model_dump(mode="json")
        minerals = data.get("minerals", "all")
        instruments.append(
            {
                "kind": inst.kind,
                "name": data.get("name") or f"{inst.kind}-{i}",
                "minerals": minerals if isinstance(minerals, str) else ", ".join(minerals),
                "start": data.get("start") or "",
                "end": data.get("end") or "",
                "enabled": data.get("enabled", True),
                "description": data.get("description", ""),
            }
        )
    blocs = [{"name": name, "members": ", ".join(b.members), "joins": dict(b.joins)} for name, b in spec.blocs.items()]
    return {
        "name": spec.name,
        "description": spec.description,
        "world": spec.world,
        "horizon": f"{spec.start or 'base year'} – {spec.end or 'horizon'} ({spec.period}s)",
        "blocs": blocs,
        "instruments": instruments,
        "sources": list(spec.sources),
        "yaml": yaml.safe_dump(scenario_data(spec), sort_keys=False),
    }


def _headline_rows(runs: Sequence[ReportRun]) -> tuple[list[str], list[dict[str, Any]], str | None]:
    """Headline rows of the single runs side by side (:func:`critmin.metrics.compare`), formatted, with
    the difference of each run from the first; over the minerals and periods every run has
    (:func:`critmin.metrics.common_window`, whose note says what was left out, or None)."""
    singles = {r.label: r.ds for r in runs if r.ds is not None}
    if not singles:
        return [], [], None
    try:
        singles, note = common_window(singles)
    except MetricError as err:  # no mineral or period in common, or other worlds: side by side as they are
        note = f"not cut to a common window ({err}), so their differences do not compare like with like"
    table = compare(singles)
    labels = list(singles)
    rows = []
    for key, row in table.iterrows():
        metric, mineral, bloc = (str(k) for k in cast(tuple[Any, ...], key))
        unit = str(row["unit"])
        first = _clean(row[labels[0]])
        rows.append(
            {
                "metric": metric,
                "mineral": mineral,
                "bloc": bloc,
                "unit": unit,
                "cells": [fmt_value(_clean(row[label]), unit) for label in labels],
                "diffs": [fmt_diff(first, _clean(row[label]), unit) for label in labels[1:]],
            }
        )
    return labels, rows, note


def ensemble_rows(draws: pd.DataFrame, metrics: pd.DataFrame, mineral: str | None = None) -> list[dict[str, Any]]:
    """The ensemble's risk table (:func:`critmin.results.risk.risk_table`) for price, shortfall and fiscal
    cost, in the units a reader expects (USD/kg, %, M USD)."""
    from critmin.results.risk import driver_label, risk_table

    table = risk_table(draws, metrics, minerals=None if mineral is None else [mineral])
    rows = []
    for metric, label, scale, unit in _ENSEMBLE_ROWS:
        for r in table[table["metric"] == metric].to_dict(orient="records"):

            def show(key: str, scale: float = scale, r: dict[Any, Any] = r) -> str:
                v = float(r[key])
                return "–" if not math.isfinite(v) else f"{v * scale:,.3g}"

            driver = r["driver"]
            rows.append(
                {
                    "metric": label,
                    "mineral": str(r["mineral"]),
                    "bloc": str(r["region"]),
                    "unit": unit,
                    **{key: show(key) for key in ("p5", "p50", "p95", "mean", "cvar")},
                    "driver": driver_label(driver, float(r["driver_rho"]), float(r["driver_p"]), symbol="ρ "),
                }
            )
    return rows


def _sources(worlds: Sequence[str]) -> list[dict[str, str]]:
    from critmin.simulate.run import resolve_world

    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for name in worlds:
        world = resolve_world(name)
        try:
            table = world.table("sources")
        except KeyError:
            continue
        for row in table.itertuples(index=False):
            key = str(row.id)
            if key in seen:
                continue
            seen.add(key)
            out.append({"id": key, "citation": str(row.citation), "basis": str(getattr(row, "basis", ""))})
    return out


def build_report(
    runs: Sequence[ReportRun],
    *,
    minerals: Sequence[str] | None = None,
    supplier: str | None = None,
    title: str | None = None,
) -> str:
    """The report's HTML (one self-contained document)."""
    from critmin.simulate.run import resolve_world

    if not runs:
        raise CritminError("a report needs at least one run")
    worlds = list(dict.fromkeys(r.scenario.world for r in runs))
    region_map = {w: region_countries(resolve_world(w).region_table) for w in worlds}
    charts: dict[str, dict[str, dict[str, Figure]]] = {}
    all_minerals: list[str] = []
    for run in runs:
        if run.ds is not None:
            available = [str(m) for m in run.ds["mineral"].values]
        else:
            assert run.metrics is not None
            available = list(dict.fromkeys(run.metrics["mineral"].astype(str)))
        chosen = [m for m in (minerals or available) if m in available]
        if minerals and not chosen:
            raise CritminError(f"none of the minerals {', '.join(minerals)} is in run {run.label}")
        per: dict[str, dict[str, Figure]] = {}
        sup = ""
        if run.ds is not None:
            present = [str(r) for r in run.ds["region"].values]
            if supplier is not None and supplier not in present:
                raise CritminError(
                    f"supplier {supplier!r} is not a region of {run.label}'s world; its regions: {', '.join(present)}"
                )
            # by default CHN, where the world has it (a toy world may not): else its first region
            sup = supplier or (DEFAULT_SUPPLIER if DEFAULT_SUPPLIER in present else present[0])
        for mineral in chosen:
            if run.ds is not None:
                per[mineral] = run_figures(run.ds, region_map[run.scenario.world], mineral=mineral, supplier=sup)
            else:
                assert run.metrics is not None
                per[mineral] = ensemble_figures(run.metrics, mineral)
        charts[run.label] = per
        all_minerals += [m for m in chosen if m not in all_minerals]
    comparison: dict[str, dict[str, Figure]] = {}
    singles: dict[str, xr.Dataset] = {r.label: r.ds for r in runs if r.ds is not None}
    if len(singles) >= 2:
        shared = [
            m for m in all_minerals if all(m in [str(x) for x in ds["mineral"].values] for ds in singles.values())
        ]
        comparison = {m: compare_figures(singles, m) for m in shared}
    labels, headline_rows, headline_note = _headline_rows(runs)
    env = Environment(loader=PackageLoader("critmin.report", "templates"), autoescape=select_autoescape())
    template = env.get_template("report.html.j2")
    kinds = ", ".join(
        f"{r.label}: {'ensemble of ' + str(r.n_draws) + ' draws' if r.kind == 'ensemble' else 'single run'}"
        for r in runs
    )
    return template.render(
        title=title
        or (
            "Comparison: " + " vs ".join(r.scenario.name for r in runs)
            if len(runs) > 1
            else f"Scenario {runs[0].scenario.name}"
        ),
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=critmin.__version__,
        kinds=kinds,
        runs=[
            {
                "label": r.label,
                "run_id": r.run_id,
                "kind": r.kind,
                "n_draws": r.n_draws,
                "scenario": _scenario_view(r.scenario),
                "risk": ensemble_rows(r.draws, r.metrics)
                if r.kind == "ensemble" and r.draws is not None and r.metrics is not None
                else [],
            }
            for r in runs
        ],
        labels=labels,
        headline_rows=headline_rows,
        headline_note=headline_note,
        definitions=HEADLINE_DEFINITIONS,
        minerals=all_minerals,
        sources=_sources(worlds),
        plotly_js=plotly_js(),
        topojson_name=TOPOJSON_NAME,
        topojson=world_topojson().replace("</", "<\\/"),
        charts_json=_script_json(charts),
        comparison_json=_script_json(comparison),
    )


def write_report(
    targets: Sequence[str],
    output: str | Path,
    *,
    store: Store | str | Path | None = None,
    minerals: Sequence[str] | None = None,
    supplier: str | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the report of ``targets`` (run ids or scenarios) to ``output``; return its path.

    The file is written under a temporary name and renamed, so a failed report never leaves a partial file
    that looks complete.
    """
    out = Path(output)
    if not out.parent.is_dir():
        raise DataError(str(out), "--output", f"the folder {out.parent} does not exist")
    db = store if isinstance(store, Store) else Store(store)
    runs = [load_target(t, db, on_progress=on_progress) for t in targets]
    labels = [r.label for r in runs]
    for i, run in enumerate(runs):
        if labels.count(run.label) > 1:
            run.label = f"{run.label} #{i + 1}"
    html = build_report(runs, minerals=minerals, supplier=supplier)
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise DataError(str(out), "--output", f"cannot write the report: {err}") from None
    return out
