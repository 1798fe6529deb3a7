"""Tiny markets with answers worked out by hand, solved by both solvers."""

from __future__ import annotations

import numpy as np
import pytest

from critmin.core.errors import InfeasibleError
from critmin.market.engine import BatchedNewtonSolver
from critmin.market.problem import InstanceData, Solution, Topology
from critmin.market.reference import HighsSolver
from critmin.market.solvers import Solver, get_solver

INF = np.inf


@pytest.fixture(params=["engine", "highs"])
def solver(request: pytest.FixtureRequest) -> Solver:
    return get_solver(request.param)


def tolerance(solver: Solver) -> float:
    """Absolute tolerance on hand-computed prices and quantities (numbers here are O(10-100))."""
    return 1e-7 if solver.name == "engine" else 1e-4


def market(
    nodes: list[str],
    agents: list[tuple[str, list[tuple[int, float]], float, float, float, float]],
    injection: list[float] | None = None,
    constraints: list[tuple[str, list[tuple[int, float]], float]] | None = None,
    price_scale: float = 50.0,
    quantity_scale: float = 30.0,
) -> tuple[Topology, InstanceData]:
    """One instance: agents are ``(label, [(node, coef), ...], cost, slope, lower, upper)``."""
    J = len(agents)
    agent_node = -np.ones((J, 2), dtype=np.int64)
    agent_coef = np.zeros((J, 2))
    for j, (_, touches, *_rest) in enumerate(agents):
        for slot, (node, coef) in enumerate(touches):
            agent_node[j, slot] = node
            agent_coef[j, slot] = coef
    constraints = constraints or []
    con_row = [k for k, (_, terms, _) in enumerate(constraints) for _ in terms]
    con_agent = [j for _, terms, _ in constraints for j, _ in terms]
    con_coef = [c for _, terms, _ in constraints for _, c in terms]
    topology = Topology(
        node_labels=tuple(nodes),
        agent_labels=tuple(a[0] for a in agents),
        agent_node=agent_node,
        agent_coef=agent_coef,
        con_labels=tuple(c[0] for c in constraints),
        con_row=np.array(con_row, dtype=np.int64),
        con_agent=np.array(con_agent, dtype=np.int64),
        con_coef=np.array(con_coef, dtype=float),
    )
    data = InstanceData(
        cost=np.array([[a[2] for a in agents]]),
        slope=np.array([[a[3] for a in agents]]),
        lower=np.array([[a[4] for a in agents]]),
        upper=np.array([[a[5] for a in agents]]),
        injection=np.array([injection or [0.0] * len(nodes)]),
        rhs=np.array([[c[2] for c in constraints]]).reshape(1, len(constraints)),
        price_scale=np.array([price_scale]),
        quantity_scale=np.array([quantity_scale]),
        instance_labels=("tiny",),
    )
    return topology, data


def two_regions(route_upper: float = INF, quota: float | None = None) -> tuple[Topology, InstanceData]:
    """A: supply 10 + q, demand 100 - c; B: supply 40 + q, demand 120 - c; route A->B costs 5 + x."""
    agents = [
        ("supply/A", [(0, 1.0)], 10.0, 1.0, 0.0, INF),
        ("demand/A", [(0, -1.0)], -100.0, 1.0, 0.0, INF),
        ("supply/B", [(1, 1.0)], 40.0, 1.0, 0.0, INF),
        ("demand/B", [(1, -1.0)], -120.0, 1.0, 0.0, INF),
        ("route/A->B", [(0, -1.0), (1, 1.0)], 5.0, 1.0, 0.0, route_upper),
    ]
    constraints = [("quota/A->B", [(4, 1.0)], quota)] if quota is not None else None
    return market(["A", "B"], agents, constraints=constraints, price_scale=60.0, quantity_scale=40.0)


def check(solution: Solution, solver: Solver) -> None:
    assert solution.solver == solver.name
    limit = 1e-9 if solver.name == "engine" else 1e-6
    assert (solution.residuals.worst() <= limit).all()


def test_one_node_linear_supply_and_demand(solver: Solver) -> None:
    # p = 10 + q = 100 - 2q  ->  q = 30, p = 40
    topology, data = market(
        ["n"],
        [("supply", [(0, 1.0)], 10.0, 1.0, 0.0, INF), ("demand", [(0, -1.0)], -100.0, 2.0, 0.0, INF)],
    )
    solution = solver.solve(topology, data)
    check(solution, solver)
    tol = tolerance(solver)
    assert solution.price[0, 0] == pytest.approx(40.0, abs=tol)
    assert solution.level[0] == pytest.approx([30.0, 30.0], abs=tol)


def test_two_regions_autarky_when_the_route_is_banned(solver: Solver) -> None:
    # A: 10 + q = 100 - q -> p = 55; B: 40 + q = 120 - q -> p = 80; the route carries nothing.
    topology, data = two_regions(route_upper=0.0)
    solution = solver.solve(topology, data)
    check(solution, solver)
    tol = tolerance(solver)
    assert solution.price[0] == pytest.approx([55.0, 80.0], abs=tol)
    assert solution.level[0, 4] == pytest.approx(0.0, abs=tol)


def test_two_regions_trade_with_transport_cost_and_friction(solver: Solver) -> None:
    # Balances: x = 2 pA - 110 = 160 - 2 pB; route: x = pB - pA - 5  ->  x = 10, pA = 60, pB = 75.
    topology, data = two_regions()
    solution = solver.solve(topology, data)
    check(solution, solver)
    tol = tolerance(solver)
    assert solution.price[0] == pytest.approx([60.0, 75.0], abs=tol)
    assert solution.level[0] == pytest.approx([50.0, 40.0, 35.0, 45.0, 10.0], abs=tol)


def test_processor_with_yield(solver: Solver) -> None:
    # Input supply 10 + q at U; processor takes z at U, yields 0.5 z at O, costs 5 + z per unit of input;
    # demand 100 - 2c at O. pU = 10 + z, c = z / 2, pO = 100 - z, 0.5 pO - pU - 5 = z  ->  z = 14.
    topology, data = market(
        ["U", "O"],
        [
            ("supply", [(0, 1.0)], 10.0, 1.0, 0.0, INF),
            ("process", [(0, -1.0), (1, 0.5)], 5.0, 1.0, 0.0, INF),
            ("demand", [(1, -1.0)], -100.0, 2.0, 0.0, INF),
        ],
        price_scale=100.0,
        quantity_scale=10.0,
    )
    solution = solver.solve(topology, data)
    check(solution, solver)
    tol = tolerance(solver)
    assert solution.price[0] == pytest.approx([24.0, 86.0], abs=tol)
    assert solution.level[0] == pytest.approx([14.0, 14.0, 7.0], abs=tol)


def test_binding_quota_earns_the_price_gap_less_transport_and_friction(solver: Solver) -> None:
    # With x = 4: pA = (110 + 4) / 2 = 57, pB = (160 - 4) / 2 = 78; rent = 78 - 57 - 5 - 1 * 4 = 12.
    topology, data = two_regions(quota=4.0)
    solution = solver.solve(topology, data)
    check(solution, solver)
    tol = tolerance(solver)
    assert solution.level[0, 4] == pytest.approx(4.0, abs=tol)
    assert solution.price[0] == pytest.approx([57.0, 78.0], abs=tol)
    assert solution.rent[0, 0] == pytest.approx(12.0, abs=tol)


def test_slack_quota_has_no_rent(solver: Solver) -> None:
    topology, data = two_regions(quota=25.0)
    solution = solver.solve(topology, data)
    check(solution, solver)
    tol = tolerance(solver)
    assert solution.price[0] == pytest.approx([60.0, 75.0], abs=tol)
    assert solution.rent[0, 0] == pytest.approx(0.0, abs=tol)


def test_must_run_injection(solver: Solver) -> None:
    # q + 15 = c with q = p - 10, c = (100 - p) / 2  ->  p = 30, q = 20, c = 35.
    topology, data = market(
        ["n"],
        [("supply", [(0, 1.0)], 10.0, 1.0, 0.0, INF), ("demand", [(0, -1.0)], -100.0, 2.0, 0.0, INF)],
        injection=[15.0],
    )
    solution = solver.solve(topology, data)
    check(solution, solver)
    tol = tolerance(solver)
    assert solution.price[0, 0] == pytest.approx(30.0, abs=tol)
    assert solution.level[0] == pytest.approx([20.0, 35.0], abs=tol)


def test_price_responsive_buy_segment(solver: Solver) -> None:
    # A buyer of up to 10 over the band [30, 60]: u = (60 - p) / 3. Market: p - 10 = (100 - p)/2 + u
    # -> (11/6) p = 80 -> p = 480/11, u = (60 - p) / 3.
    topology, data = market(
        ["n"],
        [
            ("supply", [(0, 1.0)], 10.0, 1.0, 0.0, INF),
            ("demand", [(0, -1.0)], -100.0, 2.0, 0.0, INF),
            ("buy", [(0, -1.0)], -60.0, 3.0, 0.0, 10.0),
        ],
    )
    solution = solver.solve(topology, data)
    check(solution, solver)
    tol = tolerance(solver)
    price = 480.0 / 11.0
    assert solution.price[0, 0] == pytest.approx(price, abs=tol)
    assert solution.level[0] == pytest.approx([price - 10.0, (100.0 - price) / 2.0, (60.0 - price) / 3.0], abs=tol)


def test_buy_segment_at_its_quantity_limit(solver: Solver) -> None:
    # A buyer of up to 2 that pays up to 90: it buys all 2; p - 10 = (100 - p) / 2 + 2 -> p = 124/3.
    topology, data = market(
        ["n"],
        [
            ("supply", [(0, 1.0)], 10.0, 1.0, 0.0, INF),
            ("demand", [(0, -1.0)], -100.0, 2.0, 0.0, INF),
            ("buy", [(0, -1.0)], -90.0, 1.0, 0.0, 2.0),
        ],
    )
    solution = solver.solve(topology, data)
    check(solution, solver)
    tol = tolerance(solver)
    assert solution.price[0, 0] == pytest.approx(124.0 / 3.0, abs=tol)
    assert solution.level[0, 2] == pytest.approx(2.0, abs=tol)


def test_injection_with_nowhere_to_go_is_infeasible(solver: Solver) -> None:
    # 10 units must enter a node whose only buyer takes at most 5.
    topology, data = market(["stuck"], [("demand", [(0, -1.0)], -100.0, 2.0, 0.0, 5.0)], injection=[10.0])
    with pytest.raises(InfeasibleError) as error:
        solver.solve(topology, data)
    assert error.value.instance == "tiny"
    if solver.name == "engine":
        assert "stuck" in str(error.value)


def test_lower_bound_above_upper_bound_is_infeasible(solver: Solver) -> None:
    topology, data = market(
        ["n"],
        [("supply", [(0, 1.0)], 10.0, 1.0, 5.0, 2.0), ("demand", [(0, -1.0)], -100.0, 2.0, 0.0, INF)],
    )
    with pytest.raises(InfeasibleError, match="supply"):
        solver.solve(topology, data)


def test_offtake_that_cannot_be_supplied_is_infeasible(solver: Solver) -> None:
    # The route must carry at least 30 but A can produce at most 20 and nobody else supplies A.
    agents = [
        ("supply/A", [(0, 1.0)], 10.0, 1.0, 0.0, 20.0),
        ("demand/B", [(1, -1.0)], -120.0, 1.0, 0.0, INF),
        ("route/A->B", [(0, -1.0), (1, 1.0)], 5.0, 1.0, 30.0, INF),
    ]
    topology, data = market(["A", "B"], agents)
    with pytest.raises(InfeasibleError):
        solver.solve(topology, data)


def test_engine_prices_of_undetermined_nodes_are_canonical() -> None:
    # B is cut off: its supply is shut (upper 0) and the route banned, so B's demand buys nothing and its
    # price can be anything at or above the demand's choke price 120; the rule takes the lowest, 120.
    # C has a mine (cost 30) but no buyer and no route: its price can be anything at or below 30; the rule
    # takes the highest, the cost of the cheapest unit, 30.
    agents = [
        ("supply/A", [(0, 1.0)], 10.0, 1.0, 0.0, INF),
        ("demand/A", [(0, -1.0)], -100.0, 1.0, 0.0, INF),
        ("supply/B", [(1, 1.0)], 40.0, 1.0, 0.0, 0.0),
        ("demand/B", [(1, -1.0)], -120.0, 1.0, 0.0, INF),
        ("route/A->B", [(0, -1.0), (1, 1.0)], 5.0, 1.0, 0.0, 0.0),
        ("supply/C", [(2, 1.0)], 30.0, 1.0, 0.0, INF),
    ]
    topology, data = market(["A", "B", "C"], agents, price_scale=60.0, quantity_scale=40.0)
    engine = BatchedNewtonSolver()
    cold = engine.solve(topology, data)
    warm = engine.solve(topology, data, warm_start=np.array([[50.0, 500.0, -7.0]]))
    for solution in (cold, warm):
        assert solution.price[0] == pytest.approx([55.0, 120.0, 30.0], abs=1e-9)
    reference = HighsSolver().solve(topology, data)
    assert reference.price[0, 0] == pytest.approx(55.0, abs=1e-4)
    assert reference.price[0, 1] >= 120.0 - 1e-4 and reference.price[0, 2] <= 30.0 + 1e-4


def test_engine_warm_start_from_the_solution_needs_no_iteration() -> None:
    topology, data = two_regions(quota=4.0)
    engine = BatchedNewtonSolver()
    cold = engine.solve(topology, data)
    warm = engine.solve(topology, data, warm_start=cold.price, warm_rents=cold.rent)
    assert cold.iterations[0] >= 1
    assert warm.iterations[0] == 0
    assert warm.price == pytest.approx(cold.price, abs=1e-9)


def test_engine_solves_a_batch_and_names_the_failing_instance() -> None:
    topology, data = two_regions()
    batch = data.take(np.array([0, 0, 0]))
    batch.cost[1, 0] = 20.0  # A's supply costs more: A exports less
    batch.injection[2, 0] = 50.0  # a must-run release in A
    batch.instance_labels = ("base", "costly", "release")
    solution = BatchedNewtonSolver().solve(topology, batch)
    assert solution.price[0] == pytest.approx([60.0, 75.0], abs=1e-7)
    assert solution.level[1, 4] < solution.level[0, 4]
    assert solution.price[2, 0] < solution.price[0, 0]
    batch.lower[1, 2] = 100.0  # B must produce 100 but its buyers take at most 60 and B cannot export
    batch.upper[1, 3] = 60.0
    with pytest.raises(InfeasibleError, match="costly"):
        BatchedNewtonSolver().solve(topology, batch)


def test_get_solver_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="engine"):
        get_solver("cplex")
