"""The engine of the working tree against the engine of another git revision, side by side in one process.

Usage::

    PYTHONPATH=src python benchmarks/engine_ab.py [--against HEAD~1] [--rounds 15] [--warm-chunk 10]

On a shared machine whose speed changes by half for seconds at a time, two versions timed in separate
processes (even run at once, one per core) disagree by more than the changes being measured. Here both
versions live in one process: ``src/critmin/market/engine.py`` of ``--against`` and of the working tree are
loaded as two further modules (the rest of the package is shared, so the older engine must still fit today's
``problem.py``), and
each solve of a problem set is made by one then the other, alternating which goes first, ``--rounds`` times;
each solve's best time is kept, and a set's time is the sum of its solves' best times (a burst of load then
spoils single solves, not a whole set). One thread (the kernels themselves, not the thread pool).

Problem sets: the engine benchmark's (random 3- and 2-stage chains of the default world's size, 32 instances
each, and the default world's period problems, cold). With ``--warm-chunk N``, also every solve of an
``N``-draw ``club-vs-ban`` chunk (warm-started, as an ensemble runs them), captured from the working tree's
run and replayed by both.

The last line is ``time_ratio=<new/old> iterations_new=<...> iterations_old=<...>`` for the cold sets; a
ratio of the same code against itself (``--against`` naming the working tree's own commit, unchanged)
shows the noise that remains.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numba
import numpy as np

import critmin.market.engine as new_engine
from critmin.core.threads import limit_blas_threads
from engine_vs_highs import random_set

ROOT = Path(__file__).resolve().parents[1]
ENGINE_PATH = "src/critmin/market/engine.py"


def load_engine(revision: str | None, folder: Path, name: str) -> ModuleType:
    """``engine.py`` of ``revision`` (``None``: the working tree's), imported as the module ``name``.

    Both engines are loaded this way, from files of their own, so that neither is the one the rest of the
    package imported (that one also ran the chunk whose solves are replayed).
    """
    if revision is None:
        text = (ROOT / ENGINE_PATH).read_text()
    else:
        try:
            text = subprocess.run(
                ["git", "show", f"{revision}:{ENGINE_PATH}"], cwd=ROOT, check=True, capture_output=True, text=True
            ).stdout
        except subprocess.CalledProcessError as error:
            raise SystemExit(f"engine_ab: cannot read {ENGINE_PATH} at {revision!r}: {error.stderr.strip()}") from error
    path = folder / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def cold_sets(seed: int) -> list[tuple[str, Any, Any]]:
    """The engine benchmark's problem sets: (name, topology, data)."""
    from critmin.market.build import default_world_problems

    rng = np.random.default_rng(seed)
    sets = [random_set(rng, stages, 32) for stages in (3, 2)]
    for topology, data in default_world_problems():
        sets.append((f"default world {data.label(0).split()[0]}", topology, data))
    return sets


def warm_calls(draws: int) -> list[tuple[Any, Any, dict[str, Any]]]:
    """Every solve (topology, data, warm start) of a ``draws``-draw ``club-vs-ban`` chunk."""
    from critmin.ensemble.runner import make_chunks, solve_chunk
    from critmin.ensemble.sampling import draw_table
    from critmin.simulate.scenario import load_scenario

    spec = load_scenario("club-vs-ban")
    base = spec.model_dump(mode="json")
    base["uncertainty"] = None
    payload = make_chunks(base, draw_table(spec.uncertainty, draws, 1), spec.world, draws)[0]
    calls: list[tuple[Any, Any, dict[str, Any]]] = []
    original = new_engine.BatchedNewtonSolver.solve

    def capture(self: Any, topology: Any, data: Any, **kwargs: Any) -> Any:
        calls.append((topology, data, kwargs))
        return original(self, topology, data, **kwargs)

    new_engine.BatchedNewtonSolver.solve = capture  # type: ignore[method-assign]
    try:
        solve_chunk(payload)
    finally:
        new_engine.BatchedNewtonSolver.solve = original  # type: ignore[method-assign]
    return calls


def side_by_side(
    solvers: dict[str, Any], jobs: list[list[tuple[Any, Any, dict[str, Any]]]], rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Time and Newton iterations of each solver on each job (a list of solves).

    Each solve is timed on its own, the two solvers one right after the other (in alternating order), and
    its best time over the rounds is kept; a job's time is the sum of its solves' best times. A burst of
    load on the machine then spoils single solves of one round, not a whole job.
    """
    solve_best = {name: [np.full(len(job), np.inf) for job in jobs] for name in solvers}
    iterations = {name: [0] * len(jobs) for name in solvers}
    for solver in solvers.values():  # compile (or load the cache) and prepare every topology
        for job in jobs:
            for topology, data, kwargs in job:
                solver.solve(topology, data, **kwargs)
    for i, job in enumerate(jobs):
        for r in range(rounds):
            count = dict.fromkeys(solvers, 0)
            for k, (topology, data, kwargs) in enumerate(job):
                order = list(solvers) if (r + k) % 2 == 0 else list(reversed(solvers))
                for name in order:
                    start = time.perf_counter()
                    solution = solvers[name].solve(topology, data, **kwargs)
                    elapsed = time.perf_counter() - start
                    solve_best[name][i][k] = min(solve_best[name][i][k], elapsed)
                    count[name] += int(solution.iterations.sum())
            for name in solvers:
                iterations[name][i] = count[name]
    best = {name: [float(times.sum()) for times in solve_best[name]] for name in solvers}
    return best, iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD", help="git revision of the engine to compare with")
    parser.add_argument("--rounds", type=int, default=15, help="solves of each set by each engine (best kept)")
    parser.add_argument("--warm-chunk", type=int, default=0, help="also replay a club-vs-ban chunk of N draws")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    limit_blas_threads()
    numba.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        old_engine = load_engine(args.against, Path(folder), "critmin_engine_ab_old")
        this_engine = load_engine(None, Path(folder), "critmin_engine_ab_new")
        solvers = {"new": this_engine.BatchedNewtonSolver(), "old": old_engine.BatchedNewtonSolver()}
        sets = cold_sets(args.seed)
        jobs = [[(topology, data, {})] for _, topology, data in sets]
        best, its = side_by_side(solvers, jobs, args.rounds)
        for i, (name, _, data) in enumerate(sets):
            print(
                f"{name}: {data.n_instances} instances; new {best['new'][i] * 1e3:.1f} ms "
                f"({its['new'][i] / data.n_instances:.1f} iterations), old {best['old'][i] * 1e3:.1f} ms "
                f"({its['old'][i] / data.n_instances:.1f}); ratio {best['new'][i] / best['old'][i]:.3f}"
            )
        if args.warm_chunk > 0:
            calls = warm_calls(args.warm_chunk)
            warm_best, warm_its = side_by_side(solvers, [calls], max(3, args.rounds // 2))
            print(
                f"club-vs-ban chunk of {args.warm_chunk} draws ({len(calls)} warm-started solves): "
                f"new {warm_best['new'][0]:.3f} s ({warm_its['new'][0]} iterations), old {warm_best['old'][0]:.3f} s "
                f"({warm_its['old'][0]}); ratio {warm_best['new'][0] / warm_best['old'][0]:.3f}"
            )
    ratio = sum(best["new"]) / sum(best["old"])
    print(f"time_ratio={ratio:.3f} iterations_new={sum(its['new'])} iterations_old={sum(its['old'])}")


if __name__ == "__main__":
    main()
