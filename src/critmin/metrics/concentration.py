"""Concentration of production (HHI, top producer's share) and import reliance."""

from __future__ import annotations

import numpy as np
import xarray as xr

from critmin.metrics.core import (
    CANONICAL_DIMS,
    BlocSpec,
    extend_sum,
    finish,
    membership,
    order_dims,
    register,
    use,
)


def production_share(ds: xr.Dataset) -> xr.DataArray:
    """(mineral, stage, region, period) each region's share of world output; NaN where none is made."""
    production = ds["production"]
    world = production.sum("region", min_count=1)
    return (production / world).where(world > 0)


@register(
    "hhi",
    "1",
    "Herfindahl-Hirschman index of output shares across regions, sum_r (100 x share_r)^2, from 0 to "
    "10,000 (one producer); NaN where the stage is missing or nothing is made.",
    category="concentration",
)
def hhi(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """HHI of production by mineral, stage and period.

    Parameters
    ----------
    ds
        Results Dataset.
    blocs
        Unused (concentration is over individual regions); accepted for a uniform signature.
    """
    share = production_share(ds)
    out = ((100.0 * share) ** 2).sum("region", min_count=1)
    return finish(order_dims(out, CANONICAL_DIMS), "hhi")


@register(
    "top_share",
    "1",
    "Largest single region's share of world output (coordinate top_region names it).",
    category="concentration",
)
def top_share(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Top producer's share by mineral, stage and period, with a ``top_region`` coordinate ('' where NaN).

    Parameters
    ----------
    ds
        Results Dataset.
    blocs
        Unused (concentration is over individual regions); accepted for a uniform signature.
    """
    share = order_dims(production_share(ds), ("mineral", "stage", "period", "region"))
    values = share.values
    valid = np.isfinite(values).any(axis=-1)
    best = np.argmax(np.where(np.isfinite(values), values, -np.inf), axis=-1)
    top = np.take_along_axis(values, best[..., None], axis=-1)[..., 0]
    labels = np.asarray(share["region"].values, dtype=object)[best]
    out = xr.DataArray(
        np.where(valid, top, np.nan),
        dims=("mineral", "stage", "period"),
        coords={d: share[d].values for d in ("mineral", "stage", "period")},
    )
    out = out.assign_coords(top_region=(("mineral", "stage", "period"), np.where(valid, labels, "").astype(str)))
    return finish(order_dims(out, CANONICAL_DIMS), "top_share")


@register(
    "import_reliance",
    "1",
    "max(0, use - production) / use at the stage, with use = consumption + processing input; for a bloc or "
    "the world, members' totals (trade inside the bloc nets out). NaN where use is zero.",
    category="concentration",
)
def import_reliance(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Net import reliance by mineral, stage, region (+blocs, world) and period.

    Parameters
    ----------
    ds
        Results Dataset.
    blocs
        Extra blocs besides the run's ``bloc_member``.
    """
    groups = membership(ds, blocs)
    used = use(ds)
    production = ds["production"].where(used.notnull())
    # the gap is taken on a bloc's totals, so that trade between its members nets out
    used_g = extend_sum(used, groups)
    made_g = extend_sum(production, groups)
    gap = (used_g - made_g).clip(min=0.0)
    out = (gap / used_g).where(used_g > 0)
    return finish(order_dims(out, CANONICAL_DIMS), "import_reliance")
