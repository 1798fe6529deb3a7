"""The reference solver: HiGHS on the primal QP of the period problem.

Per instance, in units scaled by ``price_scale`` and ``quantity_scale``::

    minimise    sum_j cost_j v_j + slope_j / 2 v_j**2
    subject to  E v = -injection          (row duals: the node prices)
                A v <= rhs                 (row duals: minus the rents, so rents are >= 0)
                lower <= v <= upper

HiGHS's row duals ``y`` satisfy ``cost + slope v - E' y_E - A' y_A = reduced cost``, so the engine's prices
are ``p = y_E`` and its rents ``mu = -y_A``: a supplier's net value ``p - cost`` is positive where it
produces, and prices are positive in a normal market.

The model (columns, rows, matrix and Hessian pattern) is built once per topology; each instance changes
costs, bounds, row bounds and the Hessian's diagonal values only.
"""

from __future__ import annotations

import weakref

import highspy
import numpy as np

from critmin.core.arrays import FloatArray
from critmin.core.errors import InfeasibleError, SolveError
from critmin.market.problem import (
    InstanceData,
    Solution,
    Status,
    Topology,
    check_bounds,
    residuals,
)

__all__ = ["HighsSolver"]

_INFEASIBLE = {
    highspy.HighsModelStatus.kInfeasible,
    highspy.HighsModelStatus.kUnboundedOrInfeasible,
}


class _HighsModel:
    """One HiGHS instance holding the QP of a topology, ready for per-instance updates."""

    def __init__(self, topology: Topology, tolerance: float, time_limit: float) -> None:
        N, K, J = topology.n_nodes, topology.n_cons, topology.n_agents
        self.n_nodes, self.n_cons, self.n_agents = N, K, J
        h = highspy.Highs()
        h.silent()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("primal_feasibility_tolerance", tolerance)
        h.setOptionValue("dual_feasibility_tolerance", tolerance)
        h.setOptionValue("optimality_tolerance", tolerance)
        h.setOptionValue("qp_regularization_value", 0.0)
        # HiGHS's active-set QP can cycle without end (seen on cobalt 2024 of the default world): an
        # iteration and a time limit turn that into a failed solve, which raises SolveError below.
        h.setOptionValue("qp_iteration_limit", 20 * (J + N + K))
        h.setOptionValue("time_limit", float(time_limit))
        h.addVars(J, np.zeros(J), np.zeros(J))
        rows = np.vstack([topology.incidence_dense(), topology.constraints_dense()])
        start = np.zeros(N + K + 1, dtype=np.int32)
        index: list[int] = []
        value: list[float] = []
        for i in range(N + K):
            nz = np.flatnonzero(rows[i])
            index.extend(int(c) for c in nz)
            value.extend(float(x) for x in rows[i, nz])
            start[i + 1] = len(index)
        if N + K:
            h.addRows(
                N + K,
                np.zeros(N + K),
                np.zeros(N + K),
                len(index),
                start[:-1],
                np.array(index, dtype=np.int32),
                np.array(value, dtype=np.float64),
            )
        self.highs = h
        self.cols = np.arange(J, dtype=np.int32)
        self.rows = np.arange(N + K, dtype=np.int32)
        self.hessian_start = np.arange(J + 1, dtype=np.int32)
        self.hessian_index = np.arange(J, dtype=np.int32)

    def solve(
        self,
        cost: FloatArray,
        slope: FloatArray,
        lower: FloatArray,
        upper: FloatArray,
        row_lower: FloatArray,
        row_upper: FloatArray,
    ) -> tuple[highspy.HighsModelStatus, FloatArray, FloatArray, int]:
        """Solve one scaled instance; returns status, column values, row duals and iterations."""
        h = self.highs
        J = self.n_agents
        h.clearSolver()  # every instance from scratch: results do not depend on the order of the batch
        h.changeColsCost(J, self.cols, cost)
        h.changeColsBounds(J, self.cols, lower, upper)
        if len(self.rows):
            h.changeRowsBounds(len(self.rows), self.rows, row_lower, row_upper)  # type: ignore[attr-defined]
        h.passHessian(  # type: ignore[call-overload]  # highspy's stubs lag its API
            J, J, highspy.HessianFormat.kTriangular, self.hessian_start, self.hessian_index, slope
        )
        h.run()
        status = h.getModelStatus()
        solution = h.getSolution()
        col = np.array(solution.col_value, dtype=np.float64)
        dual = np.array(solution.row_dual, dtype=np.float64)
        iterations = int(h.getInfo().qp_iteration_count)
        return status, col, dual, iterations


class HighsSolver:
    """Reference solver: HiGHS's QP solver, one instance at a time, on a model built once per topology.

    Parameters
    ----------
    solver_tolerance:
        HiGHS's primal, dual and optimality tolerances (on the scaled problem).
    time_limit:
        Seconds HiGHS may spend on one instance (with a QP iteration limit of ``20 (J + N + K)``); beyond
        either the solve fails with :class:`~critmin.core.errors.SolveError`.
    """

    name = "highs"

    def __init__(self, solver_tolerance: float = 1e-10, time_limit: float = 60.0) -> None:
        self.solver_tolerance = solver_tolerance
        self.time_limit = time_limit
        self._models: dict[int, tuple[weakref.ref[Topology], _HighsModel]] = {}

    def _model(self, topology: Topology) -> _HighsModel:
        key = id(topology)
        hit = self._models.get(key)
        if hit is not None and hit[0]() is topology:
            return hit[1]
        model = _HighsModel(topology, self.solver_tolerance, self.time_limit)
        self._models = {k: val for k, val in self._models.items() if val[0]() is not None}
        self._models[key] = (weakref.ref(topology), model)
        return model

    def solve(
        self,
        topology: Topology,
        data: InstanceData,
        *,
        warm_start: FloatArray | None = None,
        warm_rents: FloatArray | None = None,
        tol: float = 1e-6,
    ) -> Solution:
        """Solve every instance of the batch with HiGHS.

        Parameters
        ----------
        topology, data:
            The batch.
        warm_start, warm_rents:
            Accepted for interface compatibility and ignored: each instance is solved from scratch.
        tol:
            Required largest relative residual; HiGHS's QP duals are accurate to about ``1e-7``.

        Returns
        -------
        Solution
            ``solver="highs"``; ``iterations`` counts HiGHS QP iterations.

        Raises
        ------
        InfeasibleError
            Conflicting bounds, or HiGHS finds the instance infeasible.
        SolveError
            HiGHS stops for another reason, or the residuals exceed ``tol``.
        """
        del warm_start, warm_rents
        data.validate(topology)
        check_bounds(topology, data)
        model = self._model(topology)
        B, N, K, J = data.n_instances, topology.n_nodes, topology.n_cons, topology.n_agents
        price = np.zeros((B, N))
        rent = np.zeros((B, K))
        level = np.zeros((B, J))
        iterations = np.zeros(B, dtype=np.int64)
        for b in range(B):
            ps = float(data.price_scale[b])
            qs = float(data.quantity_scale[b])
            row_lower = np.concatenate([-data.injection[b] / qs, np.full(K, -np.inf)])
            row_upper = np.concatenate([-data.injection[b] / qs, data.rhs[b] / qs])
            status, col, dual, its = model.solve(
                data.cost[b] / ps,
                data.slope[b] * qs / ps,
                data.lower[b] / qs,
                data.upper[b] / qs,
                row_lower,
                row_upper,
            )
            if status in _INFEASIBLE:
                raise InfeasibleError(data.label(b), f"HiGHS reports the QP {model.highs.modelStatusToString(status)}")
            if status != highspy.HighsModelStatus.kOptimal:
                raise SolveError(data.label(b), f"HiGHS stopped with status {model.highs.modelStatusToString(status)}")
            level[b] = col * qs
            price[b] = dual[:N] * ps
            rent[b] = -dual[N:] * ps
            iterations[b] = its
        res = residuals(topology, data, price, level, rent)
        worst = res.worst()
        bad = np.flatnonzero(~(worst <= tol))
        if len(bad):
            b = int(bad[0])
            raise SolveError(data.label(b), f"HiGHS solution has residual {worst[b]:.3g} above tolerance {tol:g}")
        return Solution(
            price=price,
            level=level,
            rent=rent,
            iterations=iterations,
            residuals=res,
            solver=self.name,
            status=tuple(Status.OPTIMAL for _ in range(B)),
        )
