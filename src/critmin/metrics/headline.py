"""Headline figures of a run (a small table for side-by-side comparison) and every metric as one Dataset."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike

from critmin.metrics.core import (
    ALL_SECTORS,
    WORLD,
    BlocSpec,
    MetricError,
    MetricUnavailableError,
    bloc_names,
    list_metrics,
    membership,
    regions,
)
from critmin.metrics.cost import consumer_expenditure, consumer_expenditure_change, fiscal_cost, surplus_change
from critmin.metrics.influence import output_share, regions_relying
from critmin.metrics.shortfall import recovery_of, shortfall_parts
from critmin.metrics.tracing import dependence

#: Label of the all-minerals aggregate in the headline's mineral column (money only).
ALL_MINERALS = "all"
#: Stage whose output shares the headline reports.
HEADLINE_STAGE = "refine"
#: Supplier whose dependence the headline reports.
HEADLINE_SUPPLIER = "CHN"
HEADLINE_COLUMNS = ["metric", "mineral", "bloc", "unit", "value"]

#: Relative difference below which two runs' headline values count as the same: the solver's tolerance on
#: relative residuals (a smaller difference is rounding, such as -1.1e-16).
SAME_RELATIVE = 1e-9


def difference(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """``b - a``, with 0 where the two differ by at most :data:`SAME_RELATIVE` of the larger; NaN stays NaN."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = b - a
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(d) <= SAME_RELATIVE * np.maximum(np.abs(a), np.abs(b)), 0.0, d)


#: Headline rows: name -> (unit, definition). ``bloc`` is a bloc of the run or ``world``.
HEADLINE_DEFINITIONS: dict[str, tuple[str, str]] = {
    "shortfall_peak": (
        "1",
        "Peak over periods of the bloc's unmet demand over its reference demand, all stages and sectors of "
        "the mineral together.",
    ),
    "recovery_periods": ("periods", "Periods from that peak until the share falls below 1% (NaN: never)."),
    "dependence_CHN_last": (
        "1",
        "Dependence on CHN in the last period: the largest share of any stage's use traced to CHN at any "
        "step (mine origin or processing location).",
    ),
    "fiscal_cost_cumulative": ("USD", "Fiscal cost summed over periods (and over minerals for 'all')."),
    "consumer_expenditure_cumulative": ("USD", "Consumer expenditure summed over periods."),
    "consumer_expenditure_change_cumulative": (
        "USD",
        "Consumer expenditure minus the baseline's, summed over periods (with a baseline only).",
    ),
    "surplus_change_cumulative": (
        "USD",
        "Total surplus change against the baseline, summed over periods (with a baseline only).",
    ),
    "output_share_refine_last": ("1", "The bloc's share of world refined output in the last period."),
    "regions_relying_last": (
        "regions",
        "Regions outside the bloc tracing more than half of their use to it in the last period, largest over stages.",
    ),
}


def _rows(metric: str, values: xr.DataArray, applies: xr.DataArray | None = None) -> list[dict[str, object]]:
    """Rows of ``values`` (dims mineral, region) for one headline metric.

    A NaN value is left out where the row does not apply (a stage or bloc without data), and kept where
    ``applies`` says it does (NaN then carries meaning, e.g. never recovered).
    """
    unit = HEADLINE_DEFINITIONS[metric][0]
    rows: list[dict[str, object]] = []
    table = values.transpose("mineral", "region")
    for mineral in table["mineral"].values:
        for group in table["region"].values:
            value = float(table.sel(mineral=mineral, region=group))
            keep = value == value or (applies is not None and bool(applies.sel(mineral=mineral, region=group)))
            if keep:
                rows.append(
                    {"metric": metric, "mineral": str(mineral), "bloc": str(group), "unit": unit, "value": value}
                )
    return rows


def _with_all_minerals(money: xr.DataArray) -> xr.DataArray:
    total = money.sum("mineral", min_count=1).expand_dims(mineral=[ALL_MINERALS])
    return xr.concat([money, total.transpose(*money.dims)], dim="mineral")


def headline(ds: xr.Dataset, baseline: xr.Dataset | None = None, blocs: BlocSpec = None) -> pd.DataFrame:
    """Headline metrics of a run for resilience, cost and influence, per bloc and world.

    Parameters
    ----------
    ds
        Results Dataset.
    baseline
        Baseline results; the changes against it are reported only when it is given.
    blocs
        Extra blocs besides the run's ``bloc_member``.

    Returns
    -------
    pd.DataFrame
        Columns ``metric, mineral, bloc, unit, value`` (see :data:`HEADLINE_DEFINITIONS`); one row per
        mineral (and ``all`` minerals for money) and per bloc of the run and ``world`` (influence rows: blocs
        only). Rows that do not apply (NaN) are left out.
    """
    groups = membership(ds, blocs)
    group_names = [str(g) for g in groups["group"].values]
    blocs_only = bloc_names(groups)
    rows: list[dict[str, object]] = []

    unmet, ref = shortfall_parts(ds, groups)
    unmet_all = unmet.sel(sector=ALL_SECTORS, region=group_names).sum("stage", min_count=1)
    ref_all = ref.sel(sector=ALL_SECTORS, region=group_names).sum("stage", min_count=1)
    share = (unmet_all / ref_all).where(ref_all > 0)
    rows += _rows("shortfall_peak", share.max("period", skipna=True))
    rows += _rows("recovery_periods", recovery_of(share), applies=share.notnull().any("period"))
    if HEADLINE_SUPPLIER in regions(ds):
        dep = dependence(ds, HEADLINE_SUPPLIER, blocs=blocs).sel(supplier=HEADLINE_SUPPLIER, region=group_names)
        rows += _rows("dependence_CHN_last", dep.isel(period=-1).max("stage", skipna=True))

    def cumulative(da: xr.DataArray) -> xr.DataArray:
        return _with_all_minerals(da.sel(region=group_names).sum("period", min_count=1))

    rows += _rows("fiscal_cost_cumulative", cumulative(fiscal_cost(ds, blocs=blocs)))
    rows += _rows("consumer_expenditure_cumulative", cumulative(consumer_expenditure(ds, blocs=blocs)))
    if baseline is not None:
        change = consumer_expenditure_change(ds, baseline, blocs=blocs)
        rows += _rows("consumer_expenditure_change_cumulative", cumulative(change))
        surplus = surplus_change(ds, baseline, blocs=blocs).sel(component="total", drop=True)
        rows += _rows("surplus_change_cumulative", cumulative(surplus))

    if blocs_only:
        if HEADLINE_STAGE in ds["stage"].values:
            shares = output_share(ds, blocs=blocs).sel(stage=HEADLINE_STAGE, region=blocs_only)
            rows += _rows("output_share_refine_last", shares.isel(period=-1))
        relying = regions_relying(ds, blocs=blocs).sel(region=blocs_only).isel(period=-1)
        rows += _rows("regions_relying_last", relying.max("stage", skipna=True))
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)


#: Dimensions that runs compared side by side must share exactly (they come from the world).
_WORLD_DIMS = ("region", "sector")


def common_window(runs: Mapping[str, xr.Dataset]) -> tuple[dict[str, xr.Dataset], str | None]:
    """The runs restricted to the minerals and periods they all have, for a like-for-like comparison.

    Returns the runs (unchanged where they already agree) and a sentence saying what was left out, or None.
    A peak or a total over 2024-2040 is not comparable with one over 2024-2032, nor the costs of eleven
    minerals with those of one. Runs on worlds with other regions, stages or sectors cannot be compared:
    :class:`MetricError` naming the runs and the dimension; so are runs with no mineral or period in common.
    """
    items = list(runs.items())
    if len(items) < 2:
        return dict(runs), None
    first_name, first = items[0]
    for name, ds in items[1:]:
        for dim in _WORLD_DIMS:
            if dim in first.indexes and dim in ds.indexes and not first.indexes[dim].equals(ds.indexes[dim]):
                raise MetricError(
                    f"{name} and {first_name} have different {dim}s (runs on different worlds cannot be compared)"
                )
    common: dict[str, list[object]] = {}
    for dim in ("mineral", "period"):
        labels = list(first.indexes[dim])
        for _, ds in items[1:]:
            present = set(ds.indexes[dim])
            labels = [label for label in labels if label in present]
        if not labels:
            raise MetricError(f"the runs {', '.join(runs)} have no {dim} in common")
        common[dim] = labels
    # A run's stages are those of its minerals (a run of gallium alone has no magnet stage): keep the stages
    # every run has, unless a shared mineral has numbers at a stage that is dropped (another world).
    stages = [st for st in first.indexes["stage"] if all(st in ds.indexes["stage"] for _, ds in items[1:])]
    for name, ds in items:
        dropped = [st for st in ds.indexes["stage"] if st not in stages]
        if dropped and "production" in ds:
            held = ds["production"].sel(mineral=common["mineral"], stage=dropped).notnull().any()
            if bool(held):
                raise MetricError(
                    f"{name} has stages the other runs lack ({', '.join(map(str, dropped))}) for minerals they "
                    "share (runs on different worlds cannot be compared)"
                )
    same_stages = all(list(ds.indexes["stage"]) == stages for _, ds in items)
    left_out = []
    for name, ds in items:
        extra_minerals = [str(m) for m in ds.indexes["mineral"] if m not in common["mineral"]]
        extra_periods = [str(p) for p in ds.indexes["period"] if p not in common["period"]]
        if extra_minerals:
            left_out.append(f"{name}'s {', '.join(extra_minerals)}")
        if extra_periods:
            span = extra_periods[0] if len(extra_periods) == 1 else f"{extra_periods[0]}-{extra_periods[-1]}"
            left_out.append(f"{name}'s periods {span}")
    if not left_out and same_stages:
        return dict(runs), None
    out = {name: ds.sel(mineral=common["mineral"], period=common["period"], stage=stages) for name, ds in items}
    if not left_out:
        return out, None
    periods = common["period"]
    window = f"{periods[0]}" if len(periods) == 1 else f"{periods[0]}-{periods[-1]}"
    note = (
        f"compared over what every run has: {', '.join(str(m) for m in common['mineral'])}, {window} "
        f"(left out: {'; '.join(left_out)})"
    )
    return out, note


def compare(runs: Mapping[str, xr.Dataset], baseline: xr.Dataset | None = None, blocs: BlocSpec = None) -> pd.DataFrame:
    """Headline tables of several runs side by side.

    Parameters
    ----------
    runs
        Run name -> results Dataset.
    baseline
        Baseline results for the changes (the same baseline for every run).
    blocs
        Extra blocs besides each run's ``bloc_member``.

    Returns
    -------
    pd.DataFrame
        Index (metric, mineral, bloc); column ``unit`` then one column per run. A row that one run lacks (a
        bloc it does not define) is NaN in that run's column.
    """
    tables = []
    for name, ds in runs.items():
        table = headline(ds, baseline, blocs).set_index(["metric", "mineral", "bloc"])
        tables.append(table.rename(columns={"value": name}))
    if not tables:
        return pd.DataFrame(columns=["unit"])
    units = pd.concat([t["unit"] for t in tables]).groupby(level=[0, 1, 2], sort=False).first()
    values = pd.concat([t.drop(columns="unit") for t in tables], axis=1, join="outer", sort=False)
    return pd.concat([units.rename("unit"), values], axis=1).loc[values.index]


def compute_all(ds: xr.Dataset, baseline: xr.Dataset | None = None, blocs: BlocSpec = None) -> xr.Dataset:
    """Every registered metric, computed with its defaults, as one Dataset (for export).

    Metrics that need what the run lacks (a baseline, an ``eu`` bloc, a supplier to trace) are left out and
    named in the attribute ``skipped``.

    Parameters
    ----------
    ds
        Results Dataset.
    baseline
        Baseline results for the metrics of change.
    blocs
        Extra blocs besides the run's ``bloc_member``.

    Returns
    -------
    xr.Dataset
        One variable per metric under its registry name, each with ``unit`` and ``description``; the
        region dimension holds the regions, then the blocs, then ``world``.
    """
    arrays: list[xr.DataArray] = []
    skipped: list[str] = []
    for metric in list_metrics():
        try:
            arrays.append(metric.compute(ds, baseline, blocs))
        except MetricUnavailableError:
            skipped.append(metric.name)
    aligned = xr.align(*arrays, join="exact")  # every metric labels regions, stages, ... alike
    out = xr.Dataset({str(a.name): a for a in aligned})
    out.attrs = {
        "source_scenario": str(ds.attrs.get("scenario", "")),
        "blocs": ", ".join(bloc_names(membership(ds, blocs))),
        "world_label": WORLD,
        "skipped": ", ".join(skipped),
    }
    return out
