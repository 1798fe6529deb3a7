"""Hand-built calibrated markets small enough to solve on paper.

``two_region_market`` has one stage and one sector. Region A mines at marginal cost ``10 + q`` and region B
at ``40 + q``; each has inverse demand ``100 - c``. Capacities are unbounded. Shipping between them costs
``t`` per tonne plus a friction ``gamma * x`` (tiny by default). Autarky: A clears at ``q = 45, p = 55``; B at
``q = 30, p = 70``. With free trade and a negligible friction the gap closes to ``t``: ``p_B = p_A + t``
and world supply ``(p_A - 10) + (p_B - 40)`` equals world demand ``(100 - p_A) + (100 - p_B)``, so
``p_A = 62.5 - t/2`` and ``p_B = 62.5 + t/2``; A exports ``2 * p_A - 110 = 15 - t``.
"""

from __future__ import annotations

import numpy as np

from critmin.data.calibrate import CalibratedMineral


def two_region_market(
    *,
    t: float = 4.0,
    gamma: float = 1e-6,
    capacity: tuple[float, float] = (np.inf, np.inf),
    years: tuple[int, ...] = (2024, 2025, 2026, 2027, 2028, 2029, 2030),
    stages: tuple[str, ...] = ("refine",),
    long_run: float | None = None,
) -> CalibratedMineral:
    R, K, S = 2, 1, len(stages)
    if S != 1:
        raise ValueError("two_region_market has one stage")
    route = np.array([[[0.0, t], [t, 0.0]]])
    p_a, p_b = free_trade_prices(t)
    q = np.array([[p_a - 10, p_b - 40]])
    c = np.array([[100 - p_a], [100 - p_b]])
    flow = np.zeros((1, R, R))
    flow[0, 0, 0] = c[0, 0]
    flow[0, 0, 1] = q[0, 0] - c[0, 0]
    flow[0, 1, 1] = q[0, 1]
    eps = -0.5
    return CalibratedMineral(
        mineral="tiny",
        stages=stages,
        regions=("AAA", "BBB"),
        sectors=("other",),
        sector_stage=(0,),
        yields=np.ones(1),
        supply_intercept=np.array([[10.0, 40.0]]),
        supply_slope=np.ones((1, R)),
        capacity=np.array([capacity], dtype=float),
        demand_intercept=np.full((R, K), 100.0),
        demand_slope=np.ones((R, K)),
        route_cost=route,
        transport_cost=route.copy(),
        friction=np.array([gamma]),
        base_price=np.array([[p_a, p_b]]),
        base_origin_price=np.array([[p_a, p_a]]),
        base_production=q,
        base_consumption=c,
        base_flow=flow,
        demand_index=np.ones((len(years), R, K)),
        years=years,
        demand_elasticity=np.array([eps]),
        demand_elasticity_long_run=np.array([eps if long_run is None else long_run]),
        price_scale=100.0,
        quantity_scale=100.0,
    )


def free_trade_prices(t: float) -> tuple[float, float]:
    """Equilibrium prices of ``two_region_market`` with trade and negligible friction."""
    return 62.5 - t / 2, 62.5 + t / 2
