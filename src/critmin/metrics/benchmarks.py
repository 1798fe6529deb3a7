"""Benchmarks: the EU's 2030 target of the Critical Raw Materials Act, that at most 65% of the Union's
annual use of a strategic raw material at any stage comes from a single third country."""

from __future__ import annotations

import numpy as np
import xarray as xr

from critmin.metrics.core import (
    CANONICAL_DIMS,
    BlocSpec,
    MetricUnavailableError,
    finish,
    inflow,
    membership,
    order_dims,
    regions,
    register,
    resolve,
)
from critmin.metrics.tracing import region_origin_shares

#: The EU's 2030 limit on the share of use from one third country, per stage.
EU_SINGLE_SUPPLIER_LIMIT = 0.65


def eu_selector(ds: xr.Dataset, groups: xr.DataArray) -> str:
    """The bloc ``eu`` where the run defines it, else the aggregate region ``EU``."""
    if "eu" in groups["group"].values:
        return "eu"
    if "EU" in regions(ds):
        return "EU"
    raise MetricUnavailableError("the EU benchmark needs a bloc 'eu' or a region 'EU'")


def single_supplier_share(ds: xr.Dataset, bloc: str, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Largest share of a bloc's use of each stage made in one region outside the bloc.

    The share is read from origin tracing at the stage's own producing location (the mine origin for the
    mine stage, the refining location for refined product, ...), over the bloc's members' use weighted by
    their inflows; the regions outside the bloc in that period are the third countries.

    Parameters
    ----------
    ds
        Results Dataset.
    bloc
        A selector naming the user (a bloc, a region, a list).
    blocs
        Extra blocs besides the run's ``bloc_member``.

    Returns
    -------
    xr.DataArray
        (mineral, stage, period) share, with coordinate ``top_supplier`` ('' where the bloc uses none of
        the stage).
    """
    groups = membership(ds, blocs)
    members = resolve(ds, bloc, groups)
    shares = region_origin_shares(ds)
    own_step = xr.concat(
        [shares.sel(stage=s, step=s, drop=True) for s in shares["stage"].values], dim="stage"
    ).assign_coords(stage=shares["stage"].values)
    weight = inflow(ds).where(members)
    den = weight.sum("region", min_count=1)
    by_source = ((own_step * weight).sum("region", min_count=1) / den).where(den > 0)
    third = by_source.where(~members.rename(region="source"))
    third = order_dims(third, ("mineral", "stage", "period", "source"))
    values = third.values
    valid = np.isfinite(values).any(axis=-1)
    best = np.argmax(np.where(np.isfinite(values), values, -np.inf), axis=-1)
    top = np.take_along_axis(values, best[..., None], axis=-1)[..., 0]
    labels = np.asarray(third["source"].values, dtype=object)[best]
    dims = ("mineral", "stage", "period")
    out = xr.DataArray(
        np.where(valid, top, np.nan), dims=dims, coords={d: third[d].values for d in dims}
    ).assign_coords(top_supplier=(dims, np.where(valid, labels, "").astype(str)))
    return order_dims(out, CANONICAL_DIMS)


@register(
    "eu_single_supplier_share",
    "1",
    "Largest share of the EU's use of the stage whose producing location (mine origin for the mine stage, "
    "processing location otherwise) is one single third country (coordinate top_supplier); the EU is the "
    "bloc 'eu', or the region 'EU'. NaN where the EU uses none of the stage.",
    category="benchmarks",
)
def eu_single_supplier_share(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """The EU's largest single-third-country share by mineral, stage and period."""
    bloc = eu_selector(ds, membership(ds, blocs))
    return finish(single_supplier_share(ds, bloc, blocs=blocs), "eu_single_supplier_share", bloc=bloc)


@register(
    "eu_2030_pass",
    "1",
    "EU 2030 benchmark per stage: 1 where the largest single-third-country share of the EU's use is at "
    "most 65%, 0 where it exceeds it, NaN where the EU uses none of the stage.",
    category="benchmarks",
)
def eu_2030_pass(ds: xr.Dataset, *, limit: float = EU_SINGLE_SUPPLIER_LIMIT, blocs: BlocSpec = None) -> xr.DataArray:
    """Pass (1) or fail (0) of the EU's single-supplier limit by mineral, stage and period.

    Parameters
    ----------
    ds
        Results Dataset.
    limit
        Largest share allowed from one third country.
    blocs
        Extra blocs besides the run's ``bloc_member``.
    """
    share = eu_single_supplier_share(ds, blocs=blocs)
    out = xr.where(share <= limit, 1.0, 0.0).where(share.notnull())
    return finish(out, "eu_2030_pass", limit=limit, bloc=share.attrs["bloc"])
