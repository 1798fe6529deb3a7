"""The engine's prepared structure and kernels: the vectorised ``prepare_topology`` builds exactly what the
plain-loop version it replaced built, the structure cache returns it for equal topologies, a batch of one
instance solved on the calling thread matches the threaded kernel bit for bit, and instances that start from
each other's solutions (shared starts) do so in rounds that do not depend on threads."""

from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import reverse_cuthill_mckee

from critmin.core.errors import InfeasibleError
from critmin.market import engine
from critmin.market.engine import PreparedTopology, prepare_topology
from critmin.market.problem import BatchProblem, InstanceData, Topology
from random_instances import chain_topology, random_batch, random_layout


def _reference_prepare(topology: Topology) -> PreparedTopology:
    """The engine's first ``prepare_topology``, written as plain loops over agents and variables."""
    N, K, J = topology.n_nodes, topology.n_cons, topology.n_agents
    # Agent columns of M = [E; -A], duplicates merged (an agent listing one node twice touches it once).
    cols: list[dict[int, float]] = [{} for _ in range(J)]
    for j in range(J):
        for slot in range(2):
            n = int(topology.agent_node[j, slot])
            if n >= 0:
                cols[j][n] = cols[j].get(n, 0.0) + float(topology.agent_coef[j, slot])
    for row, agent, coef in zip(topology.con_row, topology.con_agent, topology.con_coef, strict=True):
        key = N + int(row)
        cols[int(agent)][key] = cols[int(agent)].get(key, 0.0) - float(coef)
    ent_ptr = np.zeros(J + 1, dtype=np.int64)
    ent_idx_list: list[int] = []
    ent_val_list: list[float] = []
    for j in range(J):
        items = sorted((i, c) for i, c in cols[j].items() if c != 0.0)
        ent_idx_list.extend(i for i, _ in items)
        ent_val_list.extend(c for _, c in items)
        ent_ptr[j + 1] = len(ent_idx_list)
    ent_idx = np.array(ent_idx_list, dtype=np.int64)
    ent_val = np.array(ent_val_list, dtype=np.float64)

    # Variable -> agents (the transpose of the above).
    var_lists: list[list[tuple[int, float]]] = [[] for _ in range(N + K)]
    for j in range(J):
        for e in range(ent_ptr[j], ent_ptr[j + 1]):
            var_lists[int(ent_idx[e])].append((j, float(ent_val[e])))
    var_ptr = np.zeros(N + K + 1, dtype=np.int64)
    var_ptr[1:] = np.cumsum([len(lst) for lst in var_lists])
    var_agent = np.array([j for lst in var_lists for j, _ in lst], dtype=np.int64)
    var_coef = np.array([c for lst in var_lists for _, c in lst], dtype=np.float64)

    # Greedy independent set of nodes (no two share an agent), preferring nodes touched by many agents.
    degree = np.diff(var_ptr)[:N]
    order = sorted(range(N), key=lambda n: (-int(degree[n]), n))
    blocked = np.zeros(N, dtype=bool)
    eliminated = np.zeros(N + K, dtype=bool)
    for n in order:
        if blocked[n] or degree[n] == 0:
            continue
        eliminated[n] = True
        for j in var_agent[var_ptr[n] : var_ptr[n + 1]]:
            for e in range(ent_ptr[j], ent_ptr[j + 1]):
                if ent_idx[e] < N:
                    blocked[int(ent_idx[e])] = True
    elim_nodes = np.flatnonzero(eliminated[:N]).astype(np.int64)

    # Static pattern of the reduced system (every agent free), then a bandwidth-reducing order.
    kept = np.flatnonzero(~eliminated)
    m = len(kept)
    local = -np.ones(N + K, dtype=np.int64)
    local[kept] = np.arange(m)
    rows: list[int] = []
    colsp: list[int] = []

    def couple(members: list[int]) -> None:
        for a in members:
            for b in members:
                rows.append(a)
                colsp.append(b)

    for j in range(J):
        couple([int(local[i]) for i in ent_idx[ent_ptr[j] : ent_ptr[j + 1]] if local[i] >= 0])
    for o in elim_nodes:
        members: set[int] = set()
        for j in var_agent[var_ptr[o] : var_ptr[o + 1]]:
            members.update(int(local[i]) for i in ent_idx[ent_ptr[j] : ent_ptr[j + 1]] if local[i] >= 0)
        couple(sorted(members))
    pattern = coo_matrix((np.ones(len(rows)), (rows, colsp)), shape=(m, m)).tocsr()
    candidates = [np.arange(m, dtype=np.int64)]
    if m > 2:
        candidates.append(np.asarray(reverse_cuthill_mckee(pattern, symmetric_mode=True), dtype=np.int64))
    best_perm, best_size = candidates[0], np.inf
    for perm in candidates:
        permuted = pattern[perm][:, perm].tocsr()
        first = [
            min(i, int(permuted.indices[permuted.indptr[i] : permuted.indptr[i + 1]].min(initial=i))) for i in range(m)
        ]
        profile = float(np.sum(np.arange(m) - np.array(first)))  # a proxy for the factor's fill
        if profile < best_size:
            best_perm, best_size = perm, profile
    position = -np.ones(N + K, dtype=np.int64)
    position[kept[best_perm]] = np.arange(m)
    return PreparedTopology(
        n_nodes=N,
        n_cons=K,
        ent_ptr=ent_ptr,
        ent_idx=ent_idx,
        ent_val=ent_val,
        var_ptr=var_ptr,
        var_agent=var_agent,
        var_coef=var_coef,
        eliminated=eliminated,
        elim_nodes=elim_nodes,
        position=position,
        n_reduced=m,
    )


def _assert_same(a: PreparedTopology, b: PreparedTopology) -> None:
    for name in PreparedTopology.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape, name
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            assert x == y, name


def _topologies() -> list[Topology]:
    rng = np.random.default_rng(7)
    tops = [
        chain_topology(
            random_layout(rng, int(rng.integers(1, 5)), int(rng.integers(1, 9)), quotas=int(rng.integers(0, 5)))
        )
        for _ in range(60)
    ]
    # an agent listing one node twice, a zero coefficient, repeated constraint entries, a node with no agent
    tops.append(
        Topology(
            node_labels=("a", "b", "c", "d"),
            agent_labels=("x", "y", "z"),
            agent_node=np.array([[0, 0], [1, 2], [2, -1]]),
            agent_coef=np.array([[1.0, 2.0], [0.0, 1.0], [-1.0, 0.0]]),
            con_labels=("k", "l"),
            con_row=np.array([0, 0, 0, 1, 1]),
            con_agent=np.array([1, 1, 2, 0, 2]),
            con_coef=np.array([1.0, 0.5, 0.0, 2.0, -1.0]),
        )
    )
    return tops


@pytest.mark.parametrize("index", range(61))
def test_prepare_topology_matches_loop_reference(index: int) -> None:
    topology = _topologies()[index]
    _assert_same(prepare_topology(topology), _reference_prepare(topology))


def test_default_world_topologies_match_loop_reference() -> None:
    from critmin.data.calibrate import calibrate
    from critmin.data.world import load_world
    from critmin.market.build import MarketLayout, topology_with_yields

    for cal in calibrate(load_world()).values():
        layout = MarketLayout.for_mineral(cal)
        topology = topology_with_yields(layout, [cal])
        _assert_same(prepare_topology(topology), _reference_prepare(topology))


def test_prepared_structures_are_cached_by_content() -> None:
    rng = np.random.default_rng(3)
    layout = random_layout(rng, 3, 4, quotas=2)
    first, second = chain_topology(layout), chain_topology(layout)
    assert first is not second
    engine.clear_prepared_cache()
    assert engine._prepared_by_content(first) is engine._prepared_by_content(second)
    other = chain_topology(random_layout(rng, 2, 4, quotas=1))
    assert engine._prepared_by_content(other) is not engine._prepared_by_content(first)


def test_serial_kernel_matches_threaded_kernel() -> None:
    rng = np.random.default_rng(11)
    layout = random_layout(rng, 3, 5, quotas=2)
    topology = chain_topology(layout)
    data = random_batch(rng, layout, 6)
    solver = engine.BatchedNewtonSolver(share_starts=False)
    batch = solver.solve(topology, data)  # threaded (B > 1)
    for b in range(data.n_instances):
        single = solver.solve(topology, data.take(np.array([b])))  # calling thread (B == 1)
        np.testing.assert_array_equal(single.price[0], batch.price[b])
        np.testing.assert_array_equal(single.rent[0], batch.rent[b])
        np.testing.assert_array_equal(single.iterations[0], batch.iterations[b])


def _alike_batch(seed: int, n: int, spread: float) -> tuple[Topology, InstanceData]:
    """``n`` instances that differ from one random instance by up to ``spread`` in costs and slopes."""
    rng = np.random.default_rng(seed)
    layout = random_layout(rng, 3, 6, quotas=1)
    topology = chain_topology(layout)
    one = random_batch(rng, layout, 1, scaled=False)
    idx = np.zeros(n, dtype=np.int64)
    data = one.take(idx)
    data.cost = data.cost * rng.uniform(1.0 - spread, 1.0 + spread, data.cost.shape)
    data.slope = data.slope * rng.uniform(1.0 - spread, 1.0 + spread, data.slope.shape)
    return topology, data


def test_shared_starts_threaded_and_serial_kernels_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """With shared starts the rounds, and so every instance's start and answer, do not depend on threads."""
    topology, data = _alike_batch(21, 11, 0.2)
    threaded = engine.BatchedNewtonSolver().solve(topology, data)
    monkeypatch.setattr(engine, "_solve_batch", engine._solve_batch_serial)
    serial = engine.BatchedNewtonSolver().solve(topology, data)
    np.testing.assert_array_equal(threaded.price, serial.price)
    np.testing.assert_array_equal(threaded.iterations, serial.iterations)


def test_shared_starts_cut_iterations_and_keep_answers() -> None:
    """Alike instances started from each other's solutions: fewer Newton steps, the same equilibrium."""
    topology, data = _alike_batch(22, 16, 0.05)
    shared = engine.BatchedNewtonSolver()
    alone = engine.BatchedNewtonSolver(share_starts=False)
    a = shared.solve(topology, data)
    b = alone.solve(topology, data)
    sources = shared.last_sources
    assert sources[0] == -1 and (alone.last_sources == -1).all()
    # rounds of 1, 1, 2, 4, 8: an instance starts only from one solved in an earlier round
    rounds = np.repeat(np.arange(5), [1, 1, 2, 4, 8])
    used = sources >= 0
    assert used.sum() >= 12
    assert (rounds[sources[used]] < rounds[used]).all()
    assert a.iterations.sum() < 0.6 * b.iterations.sum()
    np.testing.assert_allclose(a.level, b.level, rtol=1e-7, atol=1e-7 * np.abs(b.level).max())
    np.testing.assert_allclose(a.price, b.price, rtol=1e-7)
    assert a.residuals.worst().max() <= 1e-9


def test_repeated_instances_are_solved_once_and_copied() -> None:
    rng = np.random.default_rng(12)
    layout = random_layout(rng, 2, 5, quotas=1)
    topology = chain_topology(layout)
    data = random_batch(rng, layout, 4)
    start = rng.uniform(0.5, 1.5, (4, topology.n_nodes)) * data.price_scale[:, None]
    repeat = np.array([2, 0, 2, 3, 0, 0, 1])
    # each instance on its own start (shared starts would make the order of the distinct instances matter)
    solver = engine.BatchedNewtonSolver(share_starts=False)
    distinct = solver.solve(topology, data, warm_start=start)
    found = engine._distinct_instances(data.take(repeat), start[repeat], None)
    assert found is not None
    np.testing.assert_array_equal(found[0], [0, 1, 3, 6])  # the first of each kind, in order of appearance
    np.testing.assert_array_equal(repeat[found[0]][found[1]], repeat)
    batch = solver.solve(topology, data.take(repeat), warm_start=start[repeat])
    np.testing.assert_array_equal(batch.price, distinct.price[repeat])
    np.testing.assert_array_equal(batch.level, distinct.level[repeat])
    np.testing.assert_array_equal(batch.rent, distinct.rent[repeat])
    np.testing.assert_array_equal(batch.iterations, distinct.iterations[repeat])
    np.testing.assert_array_equal(batch.residuals.worst(), distinct.residuals.worst()[repeat])
    assert solver.last_stats.shape == (7, 4)
    # the same numbers from another start are another instance
    moved = start[repeat].copy()
    moved[4] *= 1.01
    assert engine._distinct_instances(data.take(repeat), moved, None)[0].tolist() == [0, 1, 3, 4, 6]
    # a batch without repeats is left as it is
    assert engine._distinct_instances(data, start, None) is None
    assert engine._distinct_instances(data, None, None) is None
    # with shared starts the distinct instances are solved in order of first appearance, then copied
    shared = engine.BatchedNewtonSolver()
    copied = shared.solve(topology, data.take(repeat), warm_start=start[repeat])
    order = repeat[found[0]]
    once = engine.BatchedNewtonSolver().solve(topology, data.take(order), warm_start=start[order])
    np.testing.assert_array_equal(copied.price, once.price[found[1]])
    np.testing.assert_array_equal(shared.last_sources[[0, 2]], [-1, -1])  # instance 2, then its copy


@pytest.mark.parametrize("threads", [1, 2])
def test_batches_solved_together_get_what_each_gets_alone(threads: int) -> None:
    """``solve_many`` (the minerals of a period in one call) gives each batch exactly its ``solve`` answer,
    whether the batches run side by side on the engine's threads or in turn, warm-started or cold, with
    repeated instances and single-instance batches among them."""
    rng = np.random.default_rng(31)
    problems = []
    for stages, regions, n in ((3, 6, 5), (2, 4, 1), (1, 7, 9), (2, 5, 3)):
        layout = random_layout(rng, stages, regions, quotas=1)
        topology = chain_topology(layout)
        data = random_batch(rng, layout, n)
        warm = None
        if stages == 2 and n > 1:
            data = data.take(np.array([0, 1, 0, 2]))  # repeated instances among warm-started ones
            warm = rng.uniform(0.5, 1.5, (4, topology.n_nodes)) * data.price_scale[:, None]
        problems.append(BatchProblem(topology, data, warm_start=warm))
    solver = engine.BatchedNewtonSolver()
    alone = [solver.solve(p.topology, p.data, warm_start=p.warm_start) for p in problems]
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        together = solver.solve_many(problems)
    finally:
        numba.set_num_threads(before)
    assert len(together) == len(problems)
    for a, t in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a.price, t.price)
        np.testing.assert_array_equal(a.level, t.level)
        np.testing.assert_array_equal(a.rent, t.rent)
        np.testing.assert_array_equal(a.iterations, t.iterations)
        np.testing.assert_array_equal(a.warm_price, t.warm_price)


def test_batches_solved_together_raise_for_the_first_failing_batch() -> None:
    """A failing batch among several raises its own error (naming its instance), for the first in the given
    order, as solving them one after the other would: a batch refused before solving (crossed bounds) and
    one found infeasible by the solve (an injection with nowhere to go), on one thread and on two."""
    rng = np.random.default_rng(32)
    layout = random_layout(rng, 2, 4, quotas=0)
    topology = chain_topology(layout)
    good = replace(random_batch(rng, layout, 3), instance_labels=("good 0", "good 1", "good 2"))
    crossed = replace(random_batch(rng, layout, 2), instance_labels=("crossed 0", "crossed 1"))
    crossed.lower = crossed.upper + 1.0
    # one node, a supplier at the node and a must-run injection of 5 with no use: the balance cannot hold
    stuck_topology = Topology(
        node_labels=("n0", "n1"),
        agent_labels=("supply", "use"),
        agent_node=np.array([[0, -1], [1, -1]], dtype=np.int64),
        agent_coef=np.array([[1.0, 0.0], [-1.0, 0.0]]),
        con_labels=(),
        con_row=np.zeros(0, dtype=np.int64),
        con_agent=np.zeros(0, dtype=np.int64),
        con_coef=np.zeros(0),
    )
    one = lambda values: np.array([values], dtype=float)  # noqa: E731
    stuck = InstanceData(
        cost=one([10.0, -100.0]),
        slope=one([1.0, 1.0]),
        lower=one([0.0, 0.0]),
        upper=one([np.inf, 0.0]),
        injection=one([0.0, 5.0]),
        rhs=np.zeros((1, 0)),
        price_scale=np.array([100.0]),
        quantity_scale=np.array([100.0]),
        instance_labels=("stuck",),
    )
    cases = {
        "crossed 0": [
            BatchProblem(topology, good),
            BatchProblem(topology, crossed),
            BatchProblem(stuck_topology, stuck),
        ],
        "stuck": [BatchProblem(topology, good), BatchProblem(stuck_topology, stuck), BatchProblem(topology, crossed)],
    }
    for threads in (1, 2):
        before = numba.get_num_threads()
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            for first_failing, problems in cases.items():
                with pytest.raises(InfeasibleError, match=first_failing):
                    engine.BatchedNewtonSolver().solve_many(problems)
        finally:
            numba.set_num_threads(before)
