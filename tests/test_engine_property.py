"""Property tests: on random instances of every shape the engine accepts, the batched engine and HiGHS
find the same equilibrium (prices to 1e-6 relative where prices are determined), and both pass their
residual checks."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from critmin.core.errors import SolveError
from critmin.market.problem import residuals
from critmin.market.solvers import get_solver
from random_instances import Features, random_problem, undetermined_nodes

ENGINE = get_solver("engine")
HIGHS = get_solver("highs")


def _check(topology, data):
    engine = ENGINE.solve(topology, data)
    try:
        highs = HIGHS.solve(topology, data)
    except SolveError as err:
        # HiGHS stops with "Solve error" on a few random instances (one with seed 5760007, 3 stages, 4 regions
        # failed inside this test's run); the engine's answer is then checked by its optimality conditions
        event("HiGHS failed")
        note(str(err))
        _check_residuals(topology, data, engine)
        return
    for sol in (engine, highs):
        _check_residuals(topology, data, sol)
    qs = data.quantity_scale[:, None]
    np.testing.assert_allclose(engine.level / qs, highs.level / qs, atol=2e-5)
    for b in range(data.n_instances):
        free = ~undetermined_nodes(topology, data, highs.level, highs.rent, b)[: topology.n_nodes]
        ps = data.price_scale[b]
        gap = np.abs(engine.price[b] - highs.price[b]) / np.maximum(np.abs(highs.price[b]), ps)
        assert gap[free].max(initial=0.0) <= 1e-6, (b, gap[free].max())


def _check_residuals(topology, data, sol):
    """The optimality conditions of the QP (a certificate: the problem is convex)."""
    res = residuals(topology, data, sol.price, sol.level, sol.rent)
    assert res.primal.max() <= 1e-6, res.primal.max()
    assert res.complementarity.max() <= 1e-5, res.complementarity.max()
    assert res.dual.max() <= 1e-9


features = st.builds(
    Features,
    ban=st.sampled_from([0.0, 0.2, 0.5]),
    cut_off=st.sampled_from([0.0, 0.3]),
    offtake=st.sampled_from([0.0, 0.2]),
    licence=st.sampled_from([0.0, 0.3]),
    binding=st.sampled_from([0.0, 0.3, 1.0]),
    bind_all=st.sampled_from([0.0, 0.5]),
    must_produce=st.sampled_from([0.0, 0.3]),
    injection=st.sampled_from([0.0, 0.3]),
    zero_demand=st.sampled_from([0.0, 0.3]),
    wedge=st.sampled_from([0.0, 0.5]),
    quota_binding=st.sampled_from([0.0, 0.5, 1.0]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    stages=st.integers(1, 3),
    regions=st.integers(1, 6),
    feats=features,
)
def test_engine_matches_highs_on_random_instances(seed, stages, regions, feats):
    topology, data = random_problem(seed, stages, regions, n_instances=2, features=feats)
    _check(topology, data)


def test_degenerate_cases():
    # capacity binding everywhere, zero demand somewhere, a region cut off
    for seed in range(5):
        topology, data = random_problem(
            seed,
            3,
            5,
            n_instances=2,
            features=Features(bind_all=1.0, binding=1.0, zero_demand=0.5, cut_off=0.5),
        )
        _check(topology, data)
