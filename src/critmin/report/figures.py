"""Charts of a run, an ensemble or a comparison, as Plotly figure specs (plain JSON-ready dicts).

One module draws every chart, so the web application (which fetches these specs and hands them to
plotly.js) and the HTML report (which inlines them) show the same thing. Each function takes results, not
files; none computes anything the metrics module does not define (prices are the ``price`` metric's
use-weighted means, shortfall is ``shortfall_parts``, dependence is origin tracing).

Charts of one run (``run_figures``):

- ``prices``: price paths by stage (one panel per stage) inside and outside each bloc, and the world;
- ``shortfall``: unmet share of reference demand by sector, one panel per bloc and the world;
- ``reserve``: reserve stock and days of cover of each group holding stock;
- ``fiscal``: government outlays by paying region, all minerals (stacked bars);
- ``sankey``: one period's shipments from mine origin through each processing stage to use;
- ``map``: dependence of each region on a chosen supplier (share of use traced to it), on a world map.

Ensembles (``ensemble_figures``) show the P5-P95 band and the median of the per-draw headline metrics.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import xarray as xr
from plotly.subplots import make_subplots

from critmin.metrics import WORLD, days_of_cover, dependence, fiscal_cost, membership, reserve_stock
from critmin.metrics.core import bloc_names, extend_mean, use
from critmin.metrics.shortfall import shortfall_parts

Figure = dict[str, Any]

#: Name of the world topojson Plotly looks up (``<scope>_<resolution>m``) and the file that holds it.
TOPOJSON_NAME = "world_110m"
ASSETS_PACKAGE = "critmin.report.assets"

_PALETTE = ["#1f5fa8", "#2a9d8f", "#7b4fa0", "#b8860b", "#5c7cfa", "#0b7285"]
_OUTSIDE = ["#d9480f", "#e8590c", "#c2255c", "#a61e4d", "#f08c00", "#e03131"]
_WORLD_COLOR = "#495057"
_SECTOR_COLORS = {
    "defense": "#c92a2a",
    "ev": "#1971c2",
    "wind": "#2b8a3e",
    "electronics": "#7048e8",
    "other": "#868e96",
    "all": "#212529",
}
_FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"


def _layout(fig: go.Figure, title: str, *, height: int = 360) -> None:
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 15}},
        height=height,
        margin={"l": 60, "r": 20, "t": 60, "b": 40},
        font={"family": _FONT, "size": 12},
        plot_bgcolor="white",
        paper_bgcolor="white",
        legend={"orientation": "h", "y": -0.15},
        hovermode="x unified",
    )
    fig.update_xaxes(gridcolor="#eee", linecolor="#ccc")
    fig.update_yaxes(gridcolor="#eee", linecolor="#ccc", zerolinecolor="#ccc")


def _year_ticks(fig: go.Figure) -> None:
    """Whole years on numeric time axes (plotly would otherwise label 2024.5)."""
    xs = [x for trace in fig.data if getattr(trace, "x", None) is not None for x in trace.x]
    if not xs or not all(isinstance(x, int | np.integer) for x in xs):
        return
    n = int(max(xs) - min(xs)) + 1
    fig.update_xaxes(tickformat="d", dtick=1 if n <= 9 else 2 if n <= 18 else 5)


def to_spec(fig: go.Figure) -> Figure:
    """A figure as a JSON-ready dict (``data`` and ``layout``), numpy values converted."""
    if not any(isinstance(t, go.Sankey | go.Choropleth) for t in fig.data):
        _year_ticks(fig)
    spec: Figure = json.loads(fig.to_json())
    return {"data": spec.get("data", []), "layout": spec.get("layout", {})}


def _periods(ds: xr.Dataset) -> list[str]:
    return [str(p) for p in ds["period"].values]


def _x(ds: xr.Dataset) -> list[int] | list[str]:
    """Period labels for an x axis: years as numbers (a time axis), quarters as text."""
    labels = _periods(ds)
    if all(label.isdigit() for label in labels):
        return [int(label) for label in labels]
    return labels


def _stages(ds: xr.Dataset, mineral: str) -> list[str]:
    """The mineral's stages in chain order (those with any capacity or output)."""
    out = []
    for s in ds["stage"].values:
        cap = ds["capacity"].sel(mineral=mineral, stage=s)
        prod = ds["production"].sel(mineral=mineral, stage=s)
        if bool(cap.notnull().any()) or bool(prod.notnull().any()):
            if float(np.nansum(cap.values)) > 0 or float(np.nansum(prod.values)) > 0:
                out.append(str(s))
    return out


def groups_with_complements(ds: xr.Dataset) -> xr.DataArray:
    """(group, region, period) membership: each bloc, its complement ``not <bloc>``, and the world."""
    groups = membership(ds)
    blocs = bloc_names(groups)
    if not blocs:
        return groups
    outside = (~groups.sel(group=blocs)).assign_coords(group=[f"not {b}" for b in blocs])
    return xr.concat([groups.sel(group=blocs), outside, groups.sel(group=[WORLD])], dim="group")


def _group_color(name: str, blocs: Sequence[str]) -> str:
    if name == WORLD:
        return _WORLD_COLOR
    if name.startswith("not "):
        return _OUTSIDE[blocs.index(name[4:]) % len(_OUTSIDE)] if name[4:] in blocs else _OUTSIDE[0]
    return _PALETTE[blocs.index(name) % len(_PALETTE)] if name in blocs else _PALETTE[0]


def _hex_rgba(color: str, alpha: float) -> str:
    return f"rgba({int(color[1:3], 16)},{int(color[3:5], 16)},{int(color[5:7], 16)},{alpha})"


def _group_mean(da: xr.DataArray, weight: xr.DataArray, groups: xr.DataArray) -> xr.DataArray:
    """Each group's ``weight``-weighted mean of its members' values (the metrics' ``extend_mean``), with
    ``region`` renamed ``group``."""
    names = [str(g) for g in groups["group"].values]
    return extend_mean(da, weight, groups).sel(region=names).rename(region="group")


# ------------------------------------------------------------------------------------------------------------
# one run


def _line(
    fig: go.Figure,
    x: Sequence[Any],
    y: Any,
    name: str,
    *,
    col: int,
    line: dict[str, Any],
    series: str,
    hover: str,
    legend: bool | None = None,
) -> None:
    """Add one line to panel ``col`` of a one-row figure; ``series`` names it for the page and the tests."""
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            name=name,
            legendgroup=name,
            showlegend=legend,
            mode="lines",
            line=line,
            meta={"series": series},
            hovertemplate=hover,
        ),
        row=1,
        col=col,
    )


def price_paths(ds: xr.Dataset, mineral: str) -> Figure:
    """Use-weighted price by stage, inside and outside each bloc and for the world (USD/kg)."""
    stages = _stages(ds, mineral)
    groups = groups_with_complements(ds)
    blocs = bloc_names(membership(ds))
    price = ds["price"].sel(mineral=mineral)
    weight = use(ds).sel(mineral=mineral)
    means = _group_mean(price, weight, groups) / 1000.0
    periods = _x(ds)
    fig = make_subplots(rows=1, cols=len(stages), subplot_titles=[s.capitalize() for s in stages], shared_yaxes=False)
    for col, stage in enumerate(stages, start=1):
        for name in [str(g) for g in groups["group"].values]:
            values = means.sel(stage=stage, group=name).values
            if np.all(np.isnan(values)):
                continue
            style = {
                "color": _group_color(name, blocs),
                "width": 2.5 if name == WORLD else 2,
                "dash": "dot" if name.startswith("not ") else "solid",
            }
            _line(
                fig,
                periods,
                values,
                name,
                col=col,
                line=style,
                series=f"price|{stage}|{name}",
                hover="%{y:,.2f} USD/kg",
                legend=col == 1,
            )
    _layout(fig, f"{mineral}: price by stage, inside and outside each bloc (USD/kg)")
    fig.update_yaxes(rangemode="tozero")
    return to_spec(fig)


def shortfall_by_sector(ds: xr.Dataset, mineral: str) -> Figure:
    """Unmet share of reference demand by sector (all stages together), one panel per bloc and the world."""
    groups = membership(ds)
    names = [str(g) for g in groups["group"].values]
    unmet, ref = shortfall_parts(ds, groups)
    unmet = unmet.sel(mineral=mineral, region=names).sum("stage", min_count=1)
    ref = ref.sel(mineral=mineral, region=names).sum("stage", min_count=1)
    share = (unmet / ref).where(ref > 0) * 100.0
    periods = _x(ds)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True)
    for col, name in enumerate(names, start=1):
        for sector in [str(s) for s in share["sector"].values]:
            values = share.sel(region=name, sector=sector).values
            if np.all(np.isnan(values)):
                continue
            style = {"color": _SECTOR_COLORS.get(sector, "#555"), "width": 3 if sector == "all" else 1.8}
            _line(
                fig,
                periods,
                values,
                sector,
                col=col,
                line=style,
                series=f"shortfall|{name}|{sector}",
                hover="%{y:.1f}%",
                legend=col == 1,
            )
    _layout(fig, f"{mineral}: shortfall by sector (% of reference demand unmet)")
    fig.update_yaxes(rangemode="tozero", ticksuffix="%")
    return to_spec(fig)


def reserve_cover(ds: xr.Dataset, mineral: str) -> Figure:
    """Reserve stock (t) and days of cover of each group that holds stock."""
    stock = reserve_stock(ds).sel(mineral=mineral)
    cover = days_of_cover(ds).sel(mineral=mineral)
    blocs = bloc_names(membership(ds))
    regions = [str(r) for r in ds["region"].values]
    periods = _x(ds)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["Reserve stock (t)", "Days of cover"])
    held = stock.sum("period").fillna(0.0)
    for stage in [str(s) for s in stock["stage"].values]:
        for name in [str(r) for r in stock["region"].values]:
            if name == WORLD or float(held.sel(stage=stage, region=name)) <= 0:
                continue
            color = "#5f3dc4" if name in regions else _group_color(name, blocs)
            label = f"{name} ({stage})"
            _line(
                fig,
                periods,
                stock.sel(stage=stage, region=name).values,
                label,
                col=1,
                line={"color": color},
                series=f"reserve_stock|{stage}|{name}",
                hover="%{y:,.0f} t",
            )
            _line(
                fig,
                periods,
                cover.sel(stage=stage, region=name).values,
                label,
                col=2,
                line={"color": color, "dash": "dot"},
                series=f"days_of_cover|{stage}|{name}",
                hover="%{y:,.0f} days",
                legend=False,
            )
    if not fig.data:
        fig.add_annotation(
            text="No strategic reserve holds this mineral in this run",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            font={"size": 14, "color": "#868e96"},
        )
    _layout(fig, f"{mineral}: strategic reserves")
    fig.update_yaxes(rangemode="tozero")
    return to_spec(fig)


def fiscal(ds: xr.Dataset) -> Figure:
    """Government outlays (floor payments, reserve purchases net of sales, investment support) by paying
    region, all minerals, million USD per period."""
    cost = fiscal_cost(ds)
    regions = [str(r) for r in ds["region"].values]
    by_region = cost.sel(region=regions).sum("mineral", min_count=1).fillna(0.0) / 1e6
    periods = _x(ds)
    fig = go.Figure()
    payers = [r for r in regions if float(np.abs(by_region.sel(region=r)).sum()) > 1e-9]
    for i, region in enumerate(payers):
        fig.add_trace(
            go.Bar(
                x=periods,
                y=by_region.sel(region=region).values,
                name=region,
                marker={"color": _PALETTE[i % len(_PALETTE)]},
                meta={"series": f"fiscal_cost|{region}"},
                hovertemplate="%{y:,.1f} M USD",
            )
        )
    if not payers:
        fig.add_annotation(
            text="No fiscal outlays in this run",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            font={"size": 14, "color": "#868e96"},
        )
    _layout(fig, "Fiscal cost by paying region, all minerals (million USD per period)")
    fig.update_layout(barmode="relative")
    return to_spec(fig)


def _region_color(region: str, members: set[str]) -> str:
    if region == "CHN":
        return "#c92a2a"
    if region in members:
        return "#1f5fa8"
    return "#868e96"


def sankey(ds: xr.Dataset, mineral: str, period: str | int | None = None, *, min_share: float = 0.002) -> Figure:
    """Shipments in one period from mine origin through each processing stage to the region of use (t).

    Nodes are (stage, region): the stage's output in a region, and finally ``use`` in a region. A link from
    (s, o) to (s+1, d) carries stage s shipped from o to d. Links below ``min_share`` of their stage's total
    are left out (they would not be visible).
    """
    stages = _stages(ds, mineral)
    periods = _periods(ds)
    label = str(period) if period is not None else periods[-1]
    if label not in periods:
        raise ValueError(f"period {label!r} is not in the run ({periods[0]}-{periods[-1]})")
    flow = ds["flow"].sel(mineral=mineral).isel(period=periods.index(label)).fillna(0.0)
    regions = [str(r) for r in ds["region"].values]
    members: set[str] = set()
    if "bloc_member" in ds:
        member = ds["bloc_member"].isel(period=periods.index(label)).any("bloc")
        members = {r for r, m in zip(regions, member.values, strict=True) if m}
    columns = [*stages, "use"]
    index: dict[tuple[str, str], int] = {}
    labels: list[str] = []
    colors: list[str] = []
    sources: list[int] = []
    targets: list[int] = []
    values: list[float] = []
    link_colors: list[str] = []

    def node(col: str, region: str) -> int:
        key = (col, region)
        if key not in index:
            index[key] = len(labels)
            labels.append(f"{col.capitalize()} · {region}")
            colors.append(_region_color(region, members))
        return index[key]

    for i, stage in enumerate(stages):
        block = flow.sel(stage=stage).transpose("region", "partner").values
        total = float(block.sum())
        if total <= 0:
            continue
        for o, origin in enumerate(regions):
            for d, dest in enumerate(regions):
                v = float(block[o, d])
                if v > min_share * total:
                    sources.append(node(stage, origin))
                    targets.append(node(columns[i + 1], dest))
                    values.append(v)
                    c = _region_color(origin, members)
                    link_colors.append(_hex_rgba(c, 0.35))
    # node positions: one column per stage (and use), nodes stacked by size within a column
    size = [0.0] * len(labels)
    for a, b, v in zip(sources, targets, values, strict=True):
        size[a] = max(size[a], 0.0) + v / 2
        size[b] = size[b] + v / 2
    xs = [0.0] * len(labels)
    ys = [0.0] * len(labels)
    for ci, column in enumerate(columns):
        in_column = sorted((n for (cc, _r), n in index.items() if cc == column), key=lambda n: -size[n])
        total = sum(size[n] for n in in_column) or 1.0
        cum = 0.0
        for k, n in enumerate(in_column):
            xs[n] = 0.001 + 0.998 * ci / max(len(columns) - 1, 1)
            ys[n] = 0.02 + 0.9 * (cum + size[n] / 2) / total + 0.06 * k / max(len(in_column), 1)
            cum += size[n]
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={"label": labels, "color": colors, "pad": 12, "thickness": 14, "x": xs, "y": ys},
            link={
                "source": sources,
                "target": targets,
                "value": values,
                "color": link_colors,
                "hovertemplate": "%{source.label} → %{target.label}: %{value:,.0f} t<extra></extra>",
            },
            meta={"series": f"sankey|{mineral}|{label}"},
        )
    )
    _layout(fig, f"{mineral}: trade flows by stage in {label} (t; red CHN, blue bloc members)", height=460)
    fig.update_layout(hovermode=False)
    return to_spec(fig)


@cache
def world_topojson() -> str:
    """The world topojson (110m, ISO3 ids) shipped with the package, as text."""
    return resources.files(ASSETS_PACKAGE).joinpath(f"{TOPOJSON_NAME}.json").read_text(encoding="utf-8")


@cache
def map_countries() -> tuple[str, ...]:
    """ISO3 codes of the countries drawn by the shipped topojson."""
    topo = json.loads(world_topojson())
    ids = [g.get("id") for g in topo["objects"]["countries"]["geometries"]]
    return tuple(sorted({str(i) for i in ids if isinstance(i, str) and len(i) == 3 and i.isalpha()}))


def region_countries(region_table: pd.DataFrame) -> dict[str, list[str]]:
    """Model region -> its member countries (ISO3) from a world's region table: a country is itself, an
    aggregate lists its ``members``, the remainder (``ROW``) gets every country of no other region."""
    out: dict[str, list[str]] = {}
    for row in region_table.itertuples(index=False):
        kind = str(getattr(row, "kind", "country"))
        members = getattr(row, "members", "")
        if kind == "aggregate" and isinstance(members, str) and members.strip():
            out[str(row.code)] = members.split()
        elif kind == "remainder":
            out[str(row.code)] = []
        else:
            out[str(row.code)] = [str(row.code)]
    return out


def country_regions(regions: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Country (ISO3) -> model region, from each region's member countries; countries of no region go to
    the remainder region (``ROW``) where the world has one."""
    out: dict[str, str] = {}
    for region, members in regions.items():
        for country in members:
            out[country] = region
    if "ROW" in regions:
        for country in map_countries():
            out.setdefault(country, "ROW")
    return out


def dependence_map(
    ds: xr.Dataset,
    mineral: str,
    supplier: str,
    regions: Mapping[str, Sequence[str]],
    period: str | int | None = None,
) -> Figure:
    """Each region's dependence on ``supplier`` (largest share of any stage's use traced to it at any step),
    drawn on its member countries."""
    periods = _periods(ds)
    label = str(period) if period is not None else periods[-1]
    if label not in periods:
        raise ValueError(f"period {label!r} is not in the run ({periods[0]}-{periods[-1]})")
    dep = dependence(ds, supplier).sel(supplier=supplier, mineral=mineral).isel(period=periods.index(label))
    share = dep.max("stage", skipna=True) * 100.0
    countries = country_regions(regions)
    codes = sorted(countries)
    values = []
    text = []
    for code in codes:
        region = countries[code]
        v = float(share.sel(region=region)) if region in share["region"].values else float("nan")
        values.append(None if np.isnan(v) else round(v, 2))
        text.append(f"{code} in {region}")
    fig = go.Figure(
        go.Choropleth(
            locations=codes,
            z=values,
            text=text,
            locationmode="ISO-3",
            colorscale="Reds",
            zmin=0,
            zmax=100,
            marker={"line": {"color": "white", "width": 0.4}},
            colorbar={"title": {"text": "%"}, "ticksuffix": "%"},
            hovertemplate="%{text}: %{z:.1f}%<extra></extra>",
            meta={"series": f"dependence|{mineral}|{supplier}|{label}"},
        )
    )
    _layout(fig, f"{mineral}: dependence on {supplier} in {label} (share of use traced to it)", height=430)
    fig.update_layout(
        hovermode="closest",
        geo={
            "projection": {"type": "natural earth"},
            "showframe": False,
            "showcoastlines": False,
            "showcountries": True,
            "countrycolor": "#ccc",
            "showland": True,
            "landcolor": "#f1f3f5",
            "lataxis": {"range": [-58, 85]},
            "center": {"lat": 15, "lon": 10},
        },
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return to_spec(fig)


def membership_map(members: Sequence[str], regions: Mapping[str, Sequence[str]], title: str) -> Figure:
    """Which countries belong to a set of regions (a bloc), for the scenario builder."""
    countries = country_regions(regions)
    chosen = set(members)
    codes = sorted(countries)
    fig = go.Figure(
        go.Choropleth(
            locations=codes,
            z=[1 if countries[c] in chosen else 0 for c in codes],
            text=[countries[c] for c in codes],
            customdata=[countries[c] for c in codes],
            locationmode="ISO-3",
            colorscale=[[0, "#e9ecef"], [1, "#1f5fa8"]],
            zmin=0,
            zmax=1,
            showscale=False,
            marker={"line": {"color": "white", "width": 0.4}},
            hovertemplate="%{location} (%{text})<extra></extra>",
        )
    )
    _layout(fig, title, height=330)
    fig.update_layout(
        hovermode="closest",
        geo={
            "projection": {"type": "natural earth"},
            "showframe": False,
            "showcoastlines": False,
            "lataxis": {"range": [-58, 85]},
            "center": {"lat": 15, "lon": 10},
        },
        margin={"l": 0, "r": 0, "t": 40, "b": 0},
    )
    return to_spec(fig)


def run_figures(
    ds: xr.Dataset,
    regions: Mapping[str, Sequence[str]],
    *,
    mineral: str | None = None,
    supplier: str = "CHN",
    period: str | int | None = None,
) -> dict[str, Figure]:
    """Every chart of one run (see the module docs)."""
    minerals = [str(m) for m in ds["mineral"].values]
    mineral = mineral or minerals[0]
    if mineral not in minerals:
        raise ValueError(f"mineral {mineral!r} is not in the run; it has {', '.join(minerals)}")
    one = ds.sel(mineral=[mineral])  # every chart but fiscal cost is of one mineral: compute on it alone
    return {
        "prices": price_paths(one, mineral),
        "shortfall": shortfall_by_sector(one, mineral),
        "reserve": reserve_cover(one, mineral),
        "fiscal": fiscal(ds),
        "sankey": sankey(one, mineral, period),
        "map": dependence_map(one, mineral, supplier, regions, period),
    }


# ------------------------------------------------------------------------------------------------------------
# ensembles and comparisons

_BAND_METRICS = {
    "price": ("Price of the last stage, use-weighted (USD/kg)", 1e-3, ""),
    "shortfall_share": ("Shortfall (% of reference demand unmet)", 100.0, "%"),
    "fiscal_cost": ("Fiscal cost (million USD per period)", 1e-6, ""),
    "reserve_stock": ("Reserve stock (t)", 1.0, ""),
}


def ensemble_figures(metrics: pd.DataFrame, mineral: str, groups: Sequence[str] | None = None) -> dict[str, Figure]:
    """P5-P95 bands and medians over draws of the per-draw headline metrics, by group, for one mineral.

    ``metrics`` is the long per-draw table (draw, metric, mineral, region, period, value, unit).
    """
    table = metrics[metrics["mineral"] == mineral]
    if table.empty:
        raise ValueError(f"no metrics for mineral {mineral!r} in this ensemble")
    names = list(groups) if groups is not None else list(dict.fromkeys(table["region"].astype(str)))
    out: dict[str, Figure] = {}
    for metric, (title, scale, suffix) in _BAND_METRICS.items():
        part = table[(table["metric"] == metric) & table["region"].isin(names)]
        fig = go.Figure()
        for i, name in enumerate(names):
            rows = part[part["region"] == name]
            if rows.empty or not np.isfinite(rows["value"].to_numpy(dtype=float)).any():
                continue
            q = rows.groupby("period")["value"].quantile(np.array([0.05, 0.5, 0.95])).unstack() * scale
            periods = [str(p) for p in q.index]
            color = _WORLD_COLOR if name == WORLD else _PALETTE[i % len(_PALETTE)]
            fig.add_trace(
                go.Scatter(
                    x=periods,
                    y=q[0.95].values,
                    mode="lines",
                    line={"width": 0},
                    showlegend=False,
                    hoverinfo="skip",
                    legendgroup=name,
                    meta={"series": f"{metric}|{name}|p95"},
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=periods,
                    y=q[0.05].values,
                    mode="lines",
                    line={"width": 0},
                    fill="tonexty",
                    fillcolor=_hex_rgba(color, 0.18),
                    name=f"{name} P5–P95",
                    legendgroup=name,
                    meta={"series": f"{metric}|{name}|p5"},
                    hovertemplate=f"P5 %{{y:,.2f}}{suffix}",
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=periods,
                    y=q[0.5].values,
                    mode="lines",
                    line={"color": color, "width": 2},
                    name=f"{name} median",
                    legendgroup=name,
                    meta={"series": f"{metric}|{name}|p50"},
                    hovertemplate=f"median %{{y:,.2f}}{suffix}",
                )
            )
        _layout(fig, f"{mineral}: {title}, P5–P95 over draws")
        fig.update_yaxes(rangemode="tozero")
        out[metric] = to_spec(fig)
    return out


def compare_figures(runs: Mapping[str, xr.Dataset], mineral: str, group: str = WORLD) -> dict[str, Figure]:
    """Price of the mineral's last stage and its shortfall in ``group`` (a bloc every run defines, or the
    world), one line per run."""
    price = go.Figure()
    short = go.Figure()
    for i, (name, ds) in enumerate(runs.items()):
        color = _PALETTE[i % len(_PALETTE)] if i else _WORLD_COLOR
        groups = membership(ds)
        g = group if group in groups["group"].values else WORLD
        stages = _stages(ds, mineral)
        last = stages[-1]
        p = (
            _group_mean(
                ds["price"].sel(mineral=mineral, stage=last), use(ds).sel(mineral=mineral, stage=last), groups
            ).sel(group=g)
            / 1000.0
        )
        unmet, ref = shortfall_parts(ds, groups)
        u = unmet.sel(mineral=mineral, region=g, sector="all").sum("stage", min_count=1)
        r = ref.sel(mineral=mineral, region=g, sector="all").sum("stage", min_count=1)
        periods = _x(ds)
        price.add_trace(
            go.Scatter(
                x=periods,
                y=p.values,
                name=name,
                mode="lines",
                line={"color": color},
                meta={"series": f"price|{name}"},
                hovertemplate="%{y:,.2f} USD/kg",
            )
        )
        short.add_trace(
            go.Scatter(
                x=periods,
                y=((u / r).where(r > 0) * 100.0).values,
                name=name,
                mode="lines",
                line={"color": color},
                meta={"series": f"shortfall|{name}"},
                hovertemplate="%{y:.1f}%",
            )
        )
    _layout(price, f"{mineral}: price of the last stage in {group} (USD/kg), by run")
    _layout(short, f"{mineral}: shortfall in {group} (% of reference demand), by run")
    price.update_yaxes(rangemode="tozero")
    short.update_yaxes(rangemode="tozero", ticksuffix="%")
    return {"prices": to_spec(price), "shortfall": to_spec(short)}


def headline_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """A headline table as JSON-ready records (NaN -> None)."""
    clean = table.astype(object).where(table.notna(), None)
    return [{str(k): v for k, v in row.items()} for row in clean.to_dict(orient="records")]
