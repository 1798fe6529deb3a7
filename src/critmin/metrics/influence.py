"""Influence: shares of world output, regions that rely on a supplier, rents captured."""

from __future__ import annotations

import numpy as np
import xarray as xr

from critmin.metrics.core import (
    CANONICAL_DIMS,
    BlocSpec,
    extend_sum,
    finish,
    inflow,
    membership,
    optional,
    order_dims,
    regions,
    register,
    stage_exists,
)
from critmin.metrics.tracing import region_origin_shares

#: A region relies on a supplier when more than this share of its use traces to it.
RELIANCE_THRESHOLD = 0.5


@register(
    "output_share",
    "1",
    "Share of world output of the stage made in the region, or by a bloc's members.",
    category="influence",
)
def output_share(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Output share by mineral, stage, region (+blocs, world) and period; NaN where nothing is made."""
    made = extend_sum(ds["production"], membership(ds, blocs))
    world = ds["production"].sum("region", min_count=1)
    out = (made / world).where(world > 0)
    return finish(order_dims(out, CANONICAL_DIMS), "output_share")


def supplier_masks(ds: xr.Dataset, groups: xr.DataArray) -> xr.DataArray:
    """(supplier, source, period) bool: every region alone, then every group, as a set of source regions."""
    names = regions(ds)
    alone = np.broadcast_to(np.eye(len(names), dtype=bool)[:, :, None], (len(names), len(names), ds.sizes["period"]))
    masks = np.concatenate([alone, groups.transpose("group", "region", "period").values], axis=0)
    return xr.DataArray(
        masks,
        dims=("supplier", "source", "period"),
        coords={
            "supplier": names + [str(g) for g in groups["group"].values],
            "source": names,
            "period": ds["period"].values,
        },
    )


@register(
    "regions_relying",
    "regions",
    "Number of regions outside the supplier (a region, or a bloc's non-members in that period) that trace "
    "more than half of their use of the stage to it, at the step where their dependence on it is "
    "largest (mine origin or a processing location); regions that use none of the stage do not count.",
    category="influence",
)
def regions_relying(ds: xr.Dataset, *, threshold: float = RELIANCE_THRESHOLD, blocs: BlocSpec = None) -> xr.DataArray:
    """Regions relying on each region, bloc and the world, by mineral, stage and period.

    Parameters
    ----------
    ds
        Results Dataset.
    threshold
        Share of use above which a region relies on a supplier.
    blocs
        Extra blocs besides the run's ``bloc_member``.

    Returns
    -------
    xr.DataArray
        ``regions_relying`` (mineral, stage, region, period), the region dimension naming the supplier.
    """
    groups = membership(ds, blocs)
    masks = supplier_masks(ds, groups)
    shares = region_origin_shares(ds).fillna(0.0)
    traced = xr.dot(shares, masks.astype(float), dim="source").max("step")
    # a supplier's own members are not counted as relying on it
    member = masks.rename(source="region")
    relying = (traced > threshold) & ~member & (inflow(ds) > 0)
    out = relying.sum("region").rename(supplier="region").astype(float)
    out = out.where(stage_exists(ds))
    return finish(order_dims(out, CANONICAL_DIMS), "regions_relying", threshold=threshold)


@register(
    "rents_captured",
    "USD",
    "Rents accruing to the region or a bloc's members in the period: quota rents + levy revenue + tariff revenue.",
    category="influence",
)
def rents_captured(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Rents captured by mineral, region (+blocs, world) and period."""
    rents = optional(ds, "quota_rent") + optional(ds, "levy_revenue") + optional(ds, "tariff_revenue")
    out = extend_sum(rents, membership(ds, blocs))
    return finish(order_dims(out, CANONICAL_DIMS), "rents_captured")
