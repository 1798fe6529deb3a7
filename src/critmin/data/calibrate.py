"""Calibration of each mineral's market to the base year (DESIGN §3).

Steps, per mineral:

1. **Base-year flows.** For every stage, find flows ``x0[o, d] >= 0`` that ship each region's observed
   output to each region's observed use (consumption at that stage plus input to the next stage) exactly.
   Where the stage has observed bilateral trade (CEPII BACI), the flows stay as close as possible to the
   observed ones (relative least squares); routes with no observation are used only at a steep penalty
   proportional to their transport cost, so that they carry what the observed trade cannot explain; on
   stages without observed trade the flows solve the least-cost transport problem (with a small quadratic
   regularisation that makes them unique and spreads ties).
2. **Prices.** The use-node price of stage ``s`` in region ``d`` is the observed market price. The origin
   price (what producers in ``o`` receive, free on board) is the lowest netback over the routes ``o``
   actually ships on: ``pi[o] = min_d (p[d] - t_dist[o, d] - gamma * x0[o, d])``; an origin that ships
   nothing gets its own market price.
3. **Curves.** Mines: ``mc(q) = a + b q`` through ``(q0, pi0)`` with ``b = pi0 / (eps * q0)``. Processors:
   the same on the processing margin ``m0 = y * pi[s, r] - p[s-1, r]``. Sectors: inverse demand
   ``alpha - beta c`` through ``(c0, p0)`` with ``beta = p0 / (|eps| * c0)``.
4. **Routes.** The trade friction of stage ``s`` is ``gamma = theta * P / Q`` (``P`` the largest base price of
   the stage, ``Q`` world output). An active route's cost is the price gap less the friction at the
   observed flow, ``t = p[d] - pi[o] - gamma * x0`` (never below the distance-based transport cost, by the
   choice of ``pi``); an unused route's cost is ``max(t_dist, p[d] - pi[o]) + margin * P`` so that it
   carries nothing in the base year and opens once the price gap widens by ``margin`` of the price.

With these numbers the base-year equilibrium *is* the observed state: a test checks it for every mineral.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from critmin.core.arrays import FloatArray, IntArray
from critmin.core.errors import DataError
from critmin.core.highs import new_highs

if TYPE_CHECKING:
    from critmin.data.world import MineralData, World

#: Trade friction: a route carrying the whole world's output of a stage would pay this share of the price
#: at the margin (assumption; range 0.05-0.3). It makes flows unique and continuous in prices.
FRICTION_SHARE = 0.1
#: An unused route opens when the price gap exceeds its base-year level by this share of the price.
UNUSED_ROUTE_MARGIN = 0.01
#: Weight of an unobserved route, relative to transport cost, in the flow reconciliation.
UNOBSERVED_ROUTE_PENALTY = 50.0


@dataclass(frozen=True)
class CalibratedMineral:
    """Everything the market builder needs for one mineral, in engine units (t/yr, USD/t).

    Arrays use positional order: ``stage`` as in ``stages``, ``region`` as in ``regions``, ``sector`` as in
    ``sectors``. Supply curves at stage 0 are mines; at stage ``s >= 1`` they are processors whose "price"
    is the processing margin.
    """

    mineral: str
    stages: tuple[str, ...]
    regions: tuple[str, ...]
    sectors: tuple[str, ...]
    sector_stage: tuple[int, ...]  # stage index each sector consumes at
    yields: FloatArray  # (S,) output per unit input; yields[0] = 1 (mines)
    supply_intercept: FloatArray  # (S, R) a
    supply_slope: FloatArray  # (S, R) b > 0
    capacity: FloatArray  # (S, R) t/yr of output (stage 0) or output (s >= 1)
    demand_intercept: FloatArray  # (R, K) alpha
    demand_slope: FloatArray  # (R, K) beta at the base year (> 0)
    route_cost: FloatArray  # (S, R, R) t[o, d] USD/t
    transport_cost: FloatArray  # (S, R, R) distance-based freight USD/t contained (lower bound of route_cost)
    friction: FloatArray  # (S,) gamma, USD/t per t/yr
    base_price: FloatArray  # (S, R) use-node prices p0
    base_origin_price: FloatArray  # (S, R) origin-node prices pi0
    base_production: FloatArray  # (S, R) output q0 (stage product)
    base_consumption: FloatArray  # (R, K) c0
    base_flow: FloatArray  # (S, R, R) x0[o, d]
    demand_index: FloatArray  # (Y, R, K) reference demand relative to the base year
    years: tuple[int, ...]
    demand_elasticity: FloatArray  # (K,) short-run, < 0
    demand_elasticity_long_run: FloatArray  # (K,) long-run, <= short-run
    price_scale: float
    quantity_scale: float
    assumptions: dict[str, Any] = field(default_factory=dict)

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    @property
    def n_regions(self) -> int:
        return len(self.regions)

    def structure_key(self) -> tuple[Any, ...]:
        """Minerals with the same key share a topology and can be solved in one batch."""
        return (len(self.stages), self.regions, self.sectors, self.sector_stage)

    def processing_input(self) -> FloatArray:
        """Base-year input of each processing stage, ``(S, R)`` (zero at stage 0)."""
        z = np.zeros_like(self.base_production)
        z[1:] = self.base_production[1:] / self.yields[1:, None]
        return z

    def base_use(self) -> FloatArray:
        """Base-year use at each use node ``(S, R)``: consumption plus input to the next stage."""
        use = np.zeros_like(self.base_production)
        for k, s in enumerate(self.sector_stage):
            use[s] += self.base_consumption[:, k]
        use[:-1] += self.processing_input()[1:]
        return use


def _reconcile_flows(
    supply: FloatArray,
    use: FloatArray,
    observed: FloatArray,
    transport: FloatArray,
    *,
    file: str,
    label: str,
) -> FloatArray:
    """Flows ``(R, R)`` that balance ``supply`` and ``use`` exactly, close to ``observed`` (NaN = unobserved).

    A linear programme solved with HiGHS (through scipy): minimise the relative absolute deviation from the
    observed routes, plus a transport-cost term that decides what observations cannot (domestic supply
    first, then the cheapest routes). Unobserved routes on a stage with observations pay a steep penalty.
    """
    R = supply.size
    total = float(supply.sum())
    if total <= 0:
        return np.zeros((R, R))
    if abs(total - float(use.sum())) > 1e-6 * total:
        raise DataError(file, "quantity", f"{label}: world output {total:g} t differs from world use {use.sum():g} t")
    s = supply / total
    u = use / float(use.sum())
    obs = observed / total
    tmax = float(np.nanmax(transport)) if np.nanmax(transport) > 0 else 1.0
    tcost = transport / tmax
    has_obs = np.isfinite(obs) & (obs > 0)
    any_obs = bool(has_obs.any())
    n = R * R
    cost = np.zeros(n)
    for o in range(R):
        for d in range(R):
            if o == d:
                continue
            j = o * R + d
            cost[j] = 0.01 * tcost[o, d]
            if any_obs and not has_obs[o, d]:
                cost[j] += UNOBSERVED_ROUTE_PENALTY * (0.02 + tcost[o, d])
    obs_idx = np.flatnonzero(has_obs.ravel())
    m = obs_idx.size
    # variables: x (n), over (m), under (m); rows: supply (R), use (R), x_j - over + under = obs_j (m)
    c = np.concatenate([cost, 1.0 / obs.ravel()[obs_idx], 1.0 / obs.ravel()[obs_idx]]) if m else cost
    rows, cols, vals = [], [], []
    for o in range(R):
        for d in range(R):
            rows += [o, R + d]
            cols += [o * R + d, o * R + d]
            vals += [1.0, 1.0]
    b_eq = list(s) + list(u)
    for i, j in enumerate(obs_idx.tolist()):
        r = 2 * R + i
        rows += [r, r, r]
        cols += [int(j), n + i, n + m + i]
        vals += [1.0, -1.0, 1.0]
        b_eq.append(float(obs.ravel()[j]))
    x_scaled = _solve_lp(c, np.array(rows), np.array(cols), np.array(vals), np.array(b_eq), file=file, label=label)
    x = x_scaled[:n].reshape(R, R) * total
    return _restore_balance(x, supply, use * (total / float(use.sum())), transport)


def _solve_lp(
    cost: FloatArray, rows: IntArray, cols: IntArray, vals: FloatArray, rhs: FloatArray, *, file: str, label: str
) -> FloatArray:
    """``min cost x`` s.t. ``A x = rhs``, ``x >= 0`` (A in coordinate form), solved with HiGHS."""
    import highspy

    n, m = cost.size, rhs.size
    order = np.lexsort((rows, cols))
    rows, cols, vals = rows[order], cols[order], vals[order]
    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = m
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.full(n, highspy.kHighsInf)
    lp.row_lower_ = rhs
    lp.row_upper_ = rhs
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.searchsorted(cols, np.arange(n + 1)).astype(np.int32)
    lp.a_matrix_.index_ = rows.astype(np.int32)
    lp.a_matrix_.value_ = vals
    h = new_highs()
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise DataError(
            file,
            "quantity",
            f"{label}: base-year flows cannot balance output and use ({h.modelStatusToString(status)})",
        )
    return np.asarray(h.getSolution().col_value, dtype=float)


def _restore_balance(x: FloatArray, supply: FloatArray, use: FloatArray, transport: FloatArray) -> FloatArray:
    """Make flows balance output and use exactly (an LP solver balances only to its tolerance).

    Rows shipping more than their output and columns receiving more than their use are scaled down; what is
    left unshipped then goes to what is left unserved along the cheapest routes (domestic first).
    """
    x = np.maximum(x, 0.0)
    rows = x.sum(axis=1)
    x *= np.divide(supply, rows, out=np.ones_like(rows), where=rows > supply)[:, None]
    cols = x.sum(axis=0)
    x *= np.divide(use, cols, out=np.ones_like(cols), where=cols > use)[None, :]
    surplus = np.maximum(supply - x.sum(axis=1), 0.0)
    deficit = np.maximum(use - x.sum(axis=0), 0.0)
    order = np.argsort(transport, axis=None, kind="stable")
    for j in order:
        o, d = divmod(int(j), x.shape[0])
        if surplus[o] <= 0.0 or deficit[d] <= 0.0:
            continue
        move = min(surplus[o], deficit[d])
        x[o, d] += move
        surplus[o] -= move
        deficit[d] -= move
    return x


def _values(da: Any, dims: tuple[str, ...], *, reindex: bool = False, **labels: Sequence[str]) -> FloatArray:
    """The values of ``da`` at ``labels`` (per dimension), as a float array with axes in the order ``dims``.

    Equivalent to ``da.sel(**labels).transpose(*dims).values`` (``reindex``: ``da.reindex(...)``, missing
    labels give NaN), without xarray's label lookup when the array's labels already are the ones asked
    for, in the same order (as they are for the arrays a world builds).
    """
    if set(da.dims) == set(dims) and all(
        tuple(da.indexes[d]) == tuple(wanted) for d, wanted in labels.items() if d in da.indexes
    ):
        # a copy (as a selection makes), never a view of the world's own data
        return np.transpose(np.array(da.values, dtype=float), [da.dims.index(d) for d in dims])
    lists = {d: list(wanted) for d, wanted in labels.items()}
    picked = da.reindex(**lists) if reindex else da.sel(**lists)
    return np.asarray(picked.transpose(*dims).values, dtype=float)


def calibrate_mineral(world: World, mineral: str) -> CalibratedMineral:
    """Calibrate one mineral of ``world`` to its base year."""
    md: MineralData = world.mineral(mineral)
    regions = tuple(world.regions)
    stages = tuple(md.stages)
    sectors = tuple(world.sectors)
    file = f"{world.path}"
    S, R, K = len(stages), len(regions), len(sectors)

    production = _values(md.production, ("stage", "region"), stage=stages, region=regions)
    capacity = _values(md.capacity, ("stage", "region"), stage=stages, region=regions)
    price = _values(md.price, ("stage", "region"), stage=stages, region=regions)
    cons3 = _values(md.consumption, ("stage", "region", "sector"), stage=stages, region=regions, sector=sectors)
    sector_stage = tuple(stages.index(md.sector_stage[k]) if k in md.sector_stage else S - 1 for k in sectors)
    consumption = np.stack([cons3[sector_stage[k], :, k] for k in range(K)], axis=1)  # (R, K)
    yields = np.array([1.0] + [float(md.yields[s]) for s in stages[1:]])
    # distance-based freight per tonne of contained element, by stage (ore ships far more gross weight)
    transport = _values(
        md.transport_cost, ("stage", "origin", "destination"), stage=stages, origin=regions, destination=regions
    )
    eps_supply = _values(md.supply_elasticity, ("stage",), stage=stages)
    eps_demand = _values(md.demand_elasticity, ("sector",), sector=sectors)
    eps_long = _values(md.demand_elasticity_long_run, ("sector",), sector=sectors)
    if (eps_supply <= 0).any():
        raise DataError(file, "supply_elasticity", f"{mineral}: supply elasticities must be > 0")
    if (eps_demand >= 0).any():
        raise DataError(file, "demand_elasticity", f"{mineral}: demand elasticities must be < 0")
    observed = _values(
        md.trade, ("stage", "origin", "destination"), reindex=True, stage=stages, origin=regions, destination=regions
    )

    # --- 1. base-year flows -------------------------------------------------------------------------------
    inputs = np.zeros((S, R))
    inputs[1:] = production[1:] / yields[1:, None]
    use = np.zeros((S, R))
    for k, s in enumerate(sector_stage):
        use[s] += consumption[:, k]
    use[:-1] += inputs[1:]
    flows = np.zeros((S, R, R))
    for s in range(S):
        flows[s] = _reconcile_flows(
            production[s], use[s], observed[s], transport[s], file=file, label=f"{mineral}/{stages[s]}"
        )

    # --- 2. prices and friction ----------------------------------------------------------------------------
    world_output = production.sum(axis=1)
    stage_price = price.max(axis=1)
    if (world_output <= 0).any():
        bad = stages[int(np.argmin(world_output))]
        raise DataError(file, "production", f"{mineral}/{bad}: world output is zero")
    friction = FRICTION_SHARE * stage_price / world_output
    origin_price = price.copy()
    for s in range(S):
        for o in range(R):
            active = flows[s, o] > 0
            if active.any():
                netback = price[s] - transport[s, o] - friction[s] * flows[s, o]
                origin_price[s, o] = float(netback[active].min())

    # --- 3. curves ----------------------------------------------------------------------------------------
    supply_slope = np.zeros((S, R))
    supply_intercept = np.zeros((S, R))
    for s in range(S):
        if s == 0:
            value = origin_price[0]
            qty = production[0]
        else:
            value = yields[s] * origin_price[s] - price[s - 1]
            qty = inputs[s]
        producing = qty > 0
        if (value[producing] <= 0).any():
            r = regions[int(np.flatnonzero(producing & (value <= 0))[0])]
            raise DataError(
                file,
                "price",
                f"{mineral}/{stages[s]} in {r}: the base-year {'price' if s == 0 else 'processing margin'} "
                f"is {value[regions.index(r)]:.4g} USD/t, not positive; check prices of adjacent stages",
            )
        ref_slope = np.median(value[producing] / (eps_supply[s] * qty[producing])) if producing.any() else 1.0
        b = np.where(producing, value / (eps_supply[s] * np.where(producing, qty, 1.0)), ref_slope)
        supply_slope[s] = b
        supply_intercept[s] = np.where(producing, value - b * qty, value)
    cap = np.maximum(capacity, production)
    # processor capacity is stated in output; the engine bounds the input
    demand_slope = np.zeros((R, K))
    demand_intercept = np.zeros((R, K))
    for k in range(K):
        p0 = price[sector_stage[k]]
        c0 = consumption[:, k]
        has = c0 > 0
        eps = abs(eps_demand[k])
        ref_beta = float(np.median(p0[has] / (eps * c0[has]))) if has.any() else 1.0
        beta = np.where(has, p0 / (eps * np.where(has, c0, 1.0)), ref_beta)
        demand_slope[:, k] = beta
        demand_intercept[:, k] = np.where(has, p0 + beta * c0, p0)

    # --- 4. route costs -------------------------------------------------------------------------------------
    route_cost = np.zeros((S, R, R))
    for s in range(S):
        gap = price[s][None, :] - origin_price[s][:, None]
        active = flows[s] > 0
        route_cost[s] = np.where(
            active,
            gap - friction[s] * flows[s],
            np.maximum(transport[s], gap) + UNUSED_ROUTE_MARGIN * stage_price[s],
        )

    years = tuple(int(y) for y in md.demand_index["year"].values)
    demand_index = _values(md.demand_index, ("year", "region", "sector"), region=regions, sector=sectors)
    return CalibratedMineral(
        mineral=mineral,
        stages=stages,
        regions=regions,
        sectors=sectors,
        sector_stage=sector_stage,
        yields=yields,
        supply_intercept=supply_intercept,
        supply_slope=supply_slope,
        capacity=cap,
        demand_intercept=demand_intercept,
        demand_slope=demand_slope,
        route_cost=route_cost,
        transport_cost=transport,
        friction=friction,
        base_price=price,
        base_origin_price=origin_price,
        base_production=production,
        base_consumption=consumption,
        base_flow=flows,
        demand_index=demand_index,
        years=years,
        demand_elasticity=eps_demand,
        demand_elasticity_long_run=np.minimum(eps_long, eps_demand),
        price_scale=float(stage_price.max()),
        quantity_scale=float(world_output[0]),
        assumptions={
            "friction_share": FRICTION_SHARE,
            "unused_route_margin": UNUSED_ROUTE_MARGIN,
        },
    )


_CACHE: weakref.WeakKeyDictionary[Any, dict[str, CalibratedMineral]] = weakref.WeakKeyDictionary()


def calibrate(world: World) -> dict[str, CalibratedMineral]:
    """Calibrate every mineral of ``world`` (cached per world object)."""
    try:
        return _CACHE[world]
    except (KeyError, TypeError):
        pass
    result = {m: calibrate_mineral(world, m) for m in world.minerals}
    try:
        _CACHE[world] = result
    except TypeError:  # an object that cannot be weakly referenced: no cache
        pass
    return result


def flows_table(cal: CalibratedMineral) -> pd.DataFrame:
    """Base-year flows as a long table (stage, origin, destination, quantity_t)."""
    S, R = cal.n_stages, cal.n_regions
    s, o, d = np.nonzero(cal.base_flow)
    return (
        pd.DataFrame(
            {
                "stage": [cal.stages[i] for i in s],
                "origin": [cal.regions[i] for i in o],
                "destination": [cal.regions[i] for i in d],
                "quantity_t": cal.base_flow[s, o, d],
            }
        ).reset_index(drop=True)
        if S and R
        else pd.DataFrame()
    )


def with_parameters(
    cal: CalibratedMineral,
    *,
    demand_elasticity: dict[str, float] | None = None,
    supply_elasticity: dict[str, float] | None = None,
    demand_growth: float | None = None,
    capacity: dict[tuple[str, str], float] | None = None,
) -> CalibratedMineral:
    """A copy of ``cal`` with other elasticities, demand growth or capacity, through the same base year.

    Curves keep their base-year point and change slope (``b = value / (eps * q0)``); ``demand_growth``
    multiplies the growth of the reference demand index over the base year (1 = unchanged);
    ``capacity`` multiplies the capacity of (stage, region) pairs (``"*"`` for all regions).
    """
    from dataclasses import replace

    check_parameters(
        cal,
        demand_elasticity=demand_elasticity,
        supply_elasticity=supply_elasticity,
        demand_growth=demand_growth,
        capacity=capacity,
    )
    changes: dict[str, Any] = {}
    if demand_elasticity:
        slope = cal.demand_slope.copy()
        intercept = cal.demand_intercept.copy()
        eps_short = cal.demand_elasticity.copy()
        for sector, eps in demand_elasticity.items():
            k = cal.sectors.index(sector)
            p0 = cal.base_price[cal.sector_stage[k]]
            c0 = cal.base_consumption[:, k]
            has = c0 > 0
            beta = np.where(has, p0 / (abs(eps) * np.where(has, c0, 1.0)), slope[:, k])
            slope[:, k] = beta
            intercept[:, k] = np.where(has, p0 + beta * c0, intercept[:, k])
            eps_short[k] = eps
        changes.update(
            demand_slope=slope,
            demand_intercept=intercept,
            demand_elasticity=eps_short,
            demand_elasticity_long_run=np.minimum(cal.demand_elasticity_long_run, eps_short),
        )
    if supply_elasticity:
        slope = cal.supply_slope.copy()
        intercept = cal.supply_intercept.copy()
        inputs = cal.processing_input()
        for stage, eps in supply_elasticity.items():
            s = cal.stages.index(stage)
            qty = cal.base_production[0] if s == 0 else inputs[s]
            has = qty > 0
            value = intercept[s] + slope[s] * qty  # the base-year price (or margin) on the curve
            b = np.where(has, value / (eps * np.where(has, qty, 1.0)), slope[s])
            slope[s] = b
            intercept[s] = np.where(has, value - b * qty, intercept[s])
        changes.update(supply_slope=slope, supply_intercept=intercept)
    if demand_growth is not None:
        changes["demand_index"] = 1.0 + demand_growth * (cal.demand_index - 1.0)
    if capacity:
        cap = cal.capacity.copy()
        for (stage, region), factor in capacity.items():
            s = cal.stages.index(stage)
            cols = slice(None) if region == "*" else cal.regions.index(region)
            cap[s, cols] = np.maximum(cap[s, cols] * factor, 0.0)
        changes["capacity"] = cap
    return replace(cal, **changes) if changes else cal


def check_parameters(
    cal: CalibratedMineral,
    *,
    demand_elasticity: dict[str, float] | None = None,
    supply_elasticity: dict[str, float] | None = None,
    demand_growth: float | None = None,
    capacity: dict[tuple[str, str], float] | None = None,
) -> None:
    """Raise ``ValueError`` with the reason if :func:`with_parameters` cannot apply these changes to ``cal``:
    a sector, stage or region the mineral does not have, or an elasticity or growth of the wrong sign."""

    def known(name: str, what: str, names: tuple[str, ...] | list[str]) -> None:
        if name not in names:
            raise ValueError(f"{cal.mineral} has no {what} {name!r}; its {what}s: {', '.join(names)}")

    for sector, eps in (demand_elasticity or {}).items():
        known(sector, "sector", cal.sectors)
        if not eps < 0:
            raise ValueError(f"demand elasticity of {sector} must be < 0, got {eps}")
    for stage, eps in (supply_elasticity or {}).items():
        known(stage, "stage", cal.stages)
        if not eps > 0:
            raise ValueError(f"supply elasticity of {stage} must be > 0, got {eps}")
    if demand_growth is not None and not demand_growth >= 0:
        raise ValueError(f"a demand growth multiplier must be >= 0, got {demand_growth}")
    for stage, region in capacity or {}:  # a negative multiplier leaves no capacity (a drawn outage)
        known(stage, "stage", cal.stages)
        if region != "*":
            known(region, "region", cal.regions)
