"""Background runs for the web application: registered in the store at once, computed in worker threads.

A request to run registers the run in the results store (so it has an id and shows in every listing at
once, with status ``running``) and hands the computation to a small thread pool. Progress is the store's
count of stored draws; an error's message is kept here (the store records only the status ``failed``).
At most ``max_active`` runs compute at once; a request beyond that is refused (HTTP 429), never queued
without bound.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field

from critmin.core.errors import CritminError
from critmin.results.ensemble import execute_single, register_ensemble, register_single, run_ensemble
from critmin.results.store import Store
from critmin.simulate.scenario import Scenario

log = logging.getLogger("critmin.web")


class BusyError(CritminError):
    """Too many runs are computing; try again when one has finished."""


@dataclass
class Job:
    run_id: str
    kind: str
    total: int
    done: int = 0
    error: str | None = None
    future: Future[None] | None = field(default=None, repr=False)


class JobManager:
    """Runs scenarios and ensembles in the background, at most ``max_active`` at a time."""

    def __init__(self, store: Store, *, max_active: int = 2, ensemble_chunk: int = 10) -> None:
        self.store = store
        self.max_active = max_active
        self.ensemble_chunk = ensemble_chunk
        self._pool = ThreadPoolExecutor(max_workers=max_active, thread_name_prefix="critmin-run")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def active(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.future is not None and not j.future.done())

    def get(self, run_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(run_id)

    def _reserve(self) -> None:
        if self.active() >= self.max_active:
            raise BusyError(f"{self.max_active} runs are computing already; try again when one has finished")

    def submit(self, spec: Scenario, draws: int | None = None, seed: int = 0) -> Job:
        """Register a run (``draws`` None: a single run; else an ensemble) and start computing it."""
        self._reserve()
        if draws is None:
            run_id = register_single(spec, self.store)
            job = Job(run_id=run_id, kind="single", total=1)
            target = self._single
        else:
            chunk = max(1, min(self.ensemble_chunk, draws))
            run_id = register_ensemble(spec, self.store, draws=draws, seed=seed, chunk_size=chunk)
            job = Job(run_id=run_id, kind="ensemble", total=draws)
            target = self._ensemble
        with self._lock:
            self._jobs[run_id] = job
            job.future = self._pool.submit(target, job, spec)
        return job

    def _fail(self, job: Job, err: BaseException) -> None:
        if isinstance(err, CritminError):
            job.error = str(err)
        else:
            log.exception("run %s failed", job.run_id)
            job.error = f"internal error ({type(err).__name__}); see the server log"
        # the runners mark their run failed; make sure of it even if one died before it could
        with suppress(Exception):
            if self.store.get_run(job.run_id)["status"] == "running":
                self.store.finish_run(job.run_id, "failed", 0.0)

    def _single(self, job: Job, spec: Scenario) -> None:
        try:
            execute_single(job.run_id, spec, self.store)
            job.done = 1
        except BaseException as err:  # the store marks the run failed; keep the message for the client
            self._fail(job, err)

    def _ensemble(self, job: Job, spec: Scenario) -> None:
        def progress(done: int, total: int) -> None:
            job.done = done

        try:
            run_ensemble(resume=job.run_id, executor="inline", store=self.store, progress=progress, load=False)
        except BaseException as err:
            self._fail(job, err)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
