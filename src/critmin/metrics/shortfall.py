"""Shortfall: unmet reference demand by sector, region, bloc and world; its peak, cumulative loss and the
periods it takes to recover (resistance and rapidity, in the language of resilience frameworks)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from critmin.core.arrays import FloatArray
from critmin.metrics.core import (
    ALL_SECTORS,
    CANONICAL_DIMS,
    BlocSpec,
    extend_sum,
    finish,
    membership,
    order_dims,
    register,
)

#: Shortfall share below which a market counts as recovered.
RECOVERY_THRESHOLD = 0.01


def shortfall_parts(ds: xr.Dataset, groups: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """Unmet demand and reference demand (t/yr) by mineral, stage, region (+groups), sector (+``all``),
    period. Unmet demand is ``max(0, reference_demand - consumption)``; NaN where a sector does not consume
    at the stage."""
    ref = ds["reference_demand"]
    unmet = (ref - ds["consumption"]).clip(min=0.0).where(ref.notnull())
    parts = []
    for da in (unmet, ref):
        total = da.sum("sector", min_count=1).expand_dims(sector=[ALL_SECTORS])
        by_sector = xr.concat([da, total.transpose(*da.dims)], dim="sector")
        parts.append(extend_sum(by_sector, groups))
    return parts[0], parts[1]


@register(
    "shortfall_share",
    "1",
    "Unmet share of reference demand, max(0, reference_demand - consumption) / reference_demand, by sector "
    "('all' = every sector consuming at the stage) and region; for a bloc or the world, the members' unmet "
    "demand summed over their reference demand (a surplus in one member does not offset another's "
    "shortfall). NaN where reference demand is zero or the sector does not consume at the stage.",
    category="shortfall",
)
def shortfall_share(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Shortfall share by mineral, stage, region (+blocs, world), sector (+``all``) and period.

    Parameters
    ----------
    ds
        Results Dataset.
    blocs
        Extra blocs besides the run's ``bloc_member``.

    Returns
    -------
    xr.DataArray
        ``shortfall_share`` in [0, 1].
    """
    unmet, ref = shortfall_parts(ds, membership(ds, blocs))
    share = (unmet / ref).where(ref > 0)
    return finish(order_dims(share, CANONICAL_DIMS), "shortfall_share")


@register(
    "shortfall_peak",
    "1",
    "Largest shortfall share over the periods of the run (resistance).",
    category="shortfall",
)
def shortfall_peak(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Peak of :func:`shortfall_share` over periods, by mineral, stage, region and sector."""
    share = shortfall_share(ds, blocs=blocs)
    return finish(share.max("period", skipna=True), "shortfall_peak")


@register(
    "shortfall_cumulative",
    "t",
    "Unmet demand summed over the periods of the run, each period counting as one year "
    "(sum_t max(0, reference_demand - consumption) x 1 yr).",
    category="shortfall",
)
def shortfall_cumulative(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Cumulative unmet demand by mineral, stage, region and sector, in tonnes."""
    unmet, _ = shortfall_parts(ds, membership(ds, blocs))
    return finish(order_dims(unmet.sum("period", min_count=1), CANONICAL_DIMS), "shortfall_cumulative")


@register(
    "shortfall_share_years",
    "yr",
    "Shortfall share summed over the periods of the run, each period counting as one year (share-years: "
    "0.2 for two years = 0.4).",
    category="shortfall",
)
def shortfall_share_years(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Cumulative shortfall share by mineral, stage, region and sector, in share-years."""
    share = shortfall_share(ds, blocs=blocs)
    return finish(share.sum("period", min_count=1), "shortfall_share_years")


def periods_to_recover(series: FloatArray, threshold: float = RECOVERY_THRESHOLD) -> float:
    """Periods from the (first) peak of ``series`` to the first later period whose value is below
    ``threshold``; 0 if the peak itself is below it, NaN if the series never recovers or is all NaN."""
    if not np.isfinite(series).any():
        return float("nan")
    peak = int(np.nanargmax(series))
    if series[peak] < threshold:
        return 0.0
    below = np.flatnonzero(series[peak + 1 :] < threshold)
    return float(below[0] + 1) if below.size else float("nan")


def recovery_of(share: xr.DataArray, threshold: float = RECOVERY_THRESHOLD) -> xr.DataArray:
    """Apply :func:`periods_to_recover` along ``period`` of any shortfall-share array."""

    def along_last(values: FloatArray) -> FloatArray:
        flat = values.reshape(-1, values.shape[-1])
        out = np.array([periods_to_recover(row, threshold) for row in flat])
        return out.reshape(values.shape[:-1])

    return xr.apply_ufunc(along_last, share, input_core_dims=[["period"]])


@register(
    "recovery_periods",
    "periods",
    "Periods from the peak shortfall share until the share first falls back below the recovery threshold "
    "(default 1%); 0 if the peak is below the threshold, NaN if it never recovers within the run "
    "(rapidity).",
    category="shortfall",
)
def recovery_periods(ds: xr.Dataset, *, threshold: float = RECOVERY_THRESHOLD, blocs: BlocSpec = None) -> xr.DataArray:
    """Periods to recover by mineral, stage, region and sector.

    Parameters
    ----------
    ds
        Results Dataset.
    threshold
        Shortfall share below which the market counts as recovered.
    blocs
        Extra blocs besides the run's ``bloc_member``.
    """
    share = shortfall_share(ds, blocs=blocs)
    out = recovery_of(share, threshold)
    return finish(order_dims(out, CANONICAL_DIMS), "recovery_periods", threshold=threshold)
