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
costs, bounds, row bounds, the Hessian's diagonal values and, where an agent's column scale changes, that
column's matrix entries.

Column scaling: the default world's slopes span twelve orders of magnitude (free disposal at ``1e-6``, the
demand of a sector that barely exists in a region at ``1e6``), and on those instances HiGHS's active-set QP
cycled (cobalt 2024) or returned row duals that missed stationarity by ``1e-3`` on steep routes. Each
agent's level is therefore solved for in units ``s_j`` (``v_j = s_j w_j``) with ``s_j`` the power of two
nearest ``1 / sqrt(slope_j)`` but at most 1, so that no Hessian entry exceeds two. Flat agents keep their
units: scaled up, free disposal's column would carry entries of ``2**10`` and HiGHS's feasibility tolerance
would be worth a thousand times more in its level (that variant stopped with a solve error on 6 of the
benchmark's 252 problems and left 13 above ``1e-6``, against none and 4 with the cap). Powers of two scale without
rounding, and ``s`` is a function of the instance alone, so answers do not depend on the order in which a
model meets its instances.

Polishing: HiGHS's answers on the default world are accurate to ``1e-5`` (a steep route carrying a tiny
flow, nickel 2024) to ``1e-12``: the active set is right but the numbers are not always. As in OSQP's
polishing, the KKT system of that active set is then solved directly (agents strictly inside their bounds,
binding side constraints as equalities, prices by least squares so that undetermined prices keep HiGHS's
values), the levels are the agents' responses to the polished prices, and the polished answer is kept
where its largest residual is smaller than HiGHS's.
"""

from __future__ import annotations

import weakref

import highspy
import numpy as np
from scipy.sparse import csc_matrix, csr_matrix

from critmin.core.arrays import FloatArray
from critmin.core.errors import InfeasibleError, SolveError
from critmin.market.engine import canonical_prices
from critmin.market.problem import (
    BatchProblem,
    InstanceData,
    Solution,
    Status,
    Topology,
    agent_response,
    check_bounds,
    residuals,
)

__all__ = ["HighsSolver", "column_scale"]

_INFEASIBLE = {
    highspy.HighsModelStatus.kInfeasible,
    highspy.HighsModelStatus.kUnboundedOrInfeasible,
}


def column_scale(slope: FloatArray) -> FloatArray:
    """For each agent, the power of two nearest ``1 / sqrt(slope)``, at most 1 (slopes are positive)."""
    return np.minimum(1.0, np.exp2(np.round(-0.5 * np.log2(slope))))


class _HighsModel:
    """One HiGHS instance holding the QP of a topology, ready for per-instance updates."""

    def __init__(self, topology: Topology, tolerance: float, time_limit: float, scaled: bool) -> None:
        N, K, J = topology.n_nodes, topology.n_cons, topology.n_agents
        self.scaled = scaled
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
        self.matrix = rows  # [E; A], unscaled, for polishing
        # the columns' entries, unscaled, for rescaling a column (column j: rows and values in
        # col_index/col_value[col_start[j]:col_start[j + 1]]); only a scaled model rescales
        columns = csc_matrix(rows if scaled else np.zeros((N + K, J)))
        self.col_start, self.col_index, self.col_value = columns.indptr, columns.indices, columns.data
        self.scale = np.ones(J)  # the columns' current scales
        if N + K:
            by_row = csr_matrix(rows)
            h.addRows(
                N + K,
                np.zeros(N + K),
                np.zeros(N + K),
                by_row.nnz,
                by_row.indptr[:-1].astype(np.int32),
                by_row.indices.astype(np.int32),
                by_row.data.astype(np.float64),
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
        """Solve one scaled instance; returns status, column values (levels), row duals and iterations."""
        h = self.highs
        J = self.n_agents
        h.clearSolver()  # every instance from scratch: results do not depend on the order of the batch
        scale = column_scale(slope) if self.scaled else self.scale
        for j in np.flatnonzero(scale != self.scale).tolist():
            entries = slice(self.col_start[j], self.col_start[j + 1])
            for row, value in zip(self.col_index[entries].tolist(), self.col_value[entries].tolist(), strict=True):
                h.changeCoeff(row, j, value * scale[j])
        self.scale = scale
        h.changeColsCost(J, self.cols, cost * scale)
        h.changeColsBounds(J, self.cols, lower / scale, upper / scale)
        if len(self.rows):
            h.changeRowsBounds(len(self.rows), self.rows, row_lower, row_upper)  # type: ignore[attr-defined]
        h.passHessian(  # type: ignore[call-overload]  # highspy's stubs lag its API
            J, J, highspy.HessianFormat.kTriangular, self.hessian_start, self.hessian_index, slope * scale * scale
        )
        h.run()
        status = h.getModelStatus()
        solution = h.getSolution()
        col = np.array(solution.col_value, dtype=np.float64) * self.scale
        dual = np.array(solution.row_dual, dtype=np.float64)
        iterations = int(h.getInfo().qp_iteration_count)
        return status, col, dual, iterations


def _polish(
    topology: Topology, matrix: FloatArray, one: InstanceData, price: FloatArray, level: FloatArray, rent: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, float]:
    """Solve the KKT system of the active set of one instance's answer ``(1, N)``, ``(1, J)``, ``(1, K)``.

    Returns polished prices, levels (the agents' responses to those prices) and rents, and their largest
    residual. Up to three rounds, each taking the active set from the levels of the round before.
    """
    N = topology.n_nodes
    ps, qs = float(one.price_scale[0]), float(one.quantity_scale[0])
    cost, slope = one.cost[0] / ps, one.slope[0] * qs / ps
    lower, upper = one.lower[0] / qs, one.upper[0] / qs
    injection, rhs = one.injection[0] / qs, one.rhs[0] / qs
    E, A = matrix[:N], matrix[N:]
    margin = 1e-8  # a level this close to a bound (in quantity scales) is on it: HiGHS's own tolerances are finer
    best = (price, level, rent, float(residuals(topology, one, price, level, rent).worst()[0]))
    for _ in range(3):
        v = best[1][0] / qs
        with np.errstate(invalid="ignore"):  # infinite bounds: inf - inf compares as False
            at_lower = v <= lower + margin * (1.0 + np.abs(lower))
            at_upper = v >= upper - margin * (1.0 + np.abs(upper))
        free = ~at_lower & ~at_upper
        bound_level = np.where(at_lower, lower, upper)
        with np.errstate(invalid="ignore"):
            binding = np.flatnonzero(np.isfinite(rhs) & (rhs - A @ v <= margin * (1.0 + np.abs(rhs))))
        M = np.vstack([E, -A[binding]])  # rows: node prices, then the binding rents
        x = np.concatenate([best[0][0], best[2][0, binding]]) / ps
        inv = np.where(free, 1.0 / slope, 0.0)
        levels = np.where(free, inv * (M.T @ x - cost), bound_level)
        gradient = M @ levels + np.concatenate([injection, rhs[binding]])
        hessian = (M * inv) @ M.T
        x = x + np.linalg.lstsq(hessian, -gradient, rcond=None)[0]
        new_price = x[None, :N] * ps
        new_rent = np.zeros_like(rent)
        new_rent[0, binding] = x[N:] * ps
        new_level = agent_response(topology, one, new_price, new_rent)
        worst = float(residuals(topology, one, new_price, new_level, new_rent, response=new_level).worst()[0])
        if not worst < best[3]:
            break
        best = (new_price, new_level, new_rent, worst)
    return best


class HighsSolver:
    """Reference solver: HiGHS's QP solver, one instance at a time, on a model built once per topology.

    Parameters
    ----------
    solver_tolerance:
        HiGHS's primal, dual and optimality tolerances (on the problem in price and quantity scales).
    time_limit:
        Seconds HiGHS may spend on one instance (with a QP iteration limit of ``20 (J + N + K)``); beyond
        either the solve fails with :class:`~critmin.core.errors.SolveError`.
    canonical_prices:
        Report the prices that the equilibrium leaves open (a node no free agent pins, such as a region that
        produces nothing) as the engine does (:func:`~critmin.market.engine.canonical_prices`), rather than
        wherever HiGHS left them (often 0). On by default: instruments read such prices (a project tranche
        starts on its region's price), and with HiGHS's values a run's path leaves the engine's.
    """

    name = "highs"

    def __init__(
        self, solver_tolerance: float = 1e-10, time_limit: float = 60.0, canonical_prices: bool = True
    ) -> None:
        self.solver_tolerance = solver_tolerance
        self.canonical_prices = canonical_prices
        self.time_limit = time_limit
        self._models: dict[tuple[int, bool, float], tuple[weakref.ref[Topology], _HighsModel]] = {}
        #: Labels of the instances of the last batch solved more than once (see :meth:`solve`), and of those
        #: whose polished answer was kept (diagnostics).
        self.last_repeated: list[str] = []
        self.last_polished: list[str] = []

    def _attempts(self) -> tuple[tuple[bool, float], ...]:
        """(scaled columns, HiGHS's tolerance) of each attempt at an instance, in order."""
        tol = self.solver_tolerance
        return ((True, tol), (True, 100.0 * tol), (False, tol), (False, 100.0 * tol))

    def _model(self, topology: Topology, scaled: bool = True, tolerance: float | None = None) -> _HighsModel:
        tolerance = self.solver_tolerance if tolerance is None else tolerance
        key = (id(topology), scaled, tolerance)
        hit = self._models.get(key)
        if hit is not None and hit[0]() is topology:
            return hit[1]
        model = _HighsModel(topology, tolerance, self.time_limit, scaled)
        self._models = {k: val for k, val in self._models.items() if val[0]() is not None}
        self._models[key] = (weakref.ref(topology), model)
        return model

    def solve_many(self, problems: list[BatchProblem], *, tol: float = 1e-6) -> list[Solution]:
        """Each batch in turn (:meth:`solve`; HiGHS solves one instance at a time)."""
        return [self.solve(p.topology, p.data, tol=tol) for p in problems]

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
            Required largest relative residual (HiGHS's own answers on the default world are accurate to
            ``1e-5`` to ``1e-9``; polishing brings them to about ``1e-12``).

        Returns
        -------
        Solution
            ``solver="highs"``; ``iterations`` counts HiGHS QP iterations (of every attempt).

        Notes
        -----
        Each instance is solved with its columns scaled and its answer polished (see the module's notes);
        where HiGHS does not reach an optimum, or the answer still misses ``tol``, the instance is solved
        again at a tolerance a hundred times looser (HiGHS's QP stops with a solve error on some instances of
        the built-in scenarios at ``1e-10`` that it solves to ``1e-8`` at ``1e-8``), then unscaled at both
        tolerances; each answer is polished, and the first that meets ``tol`` is kept.

        Raises
        ------
        InfeasibleError
            Conflicting bounds, or HiGHS finds the instance infeasible in every attempt.
        SolveError
            HiGHS stops for another reason, or the residuals exceed ``tol``, in every attempt.
        """
        del warm_start, warm_rents
        data.validate(topology)
        check_bounds(topology, data)
        B, N, K, J = data.n_instances, topology.n_nodes, topology.n_cons, topology.n_agents
        self.last_repeated, self.last_polished = [], []
        price = np.zeros((B, N))
        rent = np.zeros((B, K))
        level = np.zeros((B, J))
        iterations = np.zeros(B, dtype=np.int64)
        for b in range(B):
            ps = float(data.price_scale[b])
            qs = float(data.quantity_scale[b])
            row_lower = np.concatenate([-data.injection[b] / qs, np.full(K, -np.inf)])
            row_upper = np.concatenate([-data.injection[b] / qs, data.rhs[b] / qs])
            one = data.take(slice(b, b + 1))
            failures: list[str] = []
            infeasible = 0
            for attempt, (scaled, tolerance) in enumerate(self._attempts()):
                if attempt == 1:
                    self.last_repeated.append(data.label(b))
                model = self._model(topology, scaled, tolerance)
                status, col, dual, its = model.solve(
                    data.cost[b] / ps,
                    data.slope[b] * qs / ps,
                    data.lower[b] / qs,
                    data.upper[b] / qs,
                    row_lower,
                    row_upper,
                )
                how = f"{'with scaled columns' if scaled else 'unscaled'} at HiGHS's tolerance {tolerance:g}"
                if status != highspy.HighsModelStatus.kOptimal:
                    infeasible += status in _INFEASIBLE
                    failures.append(f"{how}, HiGHS stopped with status {model.highs.modelStatusToString(status)}")
                    continue
                level[b] = col * qs
                price[b] = dual[:N] * ps
                rent[b] = -dual[N:] * ps
                iterations[b] += its
                raw = (price[b : b + 1], level[b : b + 1], rent[b : b + 1])
                polished = _polish(topology, model.matrix, one, *raw)
                if polished[0] is not raw[0]:
                    price[b], level[b], rent[b] = polished[0][0], polished[1][0], polished[2][0]
                    self.last_polished.append(data.label(b))
                if polished[3] <= tol:
                    break
                failures.append(f"{how}, HiGHS's solution has residual {polished[3]:.3g} above tolerance {tol:g}")
            else:
                if infeasible == len(self._attempts()):
                    raise InfeasibleError(data.label(b), "HiGHS reports the QP infeasible")
                raise SolveError(data.label(b), "; ".join(failures))
        if self.canonical_prices:
            price = canonical_prices(topology, data, price, rent)
        res = residuals(topology, data, price, level, rent)
        return Solution(
            price=price,
            level=level,
            rent=rent,
            iterations=iterations,
            residuals=res,
            solver=self.name,
            status=tuple(Status.OPTIMAL for _ in range(B)),
        )
