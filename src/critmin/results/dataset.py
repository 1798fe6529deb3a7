"""Labelled results: a run as an xarray Dataset with named dimensions and a unit on every variable."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from critmin.core.errors import DataError
from critmin.simulate.run import RunRecord

#: Order of stages across minerals (a mineral without a stage has NaN there).
STAGE_ORDER = ("mine", "refine", "magnet")

VARIABLES: dict[str, tuple[str, str]] = {
    "price": ("USD/t", "market price of the stage's product delivered to the region (use-node dual)"),
    "producer_price": ("USD/t", "price received by the region's producers of the stage, free on board"),
    "production": ("t/yr", "output of the stage in the region (contained element)"),
    "processing_input": ("t/yr", "input of the stage's processors in the region (previous stage's product)"),
    "capacity": ("t/yr", "output capacity of the stage in the region"),
    "disposal": ("t/yr", "product stored or discarded at a zero price (free disposal) when nobody buys it"),
    "flow": ("t/yr", "shipments of the stage's product from region (origin) to partner (destination)"),
    "imports": ("t/yr", "shipments into the region from other regions"),
    "exports": ("t/yr", "shipments from the region to other regions"),
    "consumption": ("t/yr", "use by the sector in the region, at the stage the sector consumes"),
    "reference_demand": ("t/yr", "reference demand of the sector at base-year prices"),
    "iterations": ("1", "solver iterations for the mineral's period problem"),
    "residual": ("1", "worst relative equilibrium residual of the mineral's period problem"),
    "fixed_point_rounds": ("1", "solves needed by price-dependent policies (levies, budget caps) in the period"),
}

#: Accounting variables written by the instruments (``Ledger``): dims kind, unit, description.
LEDGER_VARIABLES: dict[str, tuple[str, str, str]] = {
    "fiscal_cost": (
        "region",
        "USD",
        "government outlays: floor payments, reserve purchases net of sales and "
        "holding cost, export subsidies, investment support",
    ),
    "floor_payment": ("stage_region", "USD", "CfD payments received by the region's eligible producers"),
    "tariff_revenue": ("region", "USD", "tariff and export-tax revenue collected by the region"),
    "export_subsidy": ("region", "USD", "cost of export subsidies (negative export taxes) to the region"),
    "levy_revenue": ("region", "USD", "reference-price levy collected on imports into the region"),
    "quota_rent": ("region", "USD", "export-quota rent (quota dual times volume) captured by the exporter"),
    "reserve_stock": ("stage_region", "t", "reserve stock at the end of the period, by location"),
    "reserve_purchase": ("stage_region", "t/yr", "reserve purchases"),
    "reserve_release": ("stage_region", "t/yr", "reserve releases"),
    "reserve_spent": ("region", "USD", "money spent on reserve purchases by the payer"),
    "reserve_recovered": ("region", "USD", "money recovered from reserve sales by the payer"),
    "reserve_holding_cost": ("region", "USD", "cost of holding the reserve stock"),
    "offtake_transfer": (
        "region_partner",
        "USD",
        "(contract - market price) x volume taken, buyer (region) to seller (partner)",
    ),
    "offtake_volume": ("region_partner", "t/yr", "volume taken under offtake contracts, buyer <- seller"),
    "investment_support": ("region", "USD", "public money committed to projects when they start"),
    "projects_started": ("stage_region", "1", "projects started in the period"),
    "project_output": ("stage_region", "t/yr", "output of pipeline projects"),
    "levy_iterations": ("scalar", "1", "fixed-point iterations of the reference-price levy"),
    "levy_residual": ("scalar", "1", "last relative change of the reference-price levy (<= tolerance)"),
}


def _stages(record: RunRecord) -> list[str]:
    present = {s for path in record.minerals.values() for s in path.stages}
    ordered = [s for s in STAGE_ORDER if s in present]
    return ordered + sorted(present - set(ordered))


def to_dataset(record: RunRecord) -> xr.Dataset:
    """Turn a run record into a Dataset with dims (mineral, stage, region, partner, sector, period)."""
    minerals = list(record.minerals)
    stages = _stages(record)
    regions = list(record.regions)
    sectors = list(record.sectors)
    periods = list(record.periods)
    M, S, R, K, P = len(minerals), len(stages), len(regions), len(sectors), len(periods)
    nan = np.nan
    price = np.full((M, S, R, P), nan)
    producer_price = np.full((M, S, R, P), nan)
    production = np.full((M, S, R, P), nan)
    capacity = np.full((M, S, R, P), nan)
    processing = np.full((M, S, R, P), nan)
    disposal = np.full((M, S, R, P), nan)
    flow = np.full((M, S, R, R, P), nan)
    consumption = np.full((M, S, R, K, P), nan)
    reference = np.full((M, S, R, K, P), nan)
    iterations = np.zeros((M, P), dtype=np.int64)
    residual = np.zeros((M, P))
    for i, m in enumerate(minerals):
        path = record.minerals[m]
        idx = [stages.index(s) for s in path.stages]
        price[i, idx] = np.moveaxis(path.price, 0, -1)
        producer_price[i, idx] = np.moveaxis(path.origin_price, 0, -1)
        production[i, idx] = np.moveaxis(path.production, 0, -1)
        capacity[i, idx] = np.moveaxis(path.capacity, 0, -1)
        processing[i, idx] = np.moveaxis(path.processing_input, 0, -1)
        processing[i, idx[0]] = nan  # mines have no processing input
        disposal[i, idx] = np.moveaxis(path.disposal, 0, -1)
        flow[i, idx] = np.moveaxis(path.flow, 0, -1)
        for k, stage in enumerate(record.sector_stage[m]):
            s = stages.index(stage)
            consumption[i, s, :, k] = path.consumption[:, :, k].T
            reference[i, s, :, k] = path.reference_demand[:, :, k].T
        iterations[i] = path.iterations
        residual[i] = path.residual
    diag = np.eye(R, dtype=bool)[None, None, :, :, None]
    offdiag = np.where(diag, 0.0, flow)
    ds = xr.Dataset(
        {
            "price": (("mineral", "stage", "region", "period"), price),
            "producer_price": (("mineral", "stage", "region", "period"), producer_price),
            "production": (("mineral", "stage", "region", "period"), production),
            "processing_input": (("mineral", "stage", "region", "period"), processing),
            "capacity": (("mineral", "stage", "region", "period"), capacity),
            "disposal": (("mineral", "stage", "region", "period"), disposal),
            "flow": (("mineral", "stage", "region", "partner", "period"), flow),
            "imports": (("mineral", "stage", "region", "period"), offdiag.sum(axis=2)),
            "exports": (("mineral", "stage", "region", "period"), offdiag.sum(axis=3)),
            "consumption": (("mineral", "stage", "region", "sector", "period"), consumption),
            "reference_demand": (("mineral", "stage", "region", "sector", "period"), reference),
            "iterations": (("mineral", "period"), iterations),
            "residual": (("mineral", "period"), residual),
        },
        coords={
            "mineral": minerals,
            "stage": stages,
            "region": regions,
            "partner": regions,
            "sector": sectors,
            "period": periods,
        },
        attrs={
            "scenario": record.scenario.name,
            "world": record.world_name,
            "base_year": record.base_year,
            "solver": record.solver,
            "wall_time_s": record.wall_time_s,
            "solve_time_s": record.solve_time_s,
        },
    )
    fixed_point = np.zeros((M, P), dtype=np.int64)
    for i, m in enumerate(minerals):
        fixed_point[i] = record.minerals[m].fixed_point_rounds
    ds["fixed_point_rounds"] = (("mineral", "period"), fixed_point)
    for name, (unit, description) in VARIABLES.items():
        ds[name].attrs.update(unit=unit, description=description)
    _add_ledger(ds, record, stages)
    if record.blocs:
        blocs = list(record.blocs)
        member = np.array([np.array(record.blocs[b], dtype=bool).T for b in blocs])  # (bloc, region, period)
        ds["bloc_member"] = (("bloc", "region", "period"), member)
        ds = ds.assign_coords(bloc=blocs)
        ds["bloc_member"].attrs.update(unit="1", description="membership of each bloc at mid-period")
    return ds


def _add_ledger(ds: xr.Dataset, record: RunRecord, stages: list[str]) -> None:
    minerals = list(record.minerals)
    regions = list(record.regions)
    periods = list(record.periods)
    region_index = {r: i for i, r in enumerate(regions)}
    stage_index = {s: i for i, s in enumerate(stages)}
    found: dict[str, np.ndarray] = {}
    for i, m in enumerate(minerals):
        for p, entries in enumerate(record.minerals[m].ledger):
            for (variable, stage, region, partner, _sector), value in entries.items():
                if variable not in LEDGER_VARIABLES:
                    raise KeyError(f"instrument wrote unknown ledger variable {variable!r}")
                kind = LEDGER_VARIABLES[variable][0]
                if variable not in found:
                    shape = {
                        "region": (len(minerals), len(regions), len(periods)),
                        "stage_region": (len(minerals), len(stages), len(regions), len(periods)),
                        "region_partner": (len(minerals), len(regions), len(regions), len(periods)),
                        "scalar": (len(minerals), len(periods)),
                    }[kind]
                    found[variable] = np.full(shape, np.nan) if kind == "scalar" else np.zeros(shape)
                arr = found[variable]
                if kind == "region":
                    arr[i, region_index[region], p] += value
                elif kind == "stage_region":
                    arr[i, stage_index[stage], region_index[region], p] += value
                elif kind == "region_partner":
                    arr[i, region_index[region], region_index[partner], p] += value
                else:
                    arr[i, p] = value if np.isnan(arr[i, p]) else max(arr[i, p], value)
    dims = {
        "region": ("mineral", "region", "period"),
        "stage_region": ("mineral", "stage", "region", "period"),
        "region_partner": ("mineral", "region", "partner", "period"),
        "scalar": ("mineral", "period"),
    }
    added: dict[str, xr.Variable] = {}
    for variable, arr in found.items():
        kind, unit, description = LEDGER_VARIABLES[variable]
        added[variable] = xr.Variable(dims[kind], arr, attrs={"unit": unit, "description": description})
    ds.update(added)  # one merge for all of them


LONG_COLUMNS = ["variable", "mineral", "stage", "region", "partner", "sector", "period", "value", "unit"]


#: Dimensions of metrics that are not columns of the long table: ``source``/``supplier`` go to ``partner``;
#: the others are appended to the variable name (``surplus_change.consumer``, ``origin_share.mine``).
_PARTNER_ALIASES = ("source", "supplier")


def to_long(ds: xr.Dataset, variables: list[str] | None = None, *, drop_zero_flows: bool = True) -> pd.DataFrame:
    """A tidy long table: one row per value, columns ``LONG_COLUMNS``; empty where a dimension does not apply.

    Missing values (a stage a mineral does not have, a sector that does not consume at a stage) are
    dropped; with ``drop_zero_flows`` so are routes that carry nothing (most of the route matrix). A bloc
    appears in ``region`` under its name. Dimensions outside the table's columns are folded: ``source`` and
    ``supplier`` into ``partner``, any other into the variable name (``name.value``).
    """
    frames = []
    for name in variables or [str(v) for v in ds.data_vars]:
        da = ds[name]
        if da.dtype == bool:
            da = da.astype(float)
        df = da.to_dataframe(name="value").reset_index()
        df = df[df["value"].notna()]
        if name == "flow" and drop_zero_flows:
            df = df[df["value"] != 0]
        for alias in _PARTNER_ALIASES:
            if alias in da.dims and "partner" not in da.dims:
                df = df.rename(columns={alias: "partner"})
        extra = [d for d in da.dims if d not in LONG_COLUMNS and d not in _PARTNER_ALIASES]
        if name == "bloc_member":
            df = df.rename(columns={"bloc": "partner"})
            extra = []
        variable = pd.Series(name, index=df.index)
        for dim in extra:
            variable = variable + "." + df[dim].astype(str)
        df.insert(0, "variable", variable)
        df["unit"] = da.attrs.get("unit", "")
        for col in LONG_COLUMNS:
            if col not in df.columns:
                df[col] = ""
        frames.append(df[LONG_COLUMNS])
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=LONG_COLUMNS)
    out["period"] = out["period"].astype(str)
    return out


#: Compressions of a CSV export, by the name's last ending (``results.csv.gz``).
_CSV_COMPRESSION: dict[str, Literal["gzip", "bz2", "zip", "xz"]] = {
    ".gz": "gzip",
    ".bz2": "bz2",
    ".zip": "zip",
    ".xz": "xz",
}


def export_format(path: str | Path) -> str:
    """``csv`` or ``parquet`` for an export path, checked before any work: a known ending (``.csv``,
    ``.csv.gz`` and the like, ``.parquet``) in a folder that exists. Raises :class:`DataError` otherwise."""
    path = Path(path)
    endings = [x.lower() for x in path.suffixes[-2:]]
    fmt = None
    if endings[-1:] == [".parquet"]:
        fmt = "parquet"
    elif endings[-1:] == [".csv"] or (endings[:1] == [".csv"] and endings[-1] in _CSV_COMPRESSION):
        fmt = "csv"
    if fmt is None:
        raise DataError(str(path), "--export", "name the file .csv (or .csv.gz, .csv.zip, ...) or .parquet")
    if not path.parent.is_dir():
        raise DataError(str(path), "--export", f"the folder {path.parent} does not exist")
    return fmt


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """Write ``table`` to ``path``, CSV or Parquet by its name (:func:`export_format`), atomically: nothing is
    left under ``path`` if the write fails."""
    path = Path(path)
    fmt = export_format(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        if fmt == "parquet":
            table.to_parquet(tmp, index=False)
        else:  # the compression from the real name (the ``.partial`` ending hides it from pandas)
            table.to_csv(tmp, index=False, compression=_CSV_COMPRESSION.get(path.suffix.lower()))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export_long(ds: xr.Dataset, path: str | Path, metrics: xr.Dataset | None = None) -> int:
    """Write the tidy long table (results, then metrics) to ``path`` (:func:`write_table`); returns the
    number of rows."""
    export_format(path)  # before building the table
    table = to_long(ds)
    if metrics is not None:
        table = pd.concat([table, to_long(metrics)], ignore_index=True)
    write_table(table, path)
    return len(table)


def summary_table(ds: xr.Dataset, periods: list[Any] | None = None) -> pd.DataFrame:
    """Headline figures per mineral and period: the last stage's world output (``output_t``) and use-weighted
    world price (``price_usd_per_kg``), and the end use of every stage (``end_use_t``: sectors buy at more
    than one stage of some minerals, e.g. primary and high-purity gallium) with its shortfall from reference
    demand (``shortfall_pct``)."""
    labels = list(ds["period"].values)  # years (2030) or sub-annual labels ("2030-Q1"), in order
    if periods is None:
        picked = sorted({0, len(labels) // 2, len(labels) - 1})
        periods = [labels[i] for i in picked]
    rows = []
    for m in ds["mineral"].values:
        sub = ds.sel(mineral=m)
        valid_stages = [s for s in sub["stage"].values if np.isfinite(sub["production"].sel(stage=s)).any()]
        last = valid_stages[-1]
        for p in periods:
            cons = sub["consumption"].sel(period=p).sum(("stage", "region", "sector"))
            ref = sub["reference_demand"].sel(period=p).sum(("stage", "region", "sector"))
            weights = sub["consumption"].sel(period=p, stage=last).sum("sector")
            price = sub["price"].sel(period=p, stage=last)
            wsum = float(weights.sum())
            mean_price = float((price * weights).sum() / wsum) if wsum > 0 else float("nan")
            rows.append(
                {
                    "mineral": str(m),
                    "period": p.item() if isinstance(p, np.generic) else p,
                    "stage": str(last),
                    "output_t": float(sub["production"].sel(period=p, stage=last).sum()),
                    "price_usd_per_kg": mean_price / 1000.0,
                    "end_use_t": float(cons),
                    "shortfall_pct": 100.0 * max(0.0, float(ref - cons)) / float(ref) if float(ref) > 0 else 0.0,
                }
            )
    return pd.DataFrame(rows)
