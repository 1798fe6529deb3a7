"""Origin tracing by proportional mixing through the stages, and dependence on a named supplier.

The product at the use node ``(s, d)`` (stage ``s`` delivered to region ``d``) is a flow-weighted mix of the
origin nodes ``(s, o)`` that ship to it. The origin node of a mine is pure: all of it was mined in ``o``. The
origin node ``(s, o)`` of a processing stage carries the composition of its region's use node ``(s-1, o)``,
the input it processed, and adds one more location: stage ``s`` was made in ``o``. Composing the flow-share
matrices along the chain gives, for each use node and each earlier *step* (the mine, or a processing
stage), the share of the product whose step took place in each source region.

Choices (also in ``docs/metrics.md``):

- Every unit of a use node's product has the same composition (proportional mixing): consumption, processing
  and reserve purchases draw the same mix; reserve releases are assumed to share it too.
- A processing origin node whose region received none of the input stage (it processed released reserve
  stock) is attributed to its own region at every earlier step, since the stock's origin is not recorded.
- A use node that receives nothing has no composition (NaN).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from critmin.core.arrays import FloatArray
from critmin.metrics.core import (
    CANONICAL_DIMS,
    BlocSpec,
    MetricError,
    MetricUnavailableError,
    bloc_names,
    extend_mean,
    finish,
    inflow,
    membership,
    mineral_stages,
    order_dims,
    regions,
    register,
    resolve,
)


def _compose(flow: FloatArray) -> FloatArray:
    """Origin shares for one mineral's chain.

    Parameters
    ----------
    flow
        (S, R, R, P) shipments of each stage from origin to destination, stages in chain order.

    Returns
    -------
    FloatArray
        (S, S, R, R, P): ``out[s, j, d, k, p]`` is the share of the stage-``s`` product delivered to ``d``
        whose step ``j`` took place in ``k``; NaN for ``j > s`` and where ``d`` receives nothing.
    """
    S, R, _, P = flow.shape
    out = np.full((S, S, R, R, P), np.nan)
    received = flow.sum(axis=1)  # (S, D, P)
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = flow / received[:, None, :, :]  # (S, O, D, P), NaN columns where d receives nothing
    eye = np.broadcast_to(np.eye(R)[None], (P, R, R))
    for step in range(S):
        carried = eye  # (P, O, K): composition of each origin node at stage ``step``
        for stage in range(step, S):
            if stage > step:
                previous = out[stage - 1, step].transpose(2, 0, 1)  # (P, O, K)
                unknown = ~np.isfinite(previous).all(axis=-1, keepdims=True)
                carried = np.where(unknown, eye, previous)
            # an origin that ships nothing contributes nothing, whatever its composition
            mixed = np.einsum("odp,pok->dkp", np.nan_to_num(weight[stage]), carried)
            valid = received[stage] > 0  # (D, P)
            out[stage, step] = np.where(valid[:, None, :], mixed, np.nan)
    return out


def region_origin_shares(ds: xr.Dataset) -> xr.DataArray:
    """(mineral, stage, step, region, source, period) origin shares over individual regions, no groups."""
    names = regions(ds)
    stage_labels = [str(s) for s in ds["stage"].values]
    flow = ds["flow"].transpose("mineral", "stage", "region", "partner", "period").values
    M, S, R, _, P = flow.shape
    out = np.full((M, S, S, R, R, P), np.nan)
    for i, present in enumerate(mineral_stages(ds).values()):
        idx = [stage_labels.index(s) for s in present]
        if not idx:
            continue
        traced = _compose(flow[i][idx])
        out[i][np.ix_(idx, idx)] = traced
    return xr.DataArray(
        out,
        dims=("mineral", "stage", "step", "region", "source", "period"),
        coords={
            "mineral": ds["mineral"].values,
            "stage": stage_labels,
            "step": stage_labels,
            "region": names,
            "source": names,
            "period": ds["period"].values,
        },
    )


def _group_users(shares: xr.DataArray, ds: xr.Dataset, groups: xr.DataArray) -> xr.DataArray:
    """Append groups of users along ``region``: the inflow-weighted mean of their members' shares."""
    return extend_mean(shares, inflow(ds), groups)


@register(
    "origin_share",
    "1",
    "Share of the region's use of the stage whose step (mine origin, or location of a processing stage) "
    "took place in the source region or bloc, by proportional mixing of flows through the chain; NaN "
    "where the step comes after the stage or the region receives none of the stage. A bloc or the world "
    "as user: the inflow-weighted mean of its members; as source: the sum over its members.",
    category="tracing",
)
def origin_share(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Origin shares by mineral, stage, step, region (user), source and period.

    Parameters
    ----------
    ds
        Results Dataset.
    blocs
        Extra blocs besides the run's ``bloc_member``.

    Returns
    -------
    xr.DataArray
        ``origin_share`` with dims (mineral, stage, step, region, source, period); ``step`` is labelled by
        stage (``mine`` = mine origin, ``refine`` = refining location, ...). Over individual source regions
        the shares sum to 1 wherever the user receives the stage.
    """
    groups = membership(ds, blocs)
    shares = region_origin_shares(ds)
    by_source = shares.where(groups.rename(region="source")).sum("source", min_count=1)
    by_source = by_source.where(shares.notnull().any("source")).rename(group="source")
    with_sources = xr.concat([shares, by_source.transpose(*shares.dims)], dim="source")
    out = _group_users(with_sources, ds, groups)
    return finish(order_dims(out, CANONICAL_DIMS), "origin_share")


def default_suppliers(ds: xr.Dataset, groups: xr.DataArray) -> list[str]:
    """``CHN`` where it is a region, then every bloc."""
    return (["CHN"] if "CHN" in regions(ds) else []) + bloc_names(groups)


@register(
    "dependence",
    "1",
    "Share of the region's use of the stage traced to the supplier (a region, a bloc or 'not <bloc>'): at "
    "a given step (mine origin or a processing location), or by default the largest share over the steps "
    "up to the stage (the tightest chokepoint). Default suppliers: CHN and every bloc.",
    category="tracing",
)
def dependence(
    ds: xr.Dataset,
    suppliers: str | Sequence[str] | None = None,
    *,
    step: str | None = None,
    blocs: BlocSpec = None,
) -> xr.DataArray:
    """Dependence of each region, bloc and the world on named suppliers.

    Parameters
    ----------
    ds
        Results Dataset.
    suppliers
        One selector or a list (each a region, a bloc, ``"not <bloc>"``); default ``CHN`` and every bloc.
    step
        The step to read (a stage label: ``"mine"`` for mine origin, ``"refine"`` for refining location);
        ``None`` takes, for each stage, the maximum over its steps.
    blocs
        Extra blocs besides the run's ``bloc_member``.

    Returns
    -------
    xr.DataArray
        ``dependence`` (supplier, mineral, stage, region, period) in [0, 1].
    """
    groups = membership(ds, blocs)
    if suppliers is None:
        suppliers = default_suppliers(ds, groups)
    elif isinstance(suppliers, str):
        suppliers = [suppliers]
    if not suppliers:
        raise MetricUnavailableError("dependence: no supplier to trace (no CHN region and no bloc)")
    if step is not None and step not in ds["stage"].values:
        raise MetricError(f"unknown step {step!r}; steps are stages: {list(ds['stage'].values)}")
    shares = region_origin_shares(ds)
    if step is not None:
        shares = shares.sel(step=step, drop=True)
    traced = []
    for supplier in suppliers:
        mask = resolve(ds, supplier, groups).rename(region="source")
        part = shares.where(mask).sum("source", min_count=1).where(shares.notnull().any("source"))
        part = _group_users(part, ds, groups)
        if step is None:
            part = part.max("step", skipna=True)
        traced.append(part)
    out = xr.concat(traced, dim="supplier", coords="minimal").assign_coords(supplier=list(suppliers))
    return finish(order_dims(out, CANONICAL_DIMS), "dependence", step=step or "max over steps")
