"""The engine's second chances: an instance short of the tolerance after the batched iterations continues from
its last iterate, alone, with a larger budget; then starts again from HiGHS's answer; only then does the
solve fail."""

from __future__ import annotations

import numpy as np
import pytest

from critmin.core.errors import SolveError
from critmin.market.engine import BatchedNewtonSolver
from random_instances import random_problem, undetermined_nodes


def test_instances_past_the_batched_limit_continue_and_match_highs() -> None:
    topology, data = random_problem(11, stages=2, regions=6, n_instances=6)
    full = BatchedNewtonSolver().solve(topology, data)
    assert full.iterations.max() > 2  # the batched pass below stops every instance early
    short = BatchedNewtonSolver(max_iter=2).solve(topology, data)
    stopped = [b for b in range(data.n_instances) if full.iterations[b] > 2]
    assert short.solver == "engine" and len(stopped) >= 1
    scale = data.price_scale[:, None]
    assert np.max(np.abs(short.price - full.price) / scale) < 1e-6  # the same equilibrium (and the same
    # canonical prices where the equilibrium leaves a price undetermined); HiGHS agreement is the property
    # tests' business
    assert short.residuals.worst().max() <= 1e-9
    assert short.iterations.max() > 2


def test_without_the_second_pass_the_limit_raises() -> None:
    topology, data = random_problem(11, stages=2, regions=6, n_instances=3)
    with pytest.raises(SolveError, match="within 2 Newton iterations"):
        BatchedNewtonSolver(max_iter=2, extra_iter=0, restart_from_reference=False).solve(topology, data)


def test_restart_from_highs_answer_meets_the_engine_tolerance() -> None:
    topology, data = random_problem(11, stages=2, regions=6, n_instances=6)
    full = BatchedNewtonSolver().solve(topology, data)
    solver = BatchedNewtonSolver(max_iter=2, extra_iter=0)
    rescued = solver.solve(topology, data)
    assert len(solver.last_restarted) >= 1  # instances short after 2 steps went through HiGHS and back
    assert rescued.residuals.worst().max() <= 1e-9
    for b in range(data.n_instances):
        # prices the equilibrium determines are the same; the others may sit elsewhere in their interval
        free = ~undetermined_nodes(topology, data, full.level, full.rent, b)[: topology.n_nodes]
        gap = np.abs(rescued.price[b, free] - full.price[b, free]) / data.price_scale[b]
        assert gap.max(initial=0.0) < 1e-6
    with pytest.raises(SolveError, match="within 2 Newton iterations"):
        BatchedNewtonSolver(max_iter=2, extra_iter=0, restart_from_reference=False).solve(topology, data)
