"""Where the time of one scenario run goes: world and calibration, per-period building, solving, dataset.

Times the phases of :func:`critmin.simulate.run.run_scenario` followed by
:func:`critmin.results.dataset.to_dataset` for ``baseline`` and ``club-2026`` (default world). A warm-up
run in the same process first compiles (or loads) the numba kernels, so no figure includes compilation.

Two settings are measured, each the fastest of ``--repeat`` runs (on a shared machine the fastest run is
the least disturbed one):

* ``cold``: every in-process cache (parsed worlds, calibrations, prepared topologies, layouts) is cleared
  before each run, as for ``critmin run`` in a fresh process (numba kernels aside);
* ``warm``: caches kept, as for the second and later draws of an ensemble in one worker.

Phases: ``world+cal`` (load the world and calibrate it), ``build`` (everything of ``run_scenario`` outside
the solver: instruments, instance data, outcomes, settling), ``solve`` (time inside the solver, as the run
record reports it), ``dataset`` (``to_dataset``), ``wall`` (their sum).

Prints a table and one final line:
``baseline_wall_s=<...> baseline_solve_s=<...> club2026_wall_s=<...>`` (the cold settings).

Usage: ``python benchmarks/run_profile.py [--repeat 3] [--profile SCENARIO]``; ``--profile`` also prints
the 25 costliest functions (cProfile, cumulative) of one warm run of that scenario.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any


def clear_caches() -> None:
    """Clear every in-process cache a run relies on (whichever exist in this version of the code)."""
    import importlib

    from critmin.data import calibrate, world

    world._load_cached.cache_clear()
    calibrate._CACHE.clear()
    unit_factor = getattr(importlib.import_module("critmin.core.units"), "_unit_factor", None)
    if unit_factor is not None:
        unit_factor.cache_clear()  # conversion factors (the pint registry itself is start-up)
    for module_name, names in (
        ("critmin.market.engine", ("clear_prepared_cache",)),
        ("critmin.market.build", ("clear_layout_cache",)),
        ("critmin.simulate.run", ("clear_caches",)),
    ):
        module = importlib.import_module(module_name)
        for name in names:
            fn = getattr(module, name, None)
            if fn is not None:
                fn()


def time_once(name: str, cold: bool) -> dict[str, float]:
    """The phases of one run of scenario ``name`` (seconds)."""
    from critmin.data.calibrate import calibrate
    from critmin.results.dataset import to_dataset
    from critmin.simulate.run import resolve_world, run_scenario
    from critmin.simulate.scenario import load_scenario

    spec = load_scenario(name)
    if cold:
        clear_caches()
    t0 = time.perf_counter()
    world = resolve_world(spec.world)
    calibrate(world)
    t1 = time.perf_counter()
    record = run_scenario(spec, world)
    t2 = time.perf_counter()
    to_dataset(record)
    t3 = time.perf_counter()
    return {
        "world+cal": t1 - t0,
        "build": (t2 - t1) - record.solve_time_s,
        "solve": record.solve_time_s,
        "dataset": t3 - t2,
        "wall": t3 - t0,
    }


def fastest_phases(name: str, cold: bool, repeat: int) -> dict[str, float]:
    """Each phase of the fastest of ``repeat`` runs (by wall time)."""
    runs = [time_once(name, cold) for _ in range(repeat)]
    return min(runs, key=lambda r: r["wall"])


def profile(name: str) -> None:
    """Print the costliest functions of one warm run of ``name``."""
    from critmin.results.dataset import to_dataset
    from critmin.simulate.run import run_scenario
    from critmin.simulate.scenario import load_scenario

    spec = load_scenario(name)
    prof = cProfile.Profile()
    prof.enable()
    to_dataset(run_scenario(spec))
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", default=None, help="also profile one warm run of this scenario")
    args = parser.parse_args()
    from critmin.core.threads import limit_blas_threads

    limit_blas_threads()  # as the critmin command does
    scenarios = ("baseline", "club-2026")
    t0 = time.perf_counter()
    for name in scenarios:  # warm-up: numba compilation or cache loading
        time_once(name, cold=True)
    print(f"warm-up (compilation, first loads): {time.perf_counter() - t0:.2f} s")
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for name in scenarios:
        for setting in ("cold", "warm"):
            results[name, setting] = fastest_phases(name, setting == "cold", args.repeat)
    phases = ("world+cal", "build", "solve", "dataset", "wall")
    print(f"{'scenario':<12} {'caches':<6} " + " ".join(f"{p:>10}" for p in phases))
    for (name, setting), row in results.items():
        print(f"{name:<12} {setting:<6} " + " ".join(f"{row[p]:10.3f}" for p in phases))
    if args.profile:
        profile(args.profile)
    base, club = results["baseline", "cold"], results["club-2026", "cold"]
    print(f"baseline_wall_s={base['wall']:.3f} baseline_solve_s={base['solve']:.3f} club2026_wall_s={club['wall']:.3f}")


if __name__ == "__main__":
    main()
