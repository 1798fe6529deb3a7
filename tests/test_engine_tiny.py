"""Tiny period problems with answers computed by hand, for both solvers."""

from __future__ import annotations

import numpy as np
import pytest

from critmin.core.errors import InfeasibleError
from critmin.market.problem import InstanceData, Topology
from critmin.market.solvers import get_solver

SOLVERS = ["engine", "highs"]


def topo(nodes: list[tuple[int, float, int, float]], n_nodes: int, cons=()) -> Topology:
    """Agents as (node1, coef1, node2, coef2); cons as (row, agent, coef)."""
    labels = tuple(f"a{j}" for j in range(len(nodes)))
    con_labels = tuple(f"c{k}" for k in sorted({c[0] for c in cons}))
    return Topology(
        node_labels=tuple(f"n{i}" for i in range(n_nodes)),
        agent_labels=labels,
        agent_node=np.array([[a, c] for a, _, c, _ in nodes], dtype=np.int64),
        agent_coef=np.array([[ca, cc] for _, ca, _, cc in nodes], dtype=float),
        con_labels=con_labels,
        con_row=np.array([c[0] for c in cons], dtype=np.int64),
        con_agent=np.array([c[1] for c in cons], dtype=np.int64),
        con_coef=np.array([c[2] for c in cons], dtype=float),
    )


def data(cost, slope, lower, upper, injection, rhs=(), ps=100.0, qs=100.0) -> InstanceData:
    row = lambda x: np.array([x], dtype=float)  # noqa: E731
    return InstanceData(
        cost=row(cost),
        slope=row(slope),
        lower=row(lower),
        upper=row(upper),
        injection=row(injection),
        rhs=np.array([rhs], dtype=float).reshape(1, len(rhs)),
        price_scale=np.array([ps]),
        quantity_scale=np.array([qs]),
    )


INF = np.inf


@pytest.mark.parametrize("solver", SOLVERS)
def test_one_market_linear_supply_and_demand(solver):
    # supply mc = 10 + 2 q, demand p = 100 - c: q = 30, p = 70
    t = topo([(0, 1.0, -1, 0.0), (0, -1.0, -1, 0.0)], 1)
    sol = get_solver(solver).solve(t, data([10, -100], [2, 1], [0, 0], [INF, INF], [0]))
    assert sol.price[0, 0] == pytest.approx(70.0, rel=1e-7)
    assert sol.level[0] == pytest.approx([30.0, 30.0], rel=1e-7)


@pytest.mark.parametrize("solver", SOLVERS)
def test_capacity_binds_and_price_rises_to_demand(solver):
    t = topo([(0, 1.0, -1, 0.0), (0, -1.0, -1, 0.0)], 1)
    sol = get_solver(solver).solve(t, data([10, -100], [2, 1], [0, 0], [20, INF], [0]))
    assert sol.level[0, 0] == pytest.approx(20.0, rel=1e-7)
    assert sol.price[0, 0] == pytest.approx(80.0, rel=1e-7)


def two_regions(route_upper: float, t_cost: float = 4.0, gamma: float = 0.5):
    # nodes 0 = A, 1 = B. A: mc 10 + q, demand 100 - c; B: mc 40 + q, demand 100 - c; route A -> B
    agents = [(0, 1.0, -1, 0.0), (0, -1.0, -1, 0.0), (1, 1.0, -1, 0.0), (1, -1.0, -1, 0.0), (0, -1.0, 1, 1.0)]
    return topo(agents, 2), data(
        [10, -100, 40, -100, t_cost], [1, 1, 1, 1, gamma], [0] * 5, [INF, INF, INF, INF, route_upper], [0, 0]
    )


@pytest.mark.parametrize("solver", SOLVERS)
def test_two_regions_autarky_when_route_is_closed(solver):
    t, d = two_regions(0.0)
    sol = get_solver(solver).solve(t, d)
    assert sol.price[0] == pytest.approx([55.0, 70.0], rel=1e-7)


@pytest.mark.parametrize("solver", SOLVERS)
def test_two_regions_trade_with_friction(solver):
    # x = (pB - pA - t)/g; A: (pA - 10) - (100 - pA) = x; B: (100 - pB) - (pB - 40) = x
    # so pA = 55 + x/2, pB = 70 - x/2, and x = (15 - x - 4)/0.5 -> 1.5 x = 11
    t, d = two_regions(INF)
    sol = get_solver(solver).solve(t, d)
    x = 11 / 1.5
    assert sol.level[0, 4] == pytest.approx(x, rel=1e-7)
    assert sol.price[0] == pytest.approx([55 + x / 2, 70 - x / 2], rel=1e-7)


@pytest.mark.parametrize("solver", SOLVERS)
def test_quota_rent_is_the_price_gap_less_costs(solver):
    agents = [(0, 1.0, -1, 0.0), (0, -1.0, -1, 0.0), (1, 1.0, -1, 0.0), (1, -1.0, -1, 0.0), (0, -1.0, 1, 1.0)]
    t = topo(agents, 2, cons=[(0, 4, 1.0)])
    d = data([10, -100, 40, -100, 4.0], [1, 1, 1, 1, 0.5], [0] * 5, [INF] * 5, [0, 0], rhs=[2.0])
    sol = get_solver(solver).solve(t, d)
    pa, pb = 55 + 1.0, 70 - 1.0
    assert sol.level[0, 4] == pytest.approx(2.0, rel=1e-7)
    assert sol.price[0] == pytest.approx([pa, pb], rel=1e-7)
    assert sol.rent[0, 0] == pytest.approx(pb - pa - 4.0 - 0.5 * 2.0, rel=1e-6)


@pytest.mark.parametrize("solver", SOLVERS)
def test_processor_with_yield(solver):
    # node 0 ore market: mine mc 10 + q; processor takes z of ore, yields 0.5 z of product at node 1,
    # margin cost 5 + z; product demand 200 - c. Equilibrium: 0.5 p1 - p0 - 5 - z = 0, p0 = 10 + z, p1 = 200 - z/2
    agents = [(0, 1.0, -1, 0.0), (0, -1.0, 1, 0.5), (1, -1.0, -1, 0.0)]
    t = topo(agents, 2)
    sol = get_solver(solver).solve(t, data([10, 5, -200], [1, 1, 1], [0, 0, 0], [INF] * 3, [0, 0]))
    # 0.5 (200 - z/2) - (10 + z) - 5 - z = 0 -> 100 - z/4 - 15 - 2 z = 0 -> z = 85 / 2.25
    z = 85 / 2.25
    assert sol.level[0, 1] == pytest.approx(z, rel=1e-7)
    assert sol.price[0] == pytest.approx([10 + z, 200 - z / 2], rel=1e-7)


@pytest.mark.parametrize("solver", SOLVERS)
def test_must_run_injection_lowers_price(solver):
    t = topo([(0, 1.0, -1, 0.0), (0, -1.0, -1, 0.0)], 1)
    sol = get_solver(solver).solve(t, data([10, -100], [2, 1], [0, 0], [INF, INF], [15.0]))
    # 10 + 2 q = 100 - (q + 15) -> q = 25, p = 60
    assert sol.price[0, 0] == pytest.approx(60.0, rel=1e-7)


@pytest.mark.parametrize("solver", SOLVERS)
def test_buy_segment_holds_price_in_its_band(solver):
    # supply mc 10 + q, demand 50 - c (alone: p = 30), a buyer of up to 50 over the band [39, 40] (slope
    # 1/50, value 40): p - 10 = (50 - p) + 50 (40 - p) -> p = 2060 / 52
    t = topo([(0, 1.0, -1, 0.0), (0, -1.0, -1, 0.0), (0, -1.0, -1, 0.0)], 1)
    sol = get_solver(solver).solve(t, data([10, -50, -40], [1, 1, 1 / 50], [0, 0, 0], [INF, INF, 50], [0]))
    p = sol.price[0, 0]
    assert p == pytest.approx(2060 / 52, rel=1e-7)
    assert sol.level[0, 2] == pytest.approx((40 - p) * 50, rel=1e-6)


@pytest.mark.parametrize("solver", SOLVERS)
def test_injection_with_nowhere_to_go_is_infeasible(solver):
    t = topo([(0, 1.0, -1, 0.0), (1, -1.0, -1, 0.0)], 2)
    with pytest.raises(InfeasibleError):
        get_solver(solver).solve(t, data([10, -100], [1, 1], [0, 0], [INF, 0.0], [0, 5.0]))


@pytest.mark.parametrize("solver", SOLVERS)
def test_crossed_bounds_are_infeasible(solver):
    t = topo([(0, 1.0, -1, 0.0), (0, -1.0, -1, 0.0)], 1)
    with pytest.raises(InfeasibleError):
        get_solver(solver).solve(t, data([10, -100], [1, 1], [5, 0], [4, INF], [0]))


def _cut_off_region(route_ab_open: bool) -> tuple[Topology, InstanceData]:
    """Region A mines (10 + q) and uses (100 - c); region B neither mines nor uses and can only dispose of
    product. Nodes: 0 origin/A, 1 use/A, 2 origin/B, 3 use/B; routes A->A, A->B (closed unless asked),
    B->A (cost 7), B->B (cost 1), and free disposal at use/B."""
    agents = [
        (0, 1.0, -1, 0.0),  # supply A
        (1, -1.0, -1, 0.0),  # demand A
        (0, -1.0, 1, 1.0),  # route A->A
        (0, -1.0, 3, 1.0),  # route A->B
        (2, -1.0, 1, 1.0),  # route B->A
        (2, -1.0, 3, 1.0),  # route B->B
        (3, -1.0, -1, 0.0),  # disposal at use/B
    ]
    upper_ab = INF if route_ab_open else 0.0
    d = data(
        [10, -100, 0, 5, 7, 1, 0],
        [1, 1, 1e-6, 1e-3, 1e-3, 1e-3, 1],
        [0] * 7,
        [INF, INF, INF, upper_ab, INF, INF, INF],
        [0, 0, 0, 0],
    )
    return topo(agents, 4), d


@pytest.mark.parametrize("route_ab_open", [True, False])
def test_undetermined_prices_are_canonical(route_ab_open):
    # A in autarky: x = 90 / (2 + 1e-6) on A->A, p0 = 10 + x, p1 = 100 - x. B's prices are undetermined.
    # use/B takes its highest price: the cheapest unit that could reach it. origin/B has no highest (raising
    # it keeps every route out of B shut): it takes its lowest, where B->A or B->B would start to carry.
    # With A->B open: use/B = p0 + 5, origin/B = use/B - 1. With A->B shut, use/B's highest waits for
    # origin/B's lowest (p1 - 7) and is then p1 - 6, not the floor of 0 that free disposal puts under it.
    t, d = _cut_off_region(route_ab_open)
    sol = get_solver("engine").solve(t, d)
    x = 90 / (2 + 1e-6)
    p0, p1 = 10 + x, 100 - x
    expected = [p0, p1, p0 + 4, p0 + 5] if route_ab_open else [p0, p1, p1 - 7, p1 - 6]
    assert sol.price[0] == pytest.approx(expected, rel=1e-9)
    # every level of B's agents is exactly on its bound, not a rounding residue beside it
    assert (sol.level[0, 3:] == 0.0).all()


def test_warm_start_from_the_solvers_own_iterate():
    # Solution.warm_price is where Newton stopped, before undetermined prices were made canonical: the same
    # problem warm-started from it needs no iteration and gives the same canonical prices.
    t, d = _cut_off_region(False)
    solver = get_solver("engine")
    sol = solver.solve(t, d)
    # B's prices are left where Newton stopped (from a cold start: the price scale), A's are the answer
    assert sol.warm_price[0, 2:] == pytest.approx([100.0, 100.0], rel=1e-9)
    assert sol.warm_price[0, :2] == pytest.approx(sol.price[0, :2], rel=1e-12)
    again = solver.solve(t, d, warm_start=sol.warm_price, warm_rents=sol.warm_rent)
    assert again.iterations[0] == 0
    np.testing.assert_array_equal(again.price, sol.price)
