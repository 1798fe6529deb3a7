"""Prices by stage, region and bloc; spikes against a baseline; gaps between blocs."""

from __future__ import annotations

from collections.abc import Sequence

import xarray as xr

from critmin.metrics.core import (
    CANONICAL_DIMS,
    BlocSpec,
    MetricUnavailableError,
    bloc_names,
    check_same_labels,
    extend_mean,
    finish,
    membership,
    order_dims,
    register,
    resolve,
    use,
)


def _grouped_price(ds: xr.Dataset, groups: xr.DataArray) -> xr.DataArray:
    return extend_mean(ds["price"], use(ds), groups)


@register(
    "price",
    "USD/t",
    "Price of the stage's product delivered to the region (use-node price); for a bloc or the world, the "
    "use-weighted mean of its members' prices, use = consumption + processing input at that stage.",
    category="prices",
)
def price(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Prices by mineral, stage, region (regions, then blocs and world) and period.

    Parameters
    ----------
    ds
        Results Dataset.
    blocs
        Extra blocs (name -> members) besides the run's ``bloc_member``.

    Returns
    -------
    xr.DataArray
        ``price`` (mineral, stage, region, period) in USD/t; NaN where a mineral lacks the stage or a bloc
        uses none of it.
    """
    groups = membership(ds, blocs)
    return finish(order_dims(_grouped_price(ds, groups), CANONICAL_DIMS), "price")


@register(
    "price_change",
    "1",
    "Price relative to the baseline run in the same period, minus one (0.5 = 50% above baseline); bloc "
    "prices are use-weighted in each run, with the run's bloc membership.",
    needs_baseline=True,
    category="prices",
)
def price_change(ds: xr.Dataset, baseline: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Relative price change against ``baseline`` by mineral, stage, region/bloc and period.

    Parameters
    ----------
    ds, baseline
        Results of the run and of its baseline; their labels must agree exactly.
    blocs
        Extra blocs besides the run's ``bloc_member`` (the run's membership applies to both).

    Returns
    -------
    xr.DataArray
        ``price_change`` (mineral, stage, region, period), a fraction; NaN where the baseline price is 0.
    """
    check_same_labels(ds, baseline, ["price", "flow"])
    groups = membership(ds, blocs)
    p1 = _grouped_price(ds, groups)
    p0 = _grouped_price(baseline, groups)
    out = (p1 / p0 - 1.0).where(p0 != 0)
    return finish(order_dims(out, CANONICAL_DIMS), "price_change")


@register(
    "price_spike",
    "1",
    "Peak over the periods of the price relative to the baseline, minus one: max_t p(t)/p0(t) - 1.",
    needs_baseline=True,
    category="prices",
)
def price_spike(ds: xr.Dataset, baseline: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Peak relative price change against ``baseline`` by mineral, stage and region/bloc.

    Returns
    -------
    xr.DataArray
        ``price_spike`` (mineral, stage, region), a fraction (negative when prices only fell).
    """
    change = price_change(ds, baseline, blocs=blocs)
    return finish(change.max("period", skipna=True), "price_spike")


@register(
    "price_gap",
    "USD/t",
    "Difference between the use-weighted prices of two sets of regions (default: each bloc minus the "
    "rest of the world, 'not <bloc>').",
    category="prices",
)
def price_gap(
    ds: xr.Dataset,
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    blocs: BlocSpec = None,
) -> xr.DataArray:
    """Price gap between pairs of selectors, by mineral, stage and period.

    Parameters
    ----------
    ds
        Results Dataset.
    pairs
        ``(first, second)`` selectors (a region, a bloc, ``"not <bloc>"``, ``"world"``); the gap is the
        price of ``first`` minus that of ``second``. Default: every bloc against ``"not <bloc>"``.
    blocs
        Extra blocs besides the run's ``bloc_member``.

    Returns
    -------
    xr.DataArray
        ``price_gap`` (pair, mineral, stage, period) in USD/t, with coordinates ``first`` and ``second``
        along ``pair`` (labelled ``"first - second"``).
    """
    groups = membership(ds, blocs)
    if pairs is None:
        pairs = [(b, f"not {b}") for b in bloc_names(groups)]
    if not pairs:
        raise MetricUnavailableError("price_gap: no pair to compare (the run defines no bloc)")
    weight = use(ds)
    p = ds["price"]
    gaps = []
    for first, second in pairs:
        means = []
        for selector in (first, second):
            mask = resolve(ds, selector, groups)
            w = weight.where(p.notnull()).where(mask)
            den = w.sum("region", min_count=1)
            means.append(((p * w).sum("region", min_count=1) / den).where(den > 0))
        gaps.append(means[0] - means[1])
    labels = [f"{a} - {b}" for a, b in pairs]
    out = xr.concat(gaps, dim="pair", coords="minimal")
    out = out.assign_coords(pair=labels, first=("pair", [a for a, _ in pairs]), second=("pair", [b for _, b in pairs]))
    return finish(order_dims(out, ("pair", *CANONICAL_DIMS)), "price_gap")
