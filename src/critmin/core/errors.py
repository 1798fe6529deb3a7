"""Errors that a user can read: each names where the problem is and why."""

from __future__ import annotations


class CritminError(Exception):
    """Base class of every error critmin raises on purpose."""


class DataError(CritminError):
    """Bad input data: names the file, the field (column or key) and the reason."""

    def __init__(self, file: str, field: str, reason: str, row: int | None = None) -> None:
        self.file = str(file)
        self.field = field
        self.reason = reason
        self.row = row
        where = f"{self.file}"
        if row is not None:
            where += f", row {row}"
        super().__init__(f"{where}: field '{field}': {reason}")


class ScenarioError(DataError):
    """A scenario file that does not validate."""


class SolveError(CritminError):
    """A period problem that did not reach tolerance, or that has no equilibrium.

    A solve that fails never returns a result; it raises this error naming the instance and the reason.
    """

    def __init__(self, instance: str, reason: str) -> None:
        self.instance = instance
        self.reason = reason
        super().__init__(f"solve failed for {instance}: {reason}")


class InfeasibleError(SolveError):
    """The instance has no feasible allocation (e.g. a must-run volume with nowhere to go)."""
