"""Strategic reserves: stock, days of cover, money spent and recovered."""

from __future__ import annotations

import xarray as xr

from critmin.metrics.core import (
    CANONICAL_DIMS,
    DAYS_PER_YEAR,
    BlocSpec,
    extend_sum,
    finish,
    membership,
    optional,
    order_dims,
    register,
    use,
)


@register(
    "reserve_stock",
    "t",
    "Strategic stock held in the region (its location, as the results record it) at the end of the "
    "period; for a bloc or the world, its members' sum; 0 where no reserve is held.",
    category="reserve",
)
def reserve_stock(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Reserve stock by mineral, stage, region (+blocs, world) and period, in tonnes."""
    out = extend_sum(optional(ds, "reserve_stock"), membership(ds, blocs))
    return finish(order_dims(out, CANONICAL_DIMS), "reserve_stock")


@register(
    "days_of_cover",
    "d",
    "Reserve stock over the region's use per day in the same period: stock / (use / 365), use = "
    "consumption + processing input at the stage; for a bloc, members' stock over members' use. NaN where "
    "use is zero.",
    category="reserve",
)
def days_of_cover(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Days of cover by mineral, stage, region (+blocs, world) and period."""
    groups = membership(ds, blocs)
    stock = extend_sum(optional(ds, "reserve_stock"), groups)
    per_day = extend_sum(use(ds), groups) / DAYS_PER_YEAR
    out = (stock / per_day).where(per_day > 0)
    return finish(order_dims(out, CANONICAL_DIMS), "days_of_cover")


@register(
    "reserve_spent",
    "USD",
    "Money the region spent on reserve purchases in the period (as payer); members' sum for a bloc.",
    category="reserve",
)
def reserve_spent(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Reserve spending by mineral, region (+blocs, world) and period."""
    out = extend_sum(optional(ds, "reserve_spent"), membership(ds, blocs))
    return finish(order_dims(out, CANONICAL_DIMS), "reserve_spent")


@register(
    "reserve_recovered",
    "USD",
    "Money the region recovered from reserve sales in the period (as payer); members' sum for a bloc.",
    category="reserve",
)
def reserve_recovered(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Reserve receipts by mineral, region (+blocs, world) and period."""
    out = extend_sum(optional(ds, "reserve_recovered"), membership(ds, blocs))
    return finish(order_dims(out, CANONICAL_DIMS), "reserve_recovered")


@register(
    "reserve_holding_cost",
    "USD",
    "Cost of holding the region's reserve stock in the period; members' sum for a bloc.",
    category="reserve",
)
def reserve_holding_cost(ds: xr.Dataset, *, blocs: BlocSpec = None) -> xr.DataArray:
    """Reserve holding cost by mineral, region (+blocs, world) and period."""
    out = extend_sum(optional(ds, "reserve_holding_cost"), membership(ds, blocs))
    return finish(order_dims(out, CANONICAL_DIMS), "reserve_holding_cost")
