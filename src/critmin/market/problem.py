"""The period problem: the contract between the market builder and the solvers.

One period of one mineral is a convex quadratic programme over *agents* (producers, processors, routes,
sectors, stock segments) that meet at *nodes* (markets for one product at one place). A batch is many
instances that share a :class:`Topology` (same nodes, agents and side constraints) and differ in numbers
(:class:`InstanceData`): all draws of an ensemble, or all periods of a run.

Agent ``j`` chooses a level ``v_j`` in ``[lower_j, upper_j]``; its welfare contribution is
``-cost_j * v_j - slope_j / 2 * v_j**2`` (``slope_j > 0``). Node ``n`` must balance::

    sum_j E[n, j] * v_j + injection[n] = 0          (dual: the price p[n], free in sign)

where ``E[n, j]`` is the agent's incidence (at most two nodes per agent: +1 for a supplier into the node,
-1 for a withdrawal, a yield ``y`` for a processor's output). Side constraints (quotas over sets of flows)::

    sum_j A[k, j] * v_j <= rhs[k]                     (dual: mu[k] >= 0, the quota rent)

Given the duals, every agent's optimum is explicit::

    v_j = clip((sum_n E[n, j] p[n] - sum_k A[k, j] mu[k] - cost_j) / slope_j, lower_j, upper_j)

so the solvers work in price space (see ``engine.py``) or hand the primal QP to HiGHS (``reference.py``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy.sparse import csr_matrix

from critmin.core.arrays import FloatArray, IntArray
from critmin.core.errors import InfeasibleError


@dataclass(frozen=True)
class Topology:
    """Structure shared by all instances of a batch.

    Attributes
    ----------
    node_labels:
        One label per node, used in error messages and results (e.g. ``"refine/use/USA"``).
    agent_labels:
        One label per agent (e.g. ``"flow/refine/CHN->USA"``).
    agent_node:
        ``(J, 2)`` node indices touched by each agent; ``-1`` in the second column when it touches one node.
    agent_coef:
        ``(J, 2)`` incidence coefficients matching ``agent_node`` (0 where the node is ``-1``).
    con_agent, con_row, con_coef:
        Side constraints in coordinate form: entry ``i`` says ``A[con_row[i], con_agent[i]] = con_coef[i]``.
    con_labels:
        One label per side constraint.
    """

    node_labels: tuple[str, ...]
    agent_labels: tuple[str, ...]
    agent_node: IntArray
    agent_coef: FloatArray
    con_labels: tuple[str, ...] = ()
    con_row: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    con_agent: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    con_coef: FloatArray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))

    def __post_init__(self) -> None:
        n_agents = len(self.agent_labels)
        if self.agent_node.shape != (n_agents, 2) or self.agent_coef.shape != (n_agents, 2):
            raise ValueError("agent_node and agent_coef must have shape (n_agents, 2)")
        if n_agents and (self.agent_node[:, 0] < 0).any():
            raise ValueError("every agent must touch at least one node (column 0)")
        if n_agents and self.agent_node.max() >= len(self.node_labels):
            raise ValueError("agent_node refers to a node that does not exist")
        if not (len(self.con_row) == len(self.con_agent) == len(self.con_coef)):
            raise ValueError("con_row, con_agent and con_coef must have the same length")
        if len(self.con_row) and (self.con_row.max() >= len(self.con_labels) or self.con_row.min() < 0):
            raise ValueError("con_row refers to a constraint that does not exist")

    @property
    def n_nodes(self) -> int:
        return len(self.node_labels)

    @property
    def n_agents(self) -> int:
        return len(self.agent_labels)

    @property
    def n_cons(self) -> int:
        return len(self.con_labels)

    def incidence_dense(self) -> FloatArray:
        """``E`` as a dense ``(N, J)`` array (for tests and the reference solver)."""
        E = np.zeros((self.n_nodes, self.n_agents))
        for col in range(2):
            nodes = self.agent_node[:, col]
            ok = nodes >= 0
            np.add.at(E, (nodes[ok], np.flatnonzero(ok)), self.agent_coef[ok, col])
        return E

    def constraints_dense(self) -> FloatArray:
        """``A`` as a dense ``(K, J)`` array."""
        A = np.zeros((self.n_cons, self.n_agents))
        np.add.at(A, (self.con_row, self.con_agent), self.con_coef)
        return A

    @cached_property
    def _incidence_sparse(self) -> csr_matrix:
        """``E`` in compressed rows, built once per topology (for :func:`residuals`).

        Sparse products run in scipy's own single-threaded code: a dense product would call BLAS, whose
        idle threads spin after each call and take the cores the engine's threads need.
        """
        return csr_matrix(self.incidence_dense())

    @cached_property
    def _incidence_sparse_t(self) -> csr_matrix:
        """``E'`` in compressed rows (agents' net values from node prices)."""
        return csr_matrix(self._incidence_sparse.T)

    @cached_property
    def _constraints_sparse(self) -> csr_matrix:
        """``A`` in compressed rows, built once per topology (for :func:`residuals`)."""
        return csr_matrix(self.constraints_dense())


@dataclass
class InstanceData:
    """The numbers of a batch of ``B`` instances sharing one topology.

    Shapes: ``cost``, ``slope``, ``lower``, ``upper`` are ``(B, J)``; ``injection`` is ``(B, N)``;
    ``rhs`` is ``(B, K)``; ``price_scale`` and ``quantity_scale`` are ``(B,)`` typical magnitudes used to
    scale the problem and to judge tolerances (a relative residual divides by them).
    """

    cost: FloatArray
    slope: FloatArray
    lower: FloatArray
    upper: FloatArray
    injection: FloatArray
    rhs: FloatArray
    price_scale: FloatArray
    quantity_scale: FloatArray
    instance_labels: tuple[str, ...] = ()

    @property
    def n_instances(self) -> int:
        return int(self.cost.shape[0])

    def label(self, b: int) -> str:
        if self.instance_labels and b < len(self.instance_labels):
            return self.instance_labels[b]
        return f"instance {b}"

    def validate(self, topology: Topology) -> None:
        """Check shapes and values; raise ``ValueError`` with the first problem found."""
        B, J, N, K = self.n_instances, topology.n_agents, topology.n_nodes, topology.n_cons
        for name, arr, shape in (
            ("cost", self.cost, (B, J)),
            ("slope", self.slope, (B, J)),
            ("lower", self.lower, (B, J)),
            ("upper", self.upper, (B, J)),
            ("injection", self.injection, (B, N)),
            ("rhs", self.rhs, (B, K)),
            ("price_scale", self.price_scale, (B,)),
            ("quantity_scale", self.quantity_scale, (B,)),
        ):
            if arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
        if not (self.slope > 0).all() or not np.isfinite(self.slope).all():
            raise ValueError("every slope must be finite and > 0")
        if np.isnan(self.lower).any() or np.isnan(self.upper).any():
            raise ValueError("bounds must not be NaN")
        if not np.isfinite(self.cost).all() or not np.isfinite(self.injection).all():
            raise ValueError("cost and injection must be finite")
        if not (self.price_scale > 0).all() or not (self.quantity_scale > 0).all():
            raise ValueError("price_scale and quantity_scale must be > 0")

    def take(self, index: IntArray | slice) -> InstanceData:
        """A sub-batch."""
        labels = tuple(np.asarray(self.instance_labels, dtype=object)[index]) if self.instance_labels else ()
        return InstanceData(
            cost=self.cost[index],
            slope=self.slope[index],
            lower=self.lower[index],
            upper=self.upper[index],
            injection=self.injection[index],
            rhs=self.rhs[index],
            price_scale=self.price_scale[index],
            quantity_scale=self.quantity_scale[index],
            instance_labels=labels,
        )


class Status(enum.Enum):
    """Outcome of a solve. Only ``OPTIMAL`` solutions are ever returned to callers."""

    OPTIMAL = "optimal"
    ITERATION_LIMIT = "iteration_limit"
    INFEASIBLE = "infeasible"
    NUMERICAL = "numerical"


@dataclass
class Residuals:
    """How far a solution is from the equilibrium conditions, per instance (all relative, dimensionless).

    primal:
        max over nodes of ``|sum_j E v + injection| / quantity_scale`` and over side constraints of
        ``max(0, A v - rhs) / quantity_scale``.
    complementarity:
        max over side constraints of ``mu * |rhs - A v| / (price_scale * quantity_scale)``, and over agents
        of the gap between ``v`` and its optimal response to the prices (scaled by ``quantity_scale``).
    dual:
        max over side constraints of ``max(0, -mu) / price_scale``.
    """

    primal: FloatArray
    complementarity: FloatArray
    dual: FloatArray

    def worst(self) -> FloatArray:
        return np.maximum(np.maximum(self.primal, self.complementarity), self.dual)


@dataclass
class Solution:
    """The equilibrium of each instance of a batch."""

    price: FloatArray  # (B, N) node prices (duals of the balances)
    level: FloatArray  # (B, J) agent levels (quantities)
    rent: FloatArray  # (B, K) side-constraint duals mu >= 0 (quota rents, USD per unit)
    iterations: IntArray  # (B,) Newton iterations (engine) or solver iterations (reference)
    residuals: Residuals
    solver: str = ""
    status: tuple[Status, ...] = ()
    # Where the solver stopped before prices the equilibrium leaves undetermined were made canonical (None:
    # ``price`` and ``rent`` themselves). The better warm start for a nearby problem: canonical prices sit at
    # the ends of their feasible intervals, where bound agents are exactly at their kinks.
    start_price: FloatArray | None = None
    start_rent: FloatArray | None = None

    @property
    def warm_price(self) -> FloatArray:
        """Prices to warm-start a nearby problem from."""
        return self.price if self.start_price is None else self.start_price

    @property
    def warm_rent(self) -> FloatArray:
        """Rents to warm-start a nearby problem from."""
        return self.rent if self.start_rent is None else self.start_rent


@dataclass(frozen=True)
class BatchProblem:
    """One batch to solve among several (:meth:`~critmin.market.solvers.Solver.solve_many`): the instances of
    one topology, with optional starting prices ``(B, N)`` and rents ``(B, K)``."""

    topology: Topology
    data: InstanceData
    warm_start: FloatArray | None = None
    warm_rents: FloatArray | None = None


def agent_response(
    topology: Topology, data: InstanceData, price: FloatArray, rent: FloatArray | None = None
) -> FloatArray:
    """Optimal agent levels ``(B, J)`` given node prices ``(B, N)`` and side-constraint rents ``(B, K)``."""
    net = _net_value(topology, data, price, rent)
    return np.clip(net / data.slope, data.lower, data.upper)


def _net_value(topology: Topology, data: InstanceData, price: FloatArray, rent: FloatArray | None) -> FloatArray:
    net = np.asarray((topology._incidence_sparse_t @ price.T).T)
    if rent is not None and topology.n_cons:
        contrib = rent[:, topology.con_row] * topology.con_coef
        np.subtract.at(net, (slice(None), topology.con_agent), contrib)  # type: ignore[arg-type]
    return net - data.cost


def residuals(
    topology: Topology,
    data: InstanceData,
    price: FloatArray,
    level: FloatArray,
    rent: FloatArray,
    response: FloatArray | None = None,
) -> Residuals:
    """Residuals of a candidate solution, computed the same way for every solver.

    ``response`` is ``agent_response(topology, data, price, rent)`` where the caller already has it (the
    engine's levels are that response); it is computed here otherwise.
    """
    balance = (topology._incidence_sparse @ level.T).T + data.injection
    qs = data.quantity_scale[:, None]
    ps = data.price_scale[:, None]
    primal = np.abs(balance / qs).max(axis=1, initial=0.0)
    if response is None:
        response = agent_response(topology, data, price, rent)
    comp = np.abs(level - response) / qs
    complementarity = comp.max(axis=1, initial=0.0)
    dual = np.zeros(data.n_instances)
    if topology.n_cons:
        slack = data.rhs - (topology._constraints_sparse @ level.T).T
        primal = np.maximum(primal, (np.maximum(0.0, -slack) / qs).max(axis=1))
        # A constraint with rhs = +inf never binds: its rent is 0 and 0 * inf counts as 0, not NaN.
        product = rent * np.where(rent == 0.0, 0.0, slack)
        complementarity = np.maximum(complementarity, (np.abs(product) / (ps * qs)).max(axis=1))
        dual = (np.maximum(0.0, -rent) / ps).max(axis=1)
    return Residuals(primal=primal, complementarity=complementarity, dual=dual)


def check_bounds(topology: Topology, data: InstanceData) -> None:
    """Raise :class:`~critmin.core.errors.InfeasibleError` for bounds no allocation can meet.

    An agent whose lower bound exceeds its upper bound, a lower bound of ``+inf`` or an upper bound of
    ``-inf``, or a side constraint with ``rhs = -inf``. Both solvers call this before solving.
    """
    bad = (data.lower > data.upper) | (data.lower == np.inf) | (data.upper == -np.inf)
    if bad.any():
        b, j = (int(i) for i in np.argwhere(bad)[0])
        raise InfeasibleError(
            data.label(b),
            f"agent {topology.agent_labels[j]} has lower bound {data.lower[b, j]:g} above its upper bound "
            f"{data.upper[b, j]:g}",
        )
    if topology.n_cons and (np.isnan(data.rhs).any() or (data.rhs == -np.inf).any()):
        b, k = (int(i) for i in np.argwhere(np.isnan(data.rhs) | (data.rhs == -np.inf))[0])
        raise InfeasibleError(
            data.label(b), f"side constraint {topology.con_labels[k]} has right-hand side {data.rhs[b, k]:g}"
        )
