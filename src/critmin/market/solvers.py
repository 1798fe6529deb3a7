"""The common interface of the period-problem solvers, and how to get one by name."""

from __future__ import annotations

from typing import Literal, Protocol

from critmin.core.arrays import FloatArray
from critmin.market.problem import BatchProblem, InstanceData, Solution, Topology

SolverName = Literal["engine", "highs"]

__all__ = ["Solver", "SolverName", "get_solver"]


class Solver(Protocol):
    """Solves a batch of period problems sharing one topology, or several such batches at once.

    A solve either returns a :class:`~critmin.market.problem.Solution` whose residuals are all within
    ``tol``, or raises :class:`~critmin.core.errors.SolveError` (or its subclass
    :class:`~critmin.core.errors.InfeasibleError`) naming the instance and the reason. ``solve_many``
    returns one solution per batch, each the one ``solve`` gives that batch alone (a run solves every
    mineral of a period in one call).
    """

    name: str

    def solve(
        self,
        topology: Topology,
        data: InstanceData,
        *,
        warm_start: FloatArray | None = None,
        warm_rents: FloatArray | None = None,
        tol: float = ...,
    ) -> Solution: ...

    def solve_many(self, problems: list[BatchProblem], *, tol: float = ...) -> list[Solution]: ...


def get_solver(name: str) -> Solver:
    """A solver by name: ``"engine"`` (batched semismooth Newton) or ``"highs"`` (HiGHS reference).

    Raises
    ------
    ValueError
        For any other name.
    """
    if name == "engine":
        from critmin.market.engine import BatchedNewtonSolver

        return BatchedNewtonSolver()
    if name == "highs":
        from critmin.market.reference import HighsSolver

        return HighsSolver()
    raise ValueError(f"unknown solver {name!r}: expected 'engine' or 'highs'")
