"""Ensembles from Python: draw, execute, store, resume; returns a labelled cube plus the table of draws.

    from critmin.results.ensemble import run_ensemble
    result = run_ensemble("club-vs-ban", draws=1000, seed=7)
    result.cube      # xr.Dataset with a draw dimension
    result.draws     # pd.DataFrame: one row per draw, one column per uncertain input
    result.metrics   # per-draw headline metrics (long table)

Every run is registered in the results store (DuckDB) before any work starts; chunks are written as they
complete, and the run is marked complete only when every draw is stored exactly once. An interrupted run
resumes with ``run_ensemble(resume=RUN_ID)``: the stored table of draws is reused and only missing chunks
are computed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import xarray as xr
import yaml

import critmin
from critmin.core.errors import CritminError
from critmin.ensemble.draws import check_draws
from critmin.ensemble.runner import ChunkResult, Executor, execute, make_chunks
from critmin.ensemble.sampling import draw_table
from critmin.results.store import Store
from critmin.simulate.scenario import Scenario, load_scenario, scenario_from_dict

if TYPE_CHECKING:
    from critmin.data.calibrate import CalibratedMineral

#: Draws per chunk: fixed by the run (never by the number of workers), so results do not depend on them.
DEFAULT_CHUNK_SIZE = 50


@dataclass
class EnsembleResult:
    """An ensemble's outputs, as read back from the store."""

    run_id: str
    cube: xr.Dataset
    draws: pd.DataFrame
    metrics: pd.DataFrame


def scenario_hash(spec: Scenario) -> str:
    """A content hash of a scenario (canonical JSON)."""
    text = json.dumps(spec.model_dump(mode="json"), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_version(world_spec: str) -> str:
    """A content hash of the world's files."""
    from critmin.simulate.run import resolve_world

    world = resolve_world(world_spec)
    digest = hashlib.sha256()
    for path in sorted(Path(world.path).glob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return f"{world.name}-{digest.hexdigest()[:12]}"


@functools.cache
def code_version() -> str:
    """The package's version and a content hash of its source files (``critmin-0.1.0+3f2a...``): two
    checkouts of one version that compute differently have different code versions."""
    root = Path(critmin.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return f"critmin-{critmin.__version__}+{digest.hexdigest()[:10]}"


def run_ensemble(
    scenario: str | Path | Scenario | None = None,
    *,
    draws: int = 100,
    seed: int = 0,
    workers: int | None = None,
    scheduler: str | None = None,
    executor: Executor = "dask",
    store: Store | str | Path | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    resume: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    load: bool = True,
) -> EnsembleResult:
    """Run (or resume) an ensemble of a scenario and store it; see the module docs.

    ``progress(done, total)`` is called after every chunk (``done`` counts draws stored so far).
    """
    if workers is not None and workers < 1:
        raise CritminError(f"workers must be at least 1, got {workers}")
    db = store if isinstance(store, Store) else Store(store)
    if resume is not None:
        info = db.get_run(resume)
        run_id = str(info["id"])
        if info.get("kind") == "single":
            raise CritminError(f"run {run_id} is a single run, not an ensemble; run its scenario again instead")
        spec = scenario_from_dict(yaml.safe_load(info["scenario_yaml"]), file=f"run {run_id}")
        _check_same_versions(run_id, info, spec)
        table = db.load_draws(run_id)
        chunk_size = int(info.get("chunk_size") or chunk_size)
        n = int(info["n_draws"])
        db.reopen_run(run_id)
    else:
        if scenario is None:
            raise CritminError("name a scenario to run, or a run to resume")
        spec = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        file = None if isinstance(scenario, Scenario) else str(scenario)
        run_id = register_ensemble(spec, db, draws=draws, seed=seed, chunk_size=chunk_size, file=file)
        table = db.load_draws(run_id)
        n = draws
    base = spec.model_dump(mode="json")
    base["uncertainty"] = None
    done = db.completed_draws(run_id)
    t0 = time.perf_counter()
    stored = len(done)

    def on_result(result: ChunkResult) -> None:
        nonlocal stored
        db.write_chunk(run_id, result.chunk, result.draws, result.cube, result.metrics)
        stored += len(result.draws)
        if progress is not None:
            progress(stored, n)

    if progress is not None:
        progress(stored, n)
    try:
        payloads = make_chunks(base, table, spec.world, chunk_size, skip=done)
        execute(payloads, executor=executor, workers=workers, scheduler=scheduler, on_result=on_result)
    except KeyboardInterrupt:
        db.finish_run(run_id, "interrupted", time.perf_counter() - t0)
        raise
    except Exception as err:
        db.finish_run(run_id, "failed", time.perf_counter() - t0)
        err.run_id = run_id  # type: ignore[attr-defined]  # for the caller's message: the run can be resumed
        raise
    db.finish_run(run_id, "complete", time.perf_counter() - t0)
    if not load:
        return EnsembleResult(run_id, xr.Dataset(), db.load_draws(run_id), pd.DataFrame())
    return EnsembleResult(run_id, db.load_cube(run_id), db.load_draws(run_id), db.load_metrics(run_id))


def _check_same_versions(run_id: str, info: dict[str, object], spec: Scenario) -> None:
    """Refuse to resume a run whose stored draws were computed from other world data or other code: the run
    would mix draws of two versions and match neither's uninterrupted run."""
    now = {"data": data_version(spec.world), "code": code_version()}
    for what, current in now.items():
        stored = str(info.get(f"{what}_version") or "")
        if stored != current:
            raise CritminError(
                f"run {run_id} was computed with {what} version {stored}, and this is {current}: resuming would "
                "mix draws computed by the two; start a new run of its scenario instead"
            )


def register_ensemble(
    spec: Scenario,
    store: Store,
    *,
    draws: int,
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    file: str | None = None,
) -> str:
    """Register an ensemble in the store (status ``running``) with its table of draws; return its run id.

    Nothing is computed: ``run_ensemble(resume=RUN_ID)`` computes the draws (the web application registers
    first, so that a request can answer with the run id at once, and computes in the background). Every
    draw is first checked against the scenario and its world (:func:`~critmin.ensemble.draws.check_draws`):
    a path that names nothing, or a drawn value that an instrument would refuse, is a
    :class:`~critmin.core.errors.ScenarioError` naming ``file`` (default: the scenario's name), and nothing
    is stored.
    """
    if draws < 1:
        raise CritminError("an ensemble needs at least one draw")
    if chunk_size < 1:
        raise CritminError("chunk size must be at least 1")
    if spec.uncertainty is None or not spec.uncertainty.parameters:
        raise CritminError(
            f"{file or 'scenario ' + spec.name} has no uncertain inputs (no `uncertainty` block), so every draw "
            "would be the same: run it once (`critmin run`), or give it an uncertainty block (docs/scenarios.md)"
        )
    sampler = spec.uncertainty.sampler
    table = draw_table(spec.uncertainty, draws, seed)
    check_draws(spec, table, calibrated(spec), file=file or f"scenario {spec.name}")
    return _register(spec, store, table, seed, sampler, "ensemble", chunk_size)


#: Draws of the uncertain inputs that a validation checks (an ensemble checks all of its own before it starts).
VALIDATE_DRAWS = 100


def check_uncertainty(spec: Scenario, *, file: str, draws: int = VALIDATE_DRAWS) -> int:
    """Check the scenario's uncertain inputs on ``draws`` draws (seed 0), as an ensemble checks its own
    (:func:`~critmin.ensemble.draws.check_draws`); return the number of inputs (0 without any)."""
    if spec.uncertainty is None or not spec.uncertainty.parameters:
        return 0
    table = draw_table(spec.uncertainty, draws, 0)
    check_draws(spec, table, calibrated(spec), file=file)
    return len(table.columns) - 1


def calibrated(spec: Scenario) -> dict[str, CalibratedMineral]:
    """The calibrated minerals of the scenario's world that it runs."""
    from critmin.data.calibrate import calibrate
    from critmin.simulate.run import check_scenario, resolve_world

    world = resolve_world(spec.world)
    check_scenario(spec, world)
    cals = calibrate(world)
    return {m: cals[m] for m in (spec.minerals or list(world.minerals))}


def register_single(spec: Scenario, store: Store) -> str:
    """Register a single (deterministic) run of a scenario in the store; return its run id."""
    return _register(spec, store, pd.DataFrame({"draw": [0]}), 0, "none", "single", 1)


def _register(
    spec: Scenario, store: Store, table: pd.DataFrame, seed: int, sampler: str, kind: str, chunk_size: int
) -> str:
    """Create the run's registry entry (scenario, versions, seed) and store its table of draws."""
    run_id = store.create_run(
        scenario_name=spec.name,
        scenario_hash=scenario_hash(spec),
        scenario_yaml=yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False),
        data_version=data_version(spec.world),
        code_version=code_version(),
        seed=seed,
        n_draws=len(table),
        sampler=sampler,
        kind=kind,
        chunk_size=chunk_size,
    )
    store.add_draws(run_id, table)
    return run_id


def execute_single(run_id: str, spec: Scenario, store: Store) -> xr.Dataset:
    """Run a registered single run and store its full results (every variable of ``to_dataset``, as one
    chunk with ``draw = 0``) and its per-group headline metrics; mark it complete (or failed) and return
    the results Dataset."""
    from critmin.ensemble.outputs import draw_metrics
    from critmin.results.dataset import to_dataset
    from critmin.simulate.run import run_scenario

    t0 = time.perf_counter()
    try:
        record = run_scenario(spec)
        ds = to_dataset(record)
        store.write_chunk(run_id, 0, [0], ds.expand_dims(draw=[0]), draw_metrics(record, 0))
    except BaseException:
        store.finish_run(run_id, "failed", time.perf_counter() - t0)
        raise
    store.finish_run(run_id, "complete", time.perf_counter() - t0)
    return ds


def run_single(scenario: str | Path | Scenario, *, store: Store | str | Path | None = None) -> tuple[str, xr.Dataset]:
    """Run one scenario (no draws), store its full results as a run of kind ``single``; return the run id
    and the results Dataset."""
    db = store if isinstance(store, Store) else Store(store)
    spec = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    run_id = register_single(spec, db)
    return run_id, execute_single(run_id, spec, db)
