"""Executing an ensemble: chunks of draws, each solved by the batched engine in one go, on local processes
or on a Dask cluster.

Chunks are fixed by the draw index (``chunk = draw // chunk_size``), never by the number of workers, and each
chunk is computed the same way wherever it runs: the same seed and chunk size therefore give bit-identical
results on the in-process executor, on 1 or 2 local processes, or on a Dask cluster, and a resumed ensemble
recomputes only the missing chunks. (A draw's numbers depend on the other draws of its chunk within the
solver's tolerance: they start from each other's solutions, ``docs/engine.md``.) A chunk whose worker dies
is retried (Dask ``retries``; the process pool resubmits it).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import xarray as xr

from critmin.core.errors import CritminError

Executor = Literal["inline", "local", "dask"]


@dataclass(frozen=True)
class ChunkPayload:
    """Everything a worker needs to solve one chunk (plain data: it travels to other processes)."""

    chunk: int
    draws: tuple[int, ...]
    scenario: dict[str, Any]  # the scenario, JSON-able (``model_dump(mode="json")``), without uncertainty
    rows: tuple[dict[str, Any], ...]  # drawn values per draw, path -> value
    world: str


@dataclass
class ChunkResult:
    """A solved chunk: its compact cube and per-draw headline metrics."""

    chunk: int
    draws: list[int]
    cube: xr.Dataset
    metrics: pd.DataFrame
    seconds: float


_WORKER_CACHE: dict[str, Any] = {}


def solve_chunk(payload: ChunkPayload) -> ChunkResult:
    """Solve every draw of a chunk as one batch (runs in a worker process)."""
    from critmin.data.calibrate import calibrate
    from critmin.ensemble.draws import apply_draw
    from critmin.ensemble.outputs import chunk_cube, chunk_metrics
    from critmin.simulate.run import _periods, check_scenario, resolve_world, run_batch
    from critmin.simulate.scenario import Scenario

    t0 = time.perf_counter()
    key = payload.world
    if key not in _WORKER_CACHE:
        world = resolve_world(payload.world)
        _WORKER_CACHE[key] = (world, calibrate(world))
    world, cals = _WORKER_CACHE[key]
    base = Scenario.model_validate(payload.scenario)
    check_scenario(base, world)
    names = list(world.minerals) if base.minerals is None else base.minerals
    base_cals = {m: cals[m] for m in names}
    scenarios = []
    draw_cals = []
    for row in payload.rows:
        spec, over = apply_draw(base, row, names)
        scenarios.append(spec)
        draw_cals.append(over.apply(base_cals))
    records = run_batch(scenarios, draw_cals, _periods(base, world), world_name=world.name, draws=payload.draws)
    metrics = chunk_metrics(records, payload.draws)
    cube = chunk_cube(records, payload.draws)
    return ChunkResult(payload.chunk, list(payload.draws), cube, metrics, time.perf_counter() - t0)


def make_chunks(
    scenario: dict[str, Any], table: pd.DataFrame, world: str, chunk_size: int, skip: Iterable[int] = ()
) -> list[ChunkPayload]:
    """Payloads for the draws of ``table`` not in ``skip``, in fixed chunks of ``chunk_size`` draw indices."""
    if chunk_size < 1:
        raise CritminError("chunk size must be at least 1")
    from critmin.ensemble.draws import table_rows

    done = set(skip)
    by_chunk: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for draw, values in table_rows(table):
        by_chunk.setdefault(draw // chunk_size, []).append((draw, values))
    payloads = []
    for chunk, items in sorted(by_chunk.items()):
        draws = [d for d, _ in items]
        if set(draws) <= done:  # chunks are written whole, so a chunk is either done or recomputed whole
            continue
        payloads.append(ChunkPayload(chunk, tuple(draws), scenario, tuple(v for _, v in items), world))
    return payloads


#: One thread per worker process: the workers already fill the cores, and threads beyond them only contend.
_SINGLE_THREADED = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _worker_env() -> None:
    for key, value in _SINGLE_THREADED.items():
        os.environ.setdefault(key, value)


@contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Set the thread counts in this process's environment while worker processes start, so they hold from
    the workers' first import (numba reads its thread count once, when it is imported)."""
    saved = {key: os.environ.get(key) for key in _SINGLE_THREADED}
    os.environ.update(_SINGLE_THREADED)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute(
    payloads: Sequence[ChunkPayload],
    *,
    executor: Executor = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    on_result: Callable[[ChunkResult], None],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Solve ``payloads`` and hand each result to ``on_result`` in the calling process as it completes."""
    if not payloads:
        return
    if executor == "inline":
        for payload in payloads:
            result = solve_chunk(payload)
            on_result(result)
            if progress:
                progress(len(result.draws))
        return
    if workers is not None and workers < 1:
        raise CritminError(f"workers must be at least 1, got {workers}")
    if executor == "local":
        _execute_local(payloads, workers or 1, on_result, progress)
    elif executor == "dask":
        _execute_dask(payloads, workers, scheduler, on_result, progress)
    else:
        raise CritminError(f"unknown executor {executor!r}")


def _execute_local(
    payloads: Sequence[ChunkPayload],
    workers: int,
    on_result: Callable[[ChunkResult], None],
    progress: Callable[[int], None] | None,
) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    completed: set[int] = set()
    attempts: dict[int, int] = {}
    pending = list(payloads)
    while pending:
        ctx = mp.get_context("spawn")
        try:
            with (
                _single_threaded_children(),
                ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_env) as pool,
            ):
                futures: dict[Future[ChunkResult], ChunkPayload] = {pool.submit(solve_chunk, p): p for p in pending}
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in done:
                        futures.pop(fut)
                        result = fut.result()
                        on_result(result)
                        completed.add(result.chunk)
                        if progress:
                            progress(len(result.draws))
            pending = []
        except BrokenProcessPool:
            # a worker died: resubmit the chunks that did not complete, at most three times each
            pending = [p for p in payloads if p.chunk not in completed]
            for p in pending:
                attempts[p.chunk] = attempts.get(p.chunk, 0) + 1
                if attempts[p.chunk] > 3:
                    raise CritminError(f"chunk {p.chunk} failed three times: a worker keeps dying") from None


def _execute_dask(
    payloads: Sequence[ChunkPayload],
    workers: int | None,
    scheduler: str | None,
    on_result: Callable[[ChunkResult], None],
    progress: Callable[[int], None] | None,
) -> None:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        try:
            client = Client(scheduler)
        except OSError as err:  # unreachable, refused, or timed out
            raise CritminError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
    else:
        n = workers or max(1, os.cpu_count() or 1)
        with _single_threaded_children():
            # Only critical logs from our own cluster: a worker whose heartbeat meets the scheduler closing at
            # the end of a finished run logs a traceback at ERROR (a known race in distributed), and what
            # matters to the user reaches them anyway (a failed chunk raises here, a lost worker is retried).
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.CRITICAL,
            )
        client = Client(cluster)
    try:
        client.run(_worker_env)
        futures = [client.submit(solve_chunk, p, retries=3, pure=False) for p in payloads]
        for fut in as_completed(futures):
            result = fut.result()
            on_result(result)
            if progress:
                progress(len(result.draws))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
