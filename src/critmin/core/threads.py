"""Thread pools of the numerical libraries critmin runs on.

critmin's parallelism is its own: the batched engine's numba threads and the ensemble's worker processes.
BLAS (OpenBLAS under numpy and scipy) starts a thread per core for any product it thinks large enough, and
those threads keep spinning for a while after each call; on a small machine they take the cores the engine's
threads need (on the 2-core development machine the engine's second thread added nothing until they were
stopped). The matrices critmin multiplies are small, so one BLAS thread loses nothing.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits

__all__ = ["limit_blas_threads"]


def limit_blas_threads() -> None:
    """Let BLAS use one thread in this process (called by the ``critmin`` command and the benchmarks).

    A library user who wants the same in their own program calls this once after importing critmin.
    """
    import numpy  # noqa: F401  (loads the BLAS library, so that the limit reaches it)

    threadpool_limits(limits=1, user_api="blas")
