"""Batched engine against HiGHS on the same period problems, in one run.

Usage::

    PYTHONPATH=src python benchmarks/engine_vs_highs.py [--instances 64] [--seed 0]

Problem sets: random chains of the default world's size (3 stages and 2 stages, 21 regions, 5 sectors,
with bans, offtakes, quotas, segments and must-run injections; built by ``tests/random_instances.py``) and,
when ``critmin.market.build.default_world_problems`` is importable, the default world's own period problems.
Each set is solved by the engine (all cores, and one thread) and by HiGHS (one instance at a time, model built
once per topology); compile time is excluded by a warm-up solve. Prices are compared at every node whose price
the equilibrium determines (see ``undetermined_nodes``), relative to ``price_scale``.

A warm-start figure solves each random set again one "period" later (demand +3%, capacity +2%, wedges
shifted) from the first solution's prices.

The last line is ``throughput_ratio=<engine/HiGHS> max_rel_price_gap=<...> instances=<n>``, where the ratio
compares the engine on all cores with HiGHS on one (HiGHS solves one QP on one core); the per-core ratio is
printed above it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from critmin.core.errors import SolveError
from critmin.core.threads import limit_blas_threads
from critmin.market.engine import BatchedNewtonSolver
from critmin.market.problem import BatchProblem, InstanceData, Solution, Topology, residuals
from critmin.market.reference import HighsSolver
from random_instances import chain_topology, random_batch, random_layout, undetermined_nodes

T = TypeVar("T")


@dataclass
class SetResult:
    name: str
    instances: int
    engine_seconds: float
    engine_seconds_one_thread: float
    highs_seconds: float
    max_gap: float
    engine_iterations: float


def _timed(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Best wall time over ``repeats`` calls of ``fn()`` and its last result."""
    best = np.inf
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


def _max_price_gap(topology: Topology, data: InstanceData, engine: Solution, highs: Solution, ok: np.ndarray) -> float:
    """Largest price gap over the nodes whose price the equilibrium determines, relative to price_scale."""
    gaps = [0.0]
    N = topology.n_nodes
    for b in np.flatnonzero(ok):
        free = ~undetermined_nodes(topology, data, highs.level, highs.rent, int(b))[:N]
        gap = np.abs(engine.price[b] - highs.price[b])[free] / data.price_scale[b]
        gaps.append(float(gap.max(initial=0.0)))
    return max(gaps)


def _highs_one_by_one(highs: HighsSolver, topology: Topology, data: InstanceData) -> tuple[float, Solution, np.ndarray]:
    """HiGHS on each instance in turn: total time, the solutions, and which instances it solved."""
    N, K, J, B = topology.n_nodes, topology.n_cons, topology.n_agents, data.n_instances
    price, rent, level = np.zeros((B, N)), np.zeros((B, K)), np.zeros((B, J))
    ok = np.zeros(B, dtype=bool)
    repeated, polished = [], []
    start = time.perf_counter()
    for b in range(B):
        try:
            one = highs.solve(topology, data.take(slice(b, b + 1)), tol=1e-5)
        except SolveError as error:
            print(f"  HiGHS failed on {data.label(b)}: {error.reason}")
            continue
        finally:
            repeated += highs.last_repeated
            polished += highs.last_polished
        price[b], rent[b], level[b], ok[b] = one.price[0], one.rent[0], one.level[0], True
    elapsed = time.perf_counter() - start
    if repeated or polished:
        print(f"  HiGHS solved {len(repeated)} instances more than once and kept {len(polished)} polished answers")
    solution = Solution(price, level, rent, np.zeros(B, dtype=np.int64), residuals(topology, data, price, level, rent))
    return elapsed, solution, ok


def compare(
    name: str,
    topology: Topology,
    data: InstanceData,
    repeats: int,
    problems: list[tuple[Topology, InstanceData, Solution, np.ndarray]],
) -> SetResult:
    """Solve one batch with both solvers and report times and the largest price gap; the batch and HiGHS's
    answers are appended to ``problems``."""
    engine = BatchedNewtonSolver()
    highs = HighsSolver()
    engine.solve(topology, data.take(slice(0, 1)))  # compile (or load the cache) and prepare the topology
    threads = numba.get_num_threads()
    engine_time, engine_solution = _timed(lambda: engine.solve(topology, data), repeats)
    numba.set_num_threads(1)
    try:
        engine_time_one, _ = _timed(lambda: engine.solve(topology, data), repeats)
    finally:
        numba.set_num_threads(threads)
    highs._model(topology)  # build the model once, outside the timing
    highs_time, highs_solution, ok = _highs_one_by_one(highs, topology, data)
    gap = _max_price_gap(topology, data, engine_solution, highs_solution, ok)
    problems.append((topology, data, highs_solution, ok))
    result = SetResult(
        name=name,
        instances=data.n_instances,
        engine_seconds=engine_time,
        engine_seconds_one_thread=engine_time_one,
        highs_seconds=highs_time,
        max_gap=gap,
        engine_iterations=float(engine_solution.iterations.mean()),
    )
    per = 1e6 / data.n_instances
    print(
        f"{name}: {data.n_instances} instances, N={topology.n_nodes} J={topology.n_agents} K={topology.n_cons}; "
        f"engine {engine_time * per:.0f} us/instance on {threads} threads "
        f"({engine_time_one * per:.0f} us on 1), {result.engine_iterations:.1f} Newton iterations; "
        f"HiGHS {highs_time * per:.0f} us/instance; max price gap {gap:.2e}"
    )
    return result


def all_at_once(
    problems: list[tuple[Topology, InstanceData, Solution, np.ndarray]], repeats: int
) -> tuple[float, float, float]:
    """Every set solved in one ``solve_many`` call: best wall time on all threads and on one, and the
    largest price gap to HiGHS (the answers are those of the sets solved alone, bit for bit)."""
    engine = BatchedNewtonSolver()
    batches = [BatchProblem(topology, data) for topology, data, _, _ in problems]
    seconds, solutions = _timed(lambda: engine.solve_many(batches), repeats)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        seconds_one, _ = _timed(lambda: engine.solve_many(batches), repeats)
    finally:
        numba.set_num_threads(threads)
    gap = max(
        _max_price_gap(topology, data, solution, highs, ok)
        for (topology, data, highs, ok), solution in zip(problems, solutions, strict=True)
    )
    return seconds, seconds_one, gap


def next_period(data: InstanceData, rng: np.random.Generator) -> InstanceData:
    """The same instances one period later: demand +3%, capacity +2%, small cost shifts."""
    demand = data.cost < 0.0  # sectors and buy segments carry a negative cost (their value)
    shift = 0.01 * data.price_scale[:, None] * rng.uniform(-1.0, 1.0, data.cost.shape)
    cost = np.where(demand, data.cost * 1.03, data.cost + shift)
    upper = np.where(np.isfinite(data.upper) & (data.upper > 0.0), data.upper * 1.02, data.upper)
    return replace(data, cost=cost, upper=upper, lower=np.minimum(data.lower, upper))


def warm_start_figures(name: str, topology: Topology, data: InstanceData, rng: np.random.Generator) -> None:
    """Cold against warm-started solves of the next period."""
    engine = BatchedNewtonSolver()
    first = engine.solve(topology, data)
    later = next_period(data, rng)
    engine.solve(topology, later.take(slice(0, 1)))
    cold_time, cold = _timed(lambda: engine.solve(topology, later), 3)
    warm_time, warm = _timed(
        lambda: engine.solve(topology, later, warm_start=first.warm_price, warm_rents=first.warm_rent), 3
    )
    per = 1e6 / data.n_instances
    print(
        f"{name} next period: cold {cold.iterations.mean():.1f} iterations, {cold_time * per:.0f} us/instance; "
        f"warm {warm.iterations.mean():.1f} iterations, {warm_time * per:.0f} us/instance"
    )


def random_set(rng: np.random.Generator, stages: int, instances: int) -> tuple[str, Topology, InstanceData]:
    """A random chain of the default world's size (21 regions, 5 sectors, with segments and quotas)."""
    layout = random_layout(rng, stages, 21, sectors=5, segments=2, quotas=2)
    return f"random {stages}-stage chain, 21 regions", chain_topology(layout), random_batch(rng, layout, instances)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=64, help="instances per random set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="engine timings keep the best of this many")
    args = parser.parse_args()
    limit_blas_threads()  # as the critmin command does: idle BLAS threads would spin on the engine's cores
    rng = np.random.default_rng(args.seed)
    print(f"cores: {os.cpu_count()}, numba threads: {numba.get_num_threads()}")

    results: list[SetResult] = []
    problems: list[tuple[Topology, InstanceData, Solution, np.ndarray]] = []
    for stages in (3, 2):
        name, topology, data = random_set(rng, stages, args.instances)
        results.append(compare(name, topology, data, args.repeats, problems))
        warm_start_figures(name, topology, data, rng)

    try:
        from critmin.market.build import default_world_problems
    except ImportError as error:
        print(f"default world: not available ({error})")
    else:
        try:
            batches = default_world_problems()
        except Exception as error:  # the data layer is still being written; report, do not stop
            print(f"default world: not available ({type(error).__name__}: {error})")
        else:
            for i, (topology, data) in enumerate(batches):
                results.append(compare(f"default world batch {i}", topology, data, args.repeats, problems))

    n = sum(r.instances for r in results)
    batch_rate = n / sum(r.engine_seconds for r in results)
    batch_rate_one = n / sum(r.engine_seconds_one_thread for r in results)
    highs_rate = n / sum(r.highs_seconds for r in results)
    gap = max(r.max_gap for r in results)
    threads = numba.get_num_threads()
    print(
        f"one batch at a time: engine {batch_rate:.0f}/s on {threads} threads, {batch_rate_one:.0f}/s on 1; "
        f"ratio {batch_rate / highs_rate:.1f}"
    )
    # Every set in one call, as a run solves the minerals of a period: the batches spread over the threads.
    all_time, all_time_one, gap_all = all_at_once(problems, repeats=max(args.repeats, 3))
    gap = max(gap, gap_all)
    engine_rate, engine_rate_one = n / all_time, n / all_time_one
    print(
        f"throughput: engine {engine_rate:.0f}/s on {threads} threads, {engine_rate_one:.0f}/s on 1 (all sets "
        f"in one call); HiGHS {highs_rate:.1f}/s; per-core ratio {engine_rate_one / highs_rate:.0f}"
    )
    print(f"throughput_ratio={engine_rate / highs_rate:.1f} max_rel_price_gap={gap:.2e} instances={n}")


if __name__ == "__main__":
    main()
