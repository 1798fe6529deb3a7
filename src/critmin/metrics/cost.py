"""Cost: consumer expenditure, the money of the instruments (fiscal cost, levy and tariff revenue, quota
rents), and the change in surplus against a baseline run, per region, bloc and world.

Money per period is in USD for the period (periods are years, so USD per year).
"""

from __future__ import annotations

import xarray as xr

from critmin.metrics.core import (
    CANONICAL_DIMS,
    BlocSpec,
    check_same_labels,
    extend_sum,
    finish,
    membership,
    mineral_stages,
    optional,
    order_dims,
    processing_input,
    register,
)

#: Components of :func:`surplus_change`, in order (``total`` is their sum).
SURPLUS_COMPONENTS = ("consumer", "producer", "rents", "fiscal", "offtake", "total")


def _expenditure(ds: xr.Dataset) -> xr.DataArray:
    spent = ds["price"] * ds["consumption"]
    return spent.sum(("stage", "sector"), min_count=1).transpose("mineral", "region", "period")


@register(
    "consumer_expenditure",
    "USD",
    "Spending of the region's consuming sectors in the period: sum over stages and sectors of the use-node "
    "price x consumption; for a bloc or the world, the members' sum.",
    category="cost",
)
def consumer_expenditure(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Consumer expenditure by mineral, region (+blocs, world) and period, USD per period."""
    out = extend_sum(_expenditure(ds), membership(ds, blocs))
    return finish(order_dims(out, CANONICAL_DIMS), "consumer_expenditure")


@register(
    "consumer_expenditure_change",
    "USD",
    "Consumer expenditure of the run minus that of the baseline in the same period.",
    needs_baseline=True,
    category="cost",
)
def consumer_expenditure_change(ds: xr.Dataset, baseline: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Change in consumer expenditure against ``baseline`` by mineral, region (+blocs, world) and period."""
    check_same_labels(ds, baseline, ["price", "consumption"])
    change = _expenditure(ds) - _expenditure(baseline)
    out = extend_sum(change, membership(ds, blocs))
    return finish(order_dims(out, CANONICAL_DIMS), "consumer_expenditure_change")


def _money(name: str, ds: xr.Dataset, blocs: BlocSpec) -> xr.DataArray:
    out = extend_sum(optional(ds, name), membership(ds, blocs))
    return finish(order_dims(out, CANONICAL_DIMS), name)


@register(
    "fiscal_cost",
    "USD",
    "Money paid by the region's government in the period as the instruments report it (floor payments, "
    "reserve purchases net of sales and holding cost, export subsidies, investment support); 0 where no "
    "instrument pays; for a bloc or the world, the members' sum.",
    category="cost",
)
def fiscal_cost(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Fiscal cost by mineral, region (+blocs, world) and period."""
    return _money("fiscal_cost", ds, blocs)


@register(
    "fiscal_cost_cumulative",
    "USD",
    "Fiscal cost summed over the periods of the run (undiscounted).",
    category="cost",
)
def fiscal_cost_cumulative(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Fiscal cost summed over periods by mineral and region (+blocs, world)."""
    out = fiscal_cost(ds, blocs=blocs).sum("period", min_count=1)
    return finish(out, "fiscal_cost_cumulative")


@register(
    "levy_revenue",
    "USD",
    "Variable levies (reference-price design) collected by the importing region in the period.",
    category="cost",
)
def levy_revenue(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Levy revenue by mineral, region (+blocs, world) and period."""
    return _money("levy_revenue", ds, blocs)


@register(
    "tariff_revenue",
    "USD",
    "Tariffs collected by the importing region in the period.",
    category="cost",
)
def tariff_revenue(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Tariff revenue by mineral, region (+blocs, world) and period."""
    return _money("tariff_revenue", ds, blocs)


@register(
    "quota_rent",
    "USD",
    "Rents of binding export quotas and controls captured by the exporting region in the period.",
    category="cost",
)
def quota_rent(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Quota rents by mineral, region (+blocs, world) and period."""
    return _money("quota_rent", ds, blocs)


def _offtake_net(ds: xr.Dataset) -> xr.DataArray:
    """(mineral, region, period) offtake transfers received as seller minus paid as buyer."""
    transfer = optional(ds, "offtake_transfer")
    received = transfer.sum("region").rename(partner="region")
    paid = transfer.sum("partner")
    return (received - paid).transpose("mineral", "region", "period")


def _producer_change(ds: xr.Dataset, baseline: xr.Dataset) -> xr.DataArray:
    """(mineral, region, period) producer surplus change of mines and processors (trapezoid rule)."""
    inputs = (processing_input(ds), processing_input(baseline))
    needed = ["production", "producer_price", "price"]
    pieces = []
    for mineral, stages in mineral_stages(ds).items():
        runs = tuple(r[needed].sel(mineral=mineral, drop=True) for r in (ds, baseline))
        total = xr.zeros_like(runs[0]["production"].isel(stage=0, drop=True))
        for i, stage in enumerate(stages):
            out1, out0 = (r["production"].sel(stage=stage, drop=True) for r in runs)
            dp_out = runs[0]["producer_price"].sel(stage=stage, drop=True) - runs[1]["producer_price"].sel(
                stage=stage, drop=True
            )
            term = (dp_out * (out0 + out1) / 2.0).where(out0 + out1 > 0, 0.0)
            if i > 0:
                before = stages[i - 1]
                in1, in0 = (x.sel(mineral=mineral, stage=stage, drop=True) for x in inputs)
                dp_in = runs[0]["price"].sel(stage=before, drop=True) - runs[1]["price"].sel(stage=before, drop=True)
                term = term - (dp_in * (in0 + in1) / 2.0).where(in0 + in1 > 0, 0.0)
            total = total + term
        pieces.append(total.expand_dims(mineral=[mineral]))
    return xr.concat(pieces, dim="mineral").transpose("mineral", "region", "period")


@register(
    "surplus_change",
    "USD",
    "Welfare change against the baseline in the period, by component: consumer = sum over sectors of "
    "-(p1 - p0)(c0 + c1)/2 at the sector's use-node price (exact for linear demand); producer = mines "
    "(pp1 - pp0)(q0 + q1)/2 at producer prices, plus processors (pp1 - pp0)(y0 + y1)/2 on output minus "
    "(p1 - p0)(z0 + z1)/2 on input bought at the region's previous-stage price (the trapezoid on the unit "
    "margin), plus the change in floor payments received where the results report them; rents = change in "
    "levy + tariff revenue + quota rents; fiscal = minus the change in fiscal cost; offtake = change in "
    "offtake transfers received minus paid; total = their sum.",
    needs_baseline=True,
    category="cost",
)
def surplus_change(ds: xr.Dataset, baseline: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Surplus change against ``baseline`` by component, mineral, region (+blocs, world) and period.

    Parameters
    ----------
    ds, baseline
        Results of the run and of its baseline; their labels must agree exactly.
    blocs
        Extra blocs besides the run's ``bloc_member``.

    Returns
    -------
    xr.DataArray
        ``surplus_change`` (component, mineral, region, period), USD per period; components
        :data:`SURPLUS_COMPONENTS`.

    Notes
    -----
    The trapezoid is exact where demand (supply, processing cost) is linear and the quantities lie on the
    same curve in both runs; with capacity bounds, must-run volumes or demand that has shifted through
    long-run adjustment it is the usual approximation.
    """
    check_same_labels(ds, baseline, ["price", "producer_price", "production", "consumption", "flow"])
    dp_use = ds["price"] - baseline["price"]
    consumer = (-dp_use * (ds["consumption"] + baseline["consumption"]) / 2.0).sum(("stage", "sector"), min_count=1)
    producer = _producer_change(ds, baseline)
    floor = (optional(ds, "floor_payment") - optional(baseline, "floor_payment")).sum("stage")
    producer = producer + floor
    rents = xr.zeros_like(producer)
    for name in ("levy_revenue", "tariff_revenue", "quota_rent"):
        rents = rents + optional(ds, name) - optional(baseline, name)
    fiscal = -(optional(ds, "fiscal_cost") - optional(baseline, "fiscal_cost"))
    offtake = _offtake_net(ds) - _offtake_net(baseline)
    parts = [consumer, producer, rents, fiscal, offtake]
    parts = [p.transpose("mineral", "region", "period") for p in parts]
    stacked = xr.concat(parts, dim="component", coords="minimal")
    total = stacked.sum("component", min_count=1)
    out = xr.concat([stacked, total.expand_dims("component")], dim="component")
    out = out.assign_coords(component=list(SURPLUS_COMPONENTS))
    out = extend_sum(out, membership(ds, blocs))
    return finish(order_dims(out, CANONICAL_DIMS), "surplus_change")
