"""Property tests: the batched engine against HiGHS on random feasible instances of every chain shape.

Instances come from ``tests/random_instances.py``: 1-3 stage chains over 1-8 regions with bans, offtakes,
licences, wedges, quotas, buy and sell segments and must-run injections, each with its own price and
quantity scale; the degenerate cases (every capacity binding, sectors switched off, a region cut off) are
drawn on purpose.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from critmin.core.errors import InfeasibleError, SolveError
from critmin.market.engine import BatchedNewtonSolver
from critmin.market.problem import InstanceData, Topology
from critmin.market.reference import HighsSolver
from random_instances import Features, random_problem, undetermined_nodes

ENGINE = BatchedNewtonSolver()
HIGHS = HighsSolver()

DEGENERATE = {
    "default": Features(),
    "every capacity binding": replace(Features(), bind_all=1.0),
    "zero demand": replace(Features(), zero_demand=0.6),
    "region cut off": replace(Features(), cut_off=1.0, ban=0.5),
    "quotas binding": replace(Features(), quota_binding=1.0, offtake=0.4),
}

shapes = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "stages": st.integers(1, 3),
        "regions": st.integers(1, 8),
        "instances": st.integers(1, 3),
    }
)


def compare(topology: Topology, data: InstanceData) -> None:
    """Both solvers meet their tolerance; levels agree; determined prices and rents agree.

    HiGHS's QP solver gives up on about 0.2% of these instances (status "Solve error": it claims
    optimality with primal infeasibilities of ~1e-4); those are checked on the engine's residuals alone.
    """
    engine = ENGINE.solve(topology, data)
    assert (engine.residuals.worst() <= 1e-9).all()
    try:
        highs = HIGHS.solve(topology, data)
    except SolveError as error:
        assert not isinstance(error, InfeasibleError)
        event("HiGHS failed")
        return
    assert (highs.residuals.worst() <= 1e-6).all()
    N = topology.n_nodes
    for b in range(data.n_instances):
        qs, ps = data.quantity_scale[b], data.price_scale[b]
        assert np.abs(engine.level[b] - highs.level[b]).max(initial=0.0) <= 1e-6 * qs
        undetermined = undetermined_nodes(topology, data, highs.level, highs.rent, b)
        price_gap = np.abs(engine.price[b] - highs.price[b])[~undetermined[:N]]
        assert price_gap.max(initial=0.0) <= 1e-6 * ps, topology.node_labels
        rent_gap = np.abs(engine.rent[b] - highs.rent[b])[~undetermined[N:]]
        assert rent_gap.max(initial=0.0) <= 1e-6 * ps


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes, case=st.sampled_from(sorted(DEGENERATE)))
def test_engine_matches_highs(shape: dict[str, int], case: str) -> None:
    topology, data = random_problem(
        shape["seed"], shape["stages"], shape["regions"], shape["instances"], features=DEGENERATE[case]
    )
    compare(topology, data)


@settings(max_examples=25, deadline=None)
@given(shape=shapes)
def test_warm_start_from_a_nearby_solution_converges_fast(shape: dict[str, int]) -> None:
    topology, data = random_problem(shape["seed"], shape["stages"], shape["regions"], shape["instances"])
    first = ENGINE.solve(topology, data)
    later = replace(data, cost=np.where(data.cost < 0.0, data.cost * 1.02, data.cost))  # demand +2%
    cold = ENGINE.solve(topology, later)
    warm = ENGINE.solve(topology, later, warm_start=first.price, warm_rents=first.rent)
    assert (warm.residuals.worst() <= 1e-9).all()
    assert np.abs(warm.level - cold.level).max() <= 1e-7 * data.quantity_scale.max()
    assert warm.iterations.mean() <= cold.iterations.mean()
    again = ENGINE.solve(topology, later, warm_start=warm.price, warm_rents=warm.rent)
    assert (again.iterations <= 1).all()


@settings(max_examples=20, deadline=None)
@given(shape=shapes, share=st.floats(0.1, 2.0))
def test_a_release_with_nowhere_to_go_is_infeasible(shape: dict[str, int], share: float) -> None:
    """A must-run release into a use node whose region is sealed off and whose buyers are all capped."""
    topology, data = random_problem(shape["seed"], shape["stages"], shape["regions"], 1)
    node = len(topology.node_labels) - 1  # the last use node
    data.injection[0, node] = 0.0
    touching = [j for j in range(topology.n_agents) if node in topology.agent_node[j]]
    absorbable = 0.0
    for j in touching:
        coef = topology.agent_coef[j][list(topology.agent_node[j]).index(node)]
        if coef < 0.0:  # a withdrawal: cap it
            data.upper[0, j] = min(data.upper[0, j], 0.1 * data.quantity_scale[0])
            data.lower[0, j] = min(data.lower[0, j], data.upper[0, j])
            absorbable += data.upper[0, j]
        else:  # a supply into the node: shut it
            data.lower[0, j] = 0.0
            data.upper[0, j] = 0.0
    data.injection[0, node] = absorbable + share * data.quantity_scale[0]
    try:
        ENGINE.solve(topology, data)
    except InfeasibleError as error:
        assert topology.node_labels[node] in str(error)
    else:
        raise AssertionError("an infeasible instance was solved")
    try:
        HIGHS.solve(topology, data)
    except InfeasibleError:
        pass
    else:
        raise AssertionError("HiGHS solved an infeasible instance")
