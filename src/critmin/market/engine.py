"""The batched engine: semismooth Newton on the dual of the period problem, in price space.

For node prices ``p`` and side-constraint rents ``mu >= 0`` every agent's level is explicit
(:func:`critmin.market.problem.agent_response`), and the dual function::

    g(p, mu) = sum_j phi_j(net_j) + injection . p + rhs . mu,
    phi_j(w) = max_{lower_j <= v <= upper_j} (w v - slope_j / 2 v**2),   net = E' p - A' mu - cost

is convex, continuously differentiable and piecewise quadratic. Its gradient is ``(E v + injection,
rhs - A v)`` (node excess and constraint slack) and its generalised Hessian ``M diag(free_j / slope_j) M'``
with ``M = [E; -A]`` and ``free_j`` = 1 when the agent is strictly inside its bounds. The engine minimises
``g`` over ``p`` free and ``mu >= 0`` with a projected Newton method (Bertsekas): rents at zero whose slack
is positive are held at zero, the others take the Newton step; the step is globalised by an Armijo search
along the projection arc, with an expansion when the model is too timid (linear pieces of ``g``).

Structure: a set of nodes no two of which share an agent (found once per topology) has a diagonal Hessian
block; it is eliminated and the Schur complement on the other nodes and the rents, built from free agents
only, is factorised by a dense envelope Cholesky. A zero or numerically zero pivot (a node, or a chain of
nodes, with no free agent to pin its price) is replaced by the diagonal that node would have with its free
agents, or with all its agents, so that the step is a sensible price move. See ``docs/engine.md``.

Everything runs per instance on numbers scaled by ``price_scale`` and ``quantity_scale``, inside one numba
kernel that loops over the batch. Several batches (the minerals of a period) can be solved in one call
(:meth:`BatchedNewtonSolver.solve_many`), side by side on the engine's threads.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import reverse_cuthill_mckee

from critmin.core.arrays import FloatArray, IntArray
from critmin.core.errors import CritminError, InfeasibleError, SolveError
from critmin.market.problem import (
    BatchProblem,
    InstanceData,
    Residuals,
    Solution,
    Status,
    Topology,
    agent_response,
    check_bounds,
    residuals,
)

__all__ = ["BatchedNewtonSolver", "PreparedTopology", "canonical_prices", "clear_prepared_cache", "prepare_topology"]

#: Kernel outcome codes (mirrored by :class:`~critmin.market.problem.Status`).
_CONVERGED = 0
_ITERATION_LIMIT = 1
_UNBOUNDED = 2
_LINE_SEARCH_FAILED = 3

#: Scaled price or rent beyond which the dual is taken to be unbounded (the instance is infeasible).
_PRICE_BOUND = 1e8
#: Armijo sufficient-decrease parameter.
_ARMIJO = 1e-4
#: A Cholesky pivot below this share of its diagonal is taken as a null direction and regularised.
_PIVOT_TOL = 1e-12
_DEBUG = False
#: Gauss-Seidel sweeps of exact moves of single prices before Newton starts from a cold start.
_CRASH_SWEEPS = 1
#: From a warm start, one Gauss-Seidel pass over the variables whose scaled imbalance exceeds this (prices of
#: nodes that a bound change between periods left far from balance: a route uncapped again, a node that
#: floated on a capped route); the rest are left to Newton.
_WARM_FLOOR = 1e-2
_KINK_TOL = 1e-10
#: A level within this many (1 + |bound|) quantity scales of a finite bound is on it (classification, output).
_ON_BOUND = 1e-11
_LS_ACCEPT = 0.2
#: Solved instances whose solutions a later instance of the batch compares with its own start.
_SHARED_CANDIDATES = 4
#: Factor on the pivot of a null direction of the Newton system (see _cholesky).
_DEFLATE = 1e12


@dataclass(frozen=True)
class PreparedTopology:
    """Index structure of a topology, computed once and shared by every solve of that topology.

    Indices run over the ``N + K`` dual variables: node prices first, then rents.

    Attributes
    ----------
    ent_ptr, ent_idx, ent_val:
        Agent ``j``'s column of ``M = [E; -A]`` in compressed form: entries ``ent_ptr[j]:ent_ptr[j+1]``
        hold the variable index and coefficient.
    var_ptr, var_agent, var_coef:
        For each variable (node or rent), the agents it touches and their coefficient in ``M``.
    eliminated:
        ``(N + K,)`` whether a variable is eliminated (a node of the independent set).
    elim_nodes:
        The eliminated nodes.
    position:
        ``(N + K,)`` index of each non-eliminated variable in the reduced system, ``-1`` if eliminated.
    n_reduced:
        Size of the reduced system (non-eliminated nodes and all rents), ordered to keep its Cholesky
        factor sparse (reverse Cuthill-McKee when that narrows the profile).
    """

    n_nodes: int
    n_cons: int
    ent_ptr: IntArray
    ent_idx: IntArray
    ent_val: FloatArray
    var_ptr: IntArray
    var_agent: IntArray
    var_coef: FloatArray
    eliminated: np.ndarray
    elim_nodes: IntArray
    position: IntArray
    n_reduced: int

    def as_tuple(self) -> tuple[np.ndarray | int, ...]:
        """The arrays in the order the kernel unpacks them."""
        return (
            self.ent_ptr,
            self.ent_idx,
            self.ent_val,
            self.var_ptr,
            self.var_agent,
            self.var_coef,
            self.eliminated,
            self.elim_nodes,
            self.position,
            self.n_reduced,
        )


def prepare_topology(topology: Topology) -> PreparedTopology:
    """Build the index structure the kernel needs (independent set, reduced ordering, envelope).

    Parameters
    ----------
    topology:
        The shared structure of a batch.

    Returns
    -------
    PreparedTopology
    """
    N, K, J = topology.n_nodes, topology.n_cons, topology.n_agents
    # Agent columns of M = [E; -A], duplicates merged (an agent listing one node twice touches it once):
    # every (agent, variable) entry in the order node slot 0, node slot 1, constraint entries; a stable sort
    # by (agent, variable) keeps that order within a duplicate group, whose sum is then taken left to right.
    slot_ok = topology.agent_node >= 0
    agents_all = np.concatenate(
        [np.flatnonzero(slot_ok[:, 0]), np.flatnonzero(slot_ok[:, 1]), np.asarray(topology.con_agent, dtype=np.int64)]
    )
    vars_all = np.concatenate(
        [
            topology.agent_node[slot_ok[:, 0], 0],
            topology.agent_node[slot_ok[:, 1], 1],
            N + np.asarray(topology.con_row, dtype=np.int64),
        ]
    ).astype(np.int64)
    vals_all = np.concatenate(
        [
            topology.agent_coef[slot_ok[:, 0], 0],
            topology.agent_coef[slot_ok[:, 1], 1],
            -np.asarray(topology.con_coef, dtype=np.float64),
        ]
    ).astype(np.float64)
    key = agents_all * (N + K) + vars_all
    order = np.argsort(key, kind="stable")
    key, vals_all = key[order], vals_all[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)
    merged = _sum_groups(vals_all, starts)
    key = key[starts]
    keep = merged != 0.0
    key, merged = key[keep], merged[keep]
    ent_agent = key // (N + K)
    ent_idx = (key % (N + K)).astype(np.int64)
    ent_val = merged.astype(np.float64)
    ent_ptr = np.zeros(J + 1, dtype=np.int64)
    ent_ptr[1:] = np.cumsum(np.bincount(ent_agent, minlength=J))

    # Variable -> agents (the transpose of the above), agents in increasing order.
    by_var = np.argsort(ent_idx, kind="stable")
    var_ptr = np.zeros(N + K + 1, dtype=np.int64)
    var_ptr[1:] = np.cumsum(np.bincount(ent_idx, minlength=N + K))
    var_agent = ent_agent[by_var].astype(np.int64)
    var_coef = ent_val[by_var]

    # Greedy independent set of nodes (no two share an agent), preferring nodes touched by many agents.
    degree = np.diff(var_ptr)[:N]
    order_nodes = np.lexsort((np.arange(N), -degree))
    node_ent = ent_idx < N
    touch = csr_matrix(
        (np.ones(int(node_ent.sum())), (ent_idx[node_ent], ent_agent[node_ent])), shape=(N, J)
    )  # node x agent
    neighbours = (touch @ touch.T).tocsr()  # nodes sharing an agent (each node its own neighbour)
    blocked = np.zeros(N, dtype=bool)
    eliminated = np.zeros(N + K, dtype=bool)
    nb_ptr, nb_idx = neighbours.indptr, neighbours.indices
    for n in order_nodes.tolist():
        if blocked[n] or degree[n] == 0:
            continue
        eliminated[n] = True
        blocked[nb_idx[nb_ptr[n] : nb_ptr[n + 1]]] = True
    elim_nodes = np.flatnonzero(eliminated[:N]).astype(np.int64)

    # Static pattern of the reduced system (every agent free), then a bandwidth-reducing order: variables
    # coupled through one agent, or through one eliminated node (all the agents that touch it).
    kept = np.flatnonzero(~eliminated)
    m = len(kept)
    local = -np.ones(N + K, dtype=np.int64)
    local[kept] = np.arange(m)
    ent_local = local[ent_idx]
    in_reduced = ent_local >= 0
    member = csr_matrix(
        (np.ones(int(in_reduced.sum())), (ent_local[in_reduced], ent_agent[in_reduced])), shape=(m, J)
    )  # reduced variable x agent
    elim_touch = touch[elim_nodes].T.tocsr()  # agent x eliminated node
    through = (member @ elim_touch).tocsr()  # reduced variable x eliminated node
    pattern = (member @ member.T + through @ through.T).tocsr()
    pattern.sum_duplicates()
    pattern.sort_indices()
    candidates = [np.arange(m, dtype=np.int64)]
    if m > 2:
        candidates.append(np.asarray(reverse_cuthill_mckee(pattern, symmetric_mode=True), dtype=np.int64))
    coo = pattern.tocoo()
    best_perm, best_size = candidates[0], np.inf
    for perm in candidates:
        inverse = np.empty(m, dtype=np.int64)
        inverse[perm] = np.arange(m)
        first = np.arange(m)
        np.minimum.at(first, inverse[coo.row], inverse[coo.col])
        profile = float(np.sum(np.arange(m) - first))  # a proxy for the factor's fill
        if profile < best_size:
            best_perm, best_size = perm, profile
    position = -np.ones(N + K, dtype=np.int64)
    position[kept[best_perm]] = np.arange(m)
    return PreparedTopology(
        n_nodes=N,
        n_cons=K,
        ent_ptr=ent_ptr,
        ent_idx=ent_idx,
        ent_val=ent_val,
        var_ptr=var_ptr,
        var_agent=var_agent,
        var_coef=var_coef,
        eliminated=eliminated,
        elim_nodes=elim_nodes,
        position=position,
        n_reduced=m,
    )


def _sum_groups(values: FloatArray, starts: IntArray) -> FloatArray:
    """Sums of consecutive groups of ``values`` starting at ``starts``, each taken left to right."""
    out = values[starts].copy()
    ends = np.r_[starts[1:], len(values)]
    for g in np.flatnonzero(ends - starts > 1).tolist():
        total = 0.0 + float(values[starts[g]])
        for e in range(int(starts[g]) + 1, int(ends[g])):
            total += float(values[e])
        out[g] = total
    return out


#: Prepared structures by the content of their topology (see :func:`_prepared_by_content`), oldest first.
_PREPARED_CACHE: OrderedDict[bytes, PreparedTopology] = OrderedDict()
#: How many prepared structures :data:`_PREPARED_CACHE` keeps.
_PREPARED_CACHE_SIZE = 256
#: Guards :data:`_PREPARED_CACHE` (runs may share a process across threads).
_PREPARED_LOCK = threading.Lock()


def _topology_key(topology: Topology) -> bytes:
    """A digest of everything :func:`prepare_topology` reads (labels aside)."""
    h = hashlib.blake2b(digest_size=20)
    h.update(np.array([topology.n_nodes, topology.n_cons, topology.n_agents], dtype=np.int64).tobytes())
    for arr, dtype in (
        (topology.agent_node, np.int64),
        (topology.agent_coef, np.float64),
        (topology.con_row, np.int64),
        (topology.con_agent, np.int64),
        (topology.con_coef, np.float64),
    ):
        data = np.ascontiguousarray(arr, dtype=dtype)
        h.update(np.array(data.shape, dtype=np.int64).tobytes())
        h.update(data.tobytes())
    return h.digest()


def _prepared_by_content(topology: Topology) -> PreparedTopology:
    """:func:`prepare_topology`, cached by the topology's content.

    Every run builds fresh topology objects, but the topology of a mineral is the same in every run of a
    scenario (and in every draw of an ensemble), so its prepared structure is computed once per process.
    """
    key = _topology_key(topology)
    with _PREPARED_LOCK:
        prepared = _PREPARED_CACHE.get(key)
        if prepared is not None:
            _PREPARED_CACHE.move_to_end(key)
            return prepared
    prepared = prepare_topology(topology)
    with _PREPARED_LOCK:
        _PREPARED_CACHE[key] = prepared
        while len(_PREPARED_CACHE) > _PREPARED_CACHE_SIZE:
            _PREPARED_CACHE.popitem(last=False)
    return prepared


def clear_prepared_cache() -> None:
    """Forget every prepared structure cached by content (for benchmarks of a first run)."""
    with _PREPARED_LOCK:
        _PREPARED_CACHE.clear()


# --------------------------------------------------------------------------------------------------------
# Kernel. All quantities are scaled: prices and rents by price_scale, levels by quantity_scale.
#
# ``st`` is the prepared structure as a tuple: (ent_ptr, ent_idx, ent_val, var_ptr, var_agent, var_coef,
# eliminated, elim_nodes, position, n_reduced). ``inst`` is one instance: (cost, slope, inv_slope, lower,
# upper, injection, rhs, mu_on), where ``mu_on[k]`` is False for a constraint with rhs = +inf (never binds).
# --------------------------------------------------------------------------------------------------------


@nb.njit(cache=True)
def _clip(z, lower, upper):  # type: ignore[no-untyped-def]
    return min(max(z, lower), upper)


@nb.njit(cache=True)
def _in_play(z, lower, upper):  # type: ignore[no-untyped-def]
    """Whether an agent with unconstrained level ``z`` counts as free in the Newton model.

    Inside its bounds, or on a bound to within rounding: an agent sitting exactly at a kink is counted
    free, so that the model over- rather than under-estimates the curvature (the line search can lengthen
    a short step; a step that is far too long stalls in front of the kink).
    """
    if not lower < upper:
        return False
    if _KINK_TOL < 0.0:
        return lower < z < upper
    return lower - _KINK_TOL * (1.0 + abs(lower)) <= z <= upper + _KINK_TOL * (1.0 + abs(upper))


@nb.njit(cache=True)
def _responses(st, inst, x, u, v):  # type: ignore[no-untyped-def]
    """Net values ``u = M' x - cost`` and the agents' optimal levels ``v``."""
    ent_ptr, ent_idx, ent_val = st[0], st[1], st[2]
    cost, inv_slope, lower, upper = inst[0], inst[2], inst[3], inst[4]
    for j in range(cost.shape[0]):
        acc = -cost[j]
        for e in range(ent_ptr[j], ent_ptr[j + 1]):
            acc += ent_val[e] * x[ent_idx[e]]
        u[j] = acc
        v[j] = _clip(acc * inv_slope[j], lower[j], upper[j])


@nb.njit(cache=True)
def _gradient(st, inst, n_nodes, v, G):  # type: ignore[no-untyped-def]
    """Gradient of the dual: node excess ``E v + injection`` and constraint slack ``rhs - A v``.

    Each variable's sum is gathered over its agents in increasing order, starting from its constant: the
    same additions in the same order as scattering agent by agent would make, without storing to and
    reloading the same entry of ``G`` for consecutive agents of one node.
    """
    var_ptr, var_agent, var_coef = st[3], st[4], st[5]
    injection, rhs, mu_on = inst[5], inst[6], inst[7]
    for i in range(n_nodes):
        acc = injection[i]
        for idx in range(var_ptr[i], var_ptr[i + 1]):
            acc += var_coef[idx] * v[var_agent[idx]]
        G[i] = acc
    for k in range(rhs.shape[0]):
        i = n_nodes + k
        if mu_on[k]:
            acc = rhs[k]
            for idx in range(var_ptr[i], var_ptr[i + 1]):
                acc += var_coef[idx] * v[var_agent[idx]]
            G[i] = acc
        else:
            G[i] = 0.0


@nb.njit(cache=True)
def _residual(x, G, n_nodes, mu_on):  # type: ignore[no-untyped-def]
    """Largest scaled residual: node excess, constraint violation, complementarity of rents."""
    worst = 0.0
    for n in range(n_nodes):
        worst = max(worst, abs(G[n]))
    for k in range(mu_on.shape[0]):
        if mu_on[k]:
            i = n_nodes + k
            worst = max(worst, -G[i], abs(x[i] * G[i]))
    return worst


@nb.njit(cache=True)
def _phi_increment(w0, dw, slope, lower, upper):  # type: ignore[no-untyped-def]
    """``phi(w0 + dw) - phi(w0)``, the integral of ``clip(w / slope, lower, upper)`` over the step.

    Written in terms of the increment so that it keeps its relative accuracy when it is tiny (a difference
    of two large values of ``g`` would not).
    """
    if dw == 0.0:
        return 0.0
    low_break = lower * slope
    high_break = upper * slope
    w1 = w0 + dw
    a, b = (w0, w1) if dw > 0.0 else (w1, w0)
    if b <= low_break:
        return lower * dw
    if a >= high_break:
        return upper * dw
    if a >= low_break and b <= high_break:
        return dw * (2.0 * w0 + dw) / (2.0 * slope)
    total = 0.0
    if a < low_break:
        total += lower * (min(b, low_break) - a)
    lo_mid = max(a, low_break)
    hi_mid = min(b, high_break)
    if hi_mid > lo_mid:
        total += (hi_mid - lo_mid) * (hi_mid + lo_mid) / (2.0 * slope)
    if b > high_break:
        total += upper * (b - max(a, high_break))
    return total if dw > 0.0 else -total


@nb.njit(cache=True)
def _trial(st, inst, n_nodes, t, x, d, u, G, xt, dx, ut, vt, Gt):  # type: ignore[no-untyped-def]
    """Evaluate the point ``P(x + t d)`` of the projection arc (rents clipped at zero).

    Returns the change of ``g`` (accurate to rounding in the step), the first-order term ``G . dx`` and the
    sum of absolute contributions to the change (its rounding noise level).
    """
    ent_ptr, ent_idx, ent_val = st[0], st[1], st[2]
    cost, slope, inv_slope, lower, upper = inst[0], inst[1], inst[2], inst[3], inst[4]
    injection, rhs, mu_on = inst[5], inst[6], inst[7]
    gdx = 0.0
    for i in range(x.shape[0]):
        step = t * d[i]
        if i >= n_nodes and x[i] + step < 0.0:
            step = -x[i]
        dx[i] = step
        xt[i] = x[i] + step
        gdx += G[i] * step
    change = 0.0
    noise = 0.0
    for n in range(n_nodes):
        term = injection[n] * dx[n]
        change += term
        noise += abs(term)
    for k in range(mu_on.shape[0]):
        if mu_on[k]:
            term = rhs[k] * dx[n_nodes + k]
            change += term
            noise += abs(term)
    for j in range(cost.shape[0]):
        du = 0.0
        acc = -cost[j]
        for e in range(ent_ptr[j], ent_ptr[j + 1]):
            i = ent_idx[e]
            du += ent_val[e] * dx[i]
            acc += ent_val[e] * xt[i]
        inc = _phi_increment(u[j], du, slope[j], lower[j], upper[j])
        change += inc
        noise += abs(inc)
        ut[j] = acc
        vt[j] = _clip(acc * inv_slope[j], lower[j], upper[j])
    _gradient(st, inst, n_nodes, vt, Gt)
    return change, gdx, noise


@nb.njit(cache=True)
def _arc_slope(G, x, d, n_nodes):  # type: ignore[no-untyped-def]
    """Derivative of ``g`` along the projection arc leaving ``x`` in direction ``d``."""
    acc = 0.0
    for i in range(x.shape[0]):
        if i >= n_nodes and x[i] <= 0.0 and d[i] < 0.0:
            continue
        acc += G[i] * d[i]
    return acc


@nb.njit(cache=True, inline="always")
def _ray_gradient(agents, rates, g0, u, inv_slope, lower, upper, shift):  # type: ignore[no-untyped-def]
    """Derivative of ``g`` along a ray after moving ``shift`` along it, and its rounding scale.

    ``agents`` and ``rates`` list the agents whose net value changes along the ray and how fast; ``g0`` is
    the derivative at the start.
    """
    acc = g0
    scale = abs(g0)
    for q in range(agents.shape[0]):
        j = agents[q]
        rate = rates[q]
        before = _clip(u[j] * inv_slope[j], lower[j], upper[j])
        after = _clip((u[j] + rate * shift) * inv_slope[j], lower[j], upper[j])
        acc += rate * (after - before)
        scale += abs(rate) * (abs(after) + abs(before))
    return acc, scale


@nb.njit(cache=True, inline="always")
def _reached(agents, rates, g0, u, inv_slope, lower, upper, shift):  # type: ignore[no-untyped-def]
    """Whether the derivative along the ray has reached zero (to rounding) after ``shift``."""
    g, scale = _ray_gradient(agents, rates, g0, u, inv_slope, lower, upper, shift)
    return g * g0 <= 0.0 or abs(g) <= 1e-13 * scale


@nb.njit(cache=True)
def _ray_root(agents, rates, g0, u, slope, inv_slope, lower, upper, buf):  # type: ignore[no-untyped-def]
    """The move along a ray that minimises ``g`` on it; ``inf`` (signed) if ``g`` falls without bound.

    Along a ray the derivative of ``g`` is monotone and piecewise linear with a kink where an agent meets a
    bound: sort the kinks, find the bracket of the root by bisection, interpolate.
    """
    if g0 == 0.0:
        return 0.0
    sign = -1.0 if g0 > 0.0 else 1.0
    count = 0
    for q in range(agents.shape[0]):
        j = agents[q]
        if not lower[j] < upper[j] or rates[q] == 0.0:
            continue
        if lower[j] > -np.inf:
            dist = sign * (slope[j] * lower[j] - u[j]) / rates[q]
            if dist > 0.0:
                buf[count] = dist
                count += 1
        if upper[j] < np.inf:
            dist = sign * (slope[j] * upper[j] - u[j]) / rates[q]
            if dist > 0.0:
                buf[count] = dist
                count += 1
    kinks = np.sort(buf[:count])
    last = kinks[count - 1] if count else 0.0
    if count and _reached(agents, rates, g0, u, inv_slope, lower, upper, sign * last):
        low, high = 0, count - 1  # the first kink at which the derivative has reached zero
        while low < high:
            mid = (low + high) // 2
            if _reached(agents, rates, g0, u, inv_slope, lower, upper, sign * kinks[mid]):
                high = mid
            else:
                low = mid + 1
        t1 = kinks[low]
        g1, _ = _ray_gradient(agents, rates, g0, u, inv_slope, lower, upper, sign * t1)
        t0 = kinks[low - 1] if low > 0 else 0.0
        g_0 = _ray_gradient(agents, rates, g0, u, inv_slope, lower, upper, sign * t0)[0] if low > 0 else g0
        if g1 * g0 >= 0.0 or g1 == g_0:
            return sign * t1
        return sign * (t0 + g_0 * (t1 - t0) / (g_0 - g1))
    g_last, _ = _ray_gradient(agents, rates, g0, u, inv_slope, lower, upper, sign * last)
    g_far, _ = _ray_gradient(agents, rates, g0, u, inv_slope, lower, upper, sign * (last + 1.0))
    rate = g_last - g_far  # per unit of distance; same sign as g0 while the derivative still moves to zero
    if rate * g0 <= 0.0:
        return sign * np.inf
    return sign * (last + g_last / rate)


@nb.njit(cache=True, fastmath={"reassoc", "contract"})
def _cholesky(S, diag_ref, chain, null_pivots):  # type: ignore[no-untyped-def]
    """In-place Cholesky ``S = U' U`` of the upper triangle of ``S`` (outer-product form).

    Rows are updated by contiguous axpys and zero multipliers are skipped, so the block structure of the
    reduced system is used without bookkeeping. A pivot that vanishes relative to ``diag_ref`` (a direction
    no free agent pins) is replaced by ``diag_ref``, the curvature that variable has alone; for a variable
    that has free agents (``chain``: a group of prices tied together by free agents but pinned by none) by
    ``diag_ref * _DEFLATE``, which takes the direction out of the Newton step, and the pivot is listed in
    ``null_pivots`` (``diag_ref`` then holds the new pivot). Returns how many were listed.
    """
    m = S.shape[0]
    n_null = 0
    for k in range(m):
        pivot = S[k, k]
        if pivot <= _PIVOT_TOL * diag_ref[k]:
            if chain[k]:
                diag_ref[k] *= _DEFLATE
                null_pivots[n_null] = k
                n_null += 1
            pivot = diag_ref[k]
        root = np.sqrt(pivot)
        S[k, k] = root
        inv = 1.0 / root
        for i in range(k + 1, m):
            S[k, i] *= inv
        for i in range(k + 1, m):
            factor = S[k, i]
            if factor == 0.0:
                continue
            for j in range(i, m):
                S[i, j] -= factor * S[k, j]
    return n_null


@nb.njit(cache=True, fastmath={"reassoc", "contract"})
def _cholesky_solve(U, y):  # type: ignore[no-untyped-def]
    """Solve ``U' U z = y`` in place."""
    m = U.shape[0]
    for k in range(m):
        y[k] /= U[k, k]
        yk = y[k]
        if yk != 0.0:
            for i in range(k + 1, m):
                y[i] -= U[k, i] * yk
    for i in range(m - 1, -1, -1):
        acc = y[i]
        for j in range(i + 1, m):
            acc -= U[i, j] * y[j]
        y[i] = acc / U[i, i]


@nb.njit(cache=True)
def _newton_direction(  # type: ignore[no-untyped-def]
    st, G, free_scale, fixed, reg, flat, S, r, diag_ref, chain, null_pivots, d, w, w_mark, w_list
):
    """Newton direction ``d`` on the free variables (fixed ones get 0), by Schur complement.

    ``reg[i]`` is variable ``i``'s own curvature: its Hessian diagonal, or for a variable no free agent
    touches (``flat[i]``), the curvature that makes its step the move that balances it alone. Leaves the
    factor in ``S``; returns the number of null directions found (see :func:`_cholesky`).
    """
    ent_ptr, ent_idx, ent_val = st[0], st[1], st[2]
    var_ptr, var_agent, var_coef = st[3], st[4], st[5]
    eliminated, elim_nodes, position = st[6], st[7], st[8]
    m = S.shape[0]
    for a in range(m):
        w_mark[a] = -1
        for b in range(a, m):
            S[a, b] = 0.0
    for i in range(G.shape[0]):
        d[i] = 0.0
        a = position[i]
        if a < 0:
            continue
        chain[a] = not (fixed[i] or flat[i])
        if fixed[i]:
            S[a, a] = 1.0
            diag_ref[a] = 1.0
            r[a] = 0.0
        else:
            diag_ref[a] = reg[i]
            r[a] = -G[i]
    # Free agents' curvature between non-eliminated variables.
    for j in range(free_scale.shape[0]):
        dj = free_scale[j]
        if dj == 0.0:
            continue
        for e1 in range(ent_ptr[j], ent_ptr[j + 1]):
            i1 = ent_idx[e1]
            if fixed[i1] or eliminated[i1]:
                continue
            a = position[i1]
            val = dj * ent_val[e1]
            for e2 in range(ent_ptr[j], e1 + 1):
                i2 = ent_idx[e2]
                if fixed[i2] or eliminated[i2]:
                    continue
                b = position[i2]
                if a <= b:
                    S[a, b] += val * ent_val[e2]
                else:
                    S[b, a] += val * ent_val[e2]
    # Eliminate the independent set: S -= w w' / h, r -= w r_o / h for each eliminated node o.
    for q in range(elim_nodes.shape[0]):
        o = elim_nodes[q]
        count = 0
        for idx in range(var_ptr[o], var_ptr[o + 1]):
            j = var_agent[idx]
            dj = free_scale[j]
            if dj == 0.0:
                continue
            c = var_coef[idx]
            for e in range(ent_ptr[j], ent_ptr[j + 1]):
                i = ent_idx[e]
                if i == o or fixed[i]:
                    continue
                a = position[i]
                if w_mark[a] != q:
                    w_mark[a] = q
                    w[a] = 0.0
                    w_list[count] = a
                    count += 1
                w[a] += dj * c * ent_val[e]
        h = reg[o]
        rhs_o = -G[o]
        for ia in range(count):
            a = w_list[ia]
            wa = w[a] / h
            r[a] -= wa * rhs_o
            for ib in range(count):
                b = w_list[ib]
                if b >= a:
                    S[a, b] -= wa * w[b]
    n_null = _cholesky(S, diag_ref, chain, null_pivots)
    _cholesky_solve(S, r)
    _expand(st, G, free_scale, fixed, reg, r, d, True)
    return n_null


@nb.njit(cache=True)
def _expand(st, G, free_scale, fixed, reg, reduced, d, with_gradient):  # type: ignore[no-untyped-def]
    """Full-length direction ``d`` from the reduced solution: copy it, then back out eliminated nodes."""
    ent_ptr, ent_idx, ent_val = st[0], st[1], st[2]
    var_ptr, var_agent, var_coef = st[3], st[4], st[5]
    elim_nodes, position = st[7], st[8]
    for i in range(d.shape[0]):
        a = position[i]
        d[i] = reduced[a] if (a >= 0 and not fixed[i]) else 0.0
    for q in range(elim_nodes.shape[0]):
        o = elim_nodes[q]
        acc = -G[o] if with_gradient else 0.0
        for idx in range(var_ptr[o], var_ptr[o + 1]):
            j = var_agent[idx]
            dj = free_scale[j]
            if dj == 0.0:
                continue
            s = 0.0
            for e in range(ent_ptr[j], ent_ptr[j + 1]):
                i = ent_idx[e]
                if i != o:
                    s += ent_val[e] * d[i]
            acc -= dj * var_coef[idx] * s
        d[o] = acc / reg[o]


@nb.njit(cache=True)
def _canonicalise(st, inst, n_nodes, x):  # type: ignore[no-untyped-def]
    """Make the prices that the equilibrium leaves undetermined canonical.

    Returns 0 when every price is pinned, 1 when canonical prices were set, 2 when the iterate's were kept.

    A *floating group* is a set of nodes tied together by free agents (strictly inside their bounds) with
    no free agent that touches one node only: all its prices can move together (in the ratio ``z`` the
    yields impose, ``z > 0``) without changing any free agent's level. A single node with no free agent is
    the simplest group. Along that move each bound agent on the group's edge stays on its bound over an
    interval. Among the moves that keep every level, take the highest prices (the cost of the cheapest unit
    that could reach the group); where there is no highest, the lowest (the highest value of any use); a
    group with no agent that could move gets its first node's price set to 0. Both are found by relaxation
    from the pinned nodes (the feasible moves form a lattice when each agent's two coefficients have
    opposite signs), so they do not depend on the iterate. Where the relaxation does not settle, or a level
    would change, the iterate's prices are kept.
    """
    ent_ptr, ent_idx, ent_val = st[0], st[1], st[2]
    var_ptr, var_agent, var_coef = st[3], st[4], st[5]
    cost, slope, inv_slope, lower, upper = inst[0], inst[1], inst[2], inst[3], inst[4]
    J = cost.shape[0]
    u0 = np.empty(J)
    v0 = np.empty(J)
    _responses(st, inst, x, u0, v0)
    # Free agents, with a margin: a level within rounding of its bound is on the bound.
    free = np.zeros(J, dtype=np.bool_)
    for j in range(J):
        free[j] = _strictly_inside(u0[j] * inv_slope[j], lower[j], upper[j])
    # Groups: union-find over nodes joined by free agents touching two nodes.
    parent = np.arange(n_nodes)
    pinned = np.zeros(n_nodes, dtype=np.bool_)
    for j in range(J):
        if not free[j]:
            continue
        first = -1
        count_nodes = 0
        for e in range(ent_ptr[j], ent_ptr[j + 1]):
            i = ent_idx[e]
            if i < n_nodes:
                count_nodes += 1
                if first < 0:
                    first = i
                else:
                    a, b = _find(parent, first), _find(parent, i)
                    if a != b:
                        parent[b] = a
        if count_nodes == 1:
            pinned[first] = True
    for n in range(n_nodes):
        root = _find(parent, n)
        if pinned[n]:
            pinned[root] = True
    # Move ratios z within each group (z = 1 at the root), checked for consistency and sign.
    z = np.zeros(n_nodes)
    stack = np.empty(n_nodes, dtype=np.int64)
    for n in range(n_nodes):
        root = _find(parent, n)
        if pinned[root] or z[root] != 0.0:
            continue
        z[root] = 1.0
        stack[0] = root
        top = 1
        while top > 0 and not pinned[root]:
            top -= 1
            a = stack[top]
            for idx in range(var_ptr[a], var_ptr[a + 1]):
                j = var_agent[idx]
                if not free[j]:
                    continue
                for e in range(ent_ptr[j], ent_ptr[j + 1]):
                    b = ent_idx[e]
                    if b >= n_nodes or b == a:
                        continue
                    target = -var_coef[idx] * z[a] / ent_val[e]
                    if z[b] == 0.0:
                        z[b] = target
                        if target <= 0.0:
                            pinned[root] = True  # not a monotone group: leave it alone
                        stack[top] = b
                        top += 1
                    elif abs(z[b] - target) > 1e-9 * abs(target):
                        pinned[root] = True  # yields around a cycle do not multiply to one: no free move
    # Members: the floating groups, each with its nodes.
    slot = -np.ones(n_nodes, dtype=np.int64)
    roots = np.empty(n_nodes, dtype=np.int64)
    count = 0
    for n in range(n_nodes):
        root = _find(parent, n)
        if pinned[root]:
            continue
        if slot[root] < 0:
            slot[root] = count
            roots[count] = root
            count += 1
        slot[n] = slot[root]
    if count == 0:
        return 0
    # each group's nodes in ascending order (the order of a scan over all nodes)
    group_ptr = np.zeros(count + 1, dtype=np.int64)
    for n in range(n_nodes):
        if slot[n] >= 0:
            group_ptr[slot[n] + 1] += 1
    for q in range(count):
        group_ptr[q + 1] += group_ptr[q]
    group_nodes = np.empty(group_ptr[count], dtype=np.int64)
    filled = group_ptr[:count].copy()
    for n in range(n_nodes):
        if slot[n] >= 0:
            group_nodes[filled[slot[n]]] = n
            filled[slot[n]] += 1
    base = x[:n_nodes].copy()
    shift = np.zeros(count)
    movable = np.zeros(count, dtype=np.bool_)
    for n in range(n_nodes):
        q = slot[n]
        if q < 0:
            continue
        for idx in range(var_ptr[n], var_ptr[n + 1]):
            j = var_agent[idx]
            if lower[j] < upper[j] and not free[j]:
                movable[q] = True
    relax = np.zeros(count, dtype=np.bool_)
    for q in range(count):
        if movable[q]:
            relax[q] = True
        else:
            shift[q] = -base[roots[q]]  # nothing can move: the root's price is 0
    queue = np.empty(count, dtype=np.int64)  # circular
    queued = np.zeros(count, dtype=np.bool_)
    ok = True
    # A group capped from above through other floating groups has a highest price once those are known: it
    # waits for them rather than taking its lowest in the first round of lowest prices (found in round 0,
    # which evaluates every group that relaxes).
    waits = np.zeros(count, dtype=np.bool_)
    # Highest prices first (relaxed down from +inf), then the lowest (up from -inf) for groups with no
    # highest, then the highest again for groups whose bound waited on those, and so on.
    for round_ in range(4):
        side = round_ % 2
        start = np.inf if side == 0 else -np.inf
        head = 0
        size = 0
        for q in range(count):
            if relax[q]:
                shift[q] = start
                if round_ == 1 and waits[q]:
                    relax[q] = False  # not this round: its highest comes in the next
                    continue
                queue[(head + size) % count] = q
                queued[q] = True
                size += 1
        budget = 20 * count + 100  # relaxations allowed before giving up
        while size > 0:
            budget -= 1
            if budget < 0:
                if _DEBUG:
                    print("budget exhausted")
                ok = False
                break
            q = queue[head]
            head = (head + 1) % count
            size -= 1
            queued[q] = False
            best, through_others = _group_bound(
                q,
                group_ptr,
                group_nodes,
                side,
                slot,
                shift,
                base,
                z,
                n_nodes,
                ent_ptr,
                ent_idx,
                ent_val,
                var_ptr,
                var_agent,
                cost,
                slope,
                lower,
                upper,
                u0,
                inv_slope,
                free,
                x,
                roots,
                parent,
            )
            if side == 0 and through_others:
                waits[q] = True
            if np.isnan(best):
                if _DEBUG:
                    print("nan bound for group", q)
                ok = False
                break
            if (side == 0 and best < shift[q]) or (side == 1 and best > shift[q]):
                shift[q] = best
                # Groups whose bounds read this group's prices are relaxed again (through agents on a
                # bound: a free agent never joins two groups, and a fixed one bounds nothing).
                for member in range(group_ptr[q], group_ptr[q + 1]):
                    n = group_nodes[member]
                    for idx in range(var_ptr[n], var_ptr[n + 1]):
                        j = var_agent[idx]
                        if free[j] or not lower[j] < upper[j]:
                            continue
                        for e in range(ent_ptr[j], ent_ptr[j + 1]):
                            i = ent_idx[e]
                            if i < n_nodes and slot[i] >= 0 and slot[i] != q:
                                other = slot[i]
                                if relax[other] and not queued[other]:
                                    queue[(head + size) % count] = other
                                    queued[other] = True
                                    size += 1
        if not ok:
            break
        remaining = False
        for q in range(count):
            relax[q] = not np.isfinite(shift[q])
            remaining = remaining or relax[q]
        if not remaining:
            break
    for q in range(count):
        if ok and not np.isfinite(shift[q]):
            shift[q] = 0.0  # no agent bounds this group's move either way: keep the iterate's prices
    if ok:
        for q in range(count):
            if not np.isfinite(shift[q]):
                if _DEBUG:
                    print("group", q, "not finite", shift[q], "root", roots[q])
                ok = False
    if ok:
        for n in range(n_nodes):
            if slot[n] >= 0:
                x[n] = base[n] + shift[slot[n]] * z[n]
        ut = np.empty(J)
        vt = np.empty(J)
        _responses(st, inst, x, ut, vt)
        for j in range(J):
            if abs(vt[j] - v0[j]) > 1e-10 * (1.0 + abs(v0[j])):
                if _DEBUG:
                    print("level change agent", j, v0[j], vt[j])
                ok = False
                break
    if not ok:
        for n in range(n_nodes):
            x[n] = base[n]
        return 2
    return 1


@nb.njit(cache=True)
def _strictly_inside(z, lower, upper):  # type: ignore[no-untyped-def]
    """Inside the bounds by more than rounding (a level within 1e-11 of a finite bound is on it)."""
    if lower > -np.inf and z <= lower + _ON_BOUND * (1.0 + abs(lower)):
        return False
    if upper < np.inf and z >= upper - _ON_BOUND * (1.0 + abs(upper)):
        return False
    return lower < upper


@nb.njit(cache=True, inline="always")
def _find(parent, n):  # type: ignore[no-untyped-def]
    """Root of ``n`` in a union-find forest (with path halving)."""
    while parent[n] != n:
        parent[n] = parent[parent[n]]
        n = parent[n]
    return n


@nb.njit(cache=True, inline="always")
def _group_bound(  # type: ignore[no-untyped-def]
    q,
    group_ptr,
    group_nodes,
    side,
    slot,
    shift,
    base,
    z,
    n_nodes,
    ent_ptr,
    ent_idx,
    ent_val,
    var_ptr,
    var_agent,
    cost,
    slope,
    lower,
    upper,
    u0,
    inv_slope,
    free,
    x,
    roots,
    parent,
):
    """The tightest bound on group ``q``'s move from its bound agents (upper for side 0, lower for 1), and
    whether one of those agents also touches another floating group;
    ``group_nodes[group_ptr[q]:group_ptr[q + 1]]`` are its nodes, in ascending order."""
    best = np.inf if side == 0 else -np.inf
    through_others = False
    for member in range(group_ptr[q], group_ptr[q + 1]):
        n = group_nodes[member]
        for idx in range(var_ptr[n], var_ptr[n + 1]):
            j = var_agent[idx]
            if free[j] or not lower[j] < upper[j]:
                continue
            # The agent's net value is rest + rate * shift[q]; count each agent once (at its first node in q).
            # Its rate first: only an agent that bounds this side needs the rest of its net value.
            rate = 0.0
            first_here = True
            for e in range(ent_ptr[j], ent_ptr[j + 1]):
                i = ent_idx[e]
                if i < n_nodes and slot[i] == q:
                    if i < n:
                        first_here = False
                    rate += ent_val[e] * z[i]
            if not first_here or abs(rate) <= 1e-12:
                continue
            if u0[j] * inv_slope[j] <= lower[j] or not _strictly_inside(u0[j] * inv_slope[j], lower[j], np.inf):
                level = lower[j]
                caps = rate > 0.0
            else:
                level = upper[j]
                caps = rate < 0.0
            if caps != (side == 0):
                continue
            rest = -cost[j]
            for e in range(ent_ptr[j], ent_ptr[j + 1]):
                i = ent_idx[e]
                if i < n_nodes and slot[i] == q:
                    rest += ent_val[e] * base[i]
                elif i < n_nodes and slot[i] >= 0:
                    rest += ent_val[e] * (base[i] + shift[slot[i]] * z[i])
                    through_others = True
                else:
                    rest += ent_val[e] * x[i]
            bound = (slope[j] * level - rest) / rate
            best = min(best, bound) if side == 0 else max(best, bound)
    return best, through_others


@nb.njit(cache=True)
def _ray_rates(st, n_nodes, x, d, rate):  # type: ignore[no-untyped-def]
    """Rates ``M_j' d`` at which agents' net values move along the arc before it first bends.

    Rents at zero that the step would push below zero stay at zero (their entries are left out); returns the
    step at which the first positive rent reaches zero, where the arc leaves the ray.
    """
    ent_ptr, ent_idx, ent_val = st[0], st[1], st[2]
    t_bend = np.inf
    for i in range(n_nodes, x.shape[0]):
        if d[i] < 0.0 and x[i] > 0.0:
            t_bend = min(t_bend, x[i] / -d[i])
    for j in range(rate.shape[0]):
        acc = 0.0
        for e in range(ent_ptr[j], ent_ptr[j + 1]):
            i = ent_idx[e]
            if i >= n_nodes and d[i] < 0.0 and x[i] <= 0.0:
                continue
            acc += ent_val[e] * d[i]
        rate[j] = acc
    return t_bend


@nb.njit(cache=True, fastmath={"reassoc", "contract"})
def _ray_slope(inst, u, v, rate, slope0, t):  # type: ignore[no-untyped-def]
    """Derivative of ``g`` at step ``t`` along the ray (before the arc bends), from the rates alone."""
    inv_slope, lower, upper = inst[2], inst[3], inst[4]
    acc = 0.0
    for j in range(rate.shape[0]):
        r = rate[j]
        if r != 0.0:
            acc += r * (_clip((u[j] + t * r) * inv_slope[j], lower[j], upper[j]) - v[j])
    return slope0 + acc


@nb.njit(cache=True)
def _line_search(st, inst, n_nodes, x, d, u, v, G, slope0, rate, xt, dx, ut, vt, Gt):  # type: ignore[no-untyped-def]
    """Minimise ``g`` along the projection arc ``P(x + t d)``; leaves the accepted point in the work arrays.

    The derivative along the arc is piecewise linear (and monotone along the ray): bracket its root,
    expanding beyond ``t = 1`` on flat pieces, then close in by regula falsi (Illinois). The step is taken
    once the derivative has fallen to a fifth of its start and ``g`` has fallen enough (Armijo); near
    the solution ``t = 1`` passes at once. Landing past the kinks, where the minimum is, keeps the next
    Newton step from stalling in front of an agent about to leave its bound.

    Trial steps short of the arc's first bend lie on a ray: their derivative comes from the agents' rates
    along it (:func:`_ray_slope`, one pass over the agents); only a step about to be accepted, or one past
    the bend, is evaluated in full (change of ``g``, gradient). If the bracket runs out, the search is run
    again with full evaluations only, and then the best step that decreased ``g`` is taken.

    Returns ``(t, code, trials)``: code ``_CONVERGED`` when a step was accepted, ``_UNBOUNDED`` when ``g``
    falls without bound along the arc, ``_LINE_SEARCH_FAILED`` otherwise; ``trials`` counts full
    evaluations.
    """
    t_ray = _ray_rates(st, n_nodes, x, d, rate) * (1.0 - 1e-9)
    d_max = 0.0
    for i in range(x.shape[0]):
        d_max = max(d_max, abs(d[i]))
    trials = 0
    best_t, best_change = 0.0, 0.0
    for attempt in range(2):
        t_lo, f_lo = 0.0, slope0
        t_hi, f_hi = np.inf, 0.0
        t = 1.0
        side = 0  # Illinois: which end was kept last
        for _ in range(60):
            full = True
            if attempt == 0 and t < t_ray:
                f = _ray_slope(inst, u, v, rate, slope0, t)
                below = f < 0.0
                full = abs(f) <= _LS_ACCEPT * abs(slope0)  # about to be accepted: check it in full
            if full:
                trials += 1
                change, gdx, noise = _trial(st, inst, n_nodes, t, x, d, u, G, xt, dx, ut, vt, Gt)
                f = _arc_slope(Gt, xt, d, n_nodes)
                decrease = change <= _ARMIJO * gdx + 1e-14 * noise
                if decrease and change < best_change:
                    best_t, best_change = t, change
                if decrease and abs(f) <= _LS_ACCEPT * abs(slope0):
                    return t, _CONVERGED, trials
                below = f < 0.0 and decrease
            if below:
                if side == -1:
                    f_hi *= 0.5
                t_lo, f_lo, side = t, f, -1
            else:
                if side == 1:
                    f_lo *= 0.5
                t_hi, f_hi, side = t, f, 1
            if t_hi == np.inf:
                if 4.0 * t * d_max > _PRICE_BOUND:
                    return t, _UNBOUNDED, trials
                t = 4.0 * t
                continue
            if t_hi - t_lo <= 1e-12 * t_hi:
                break
            if f_hi > f_lo:
                t_new = t_lo - f_lo * (t_hi - t_lo) / (f_hi - f_lo)
            else:
                t_new = 0.5 * (t_lo + t_hi)
            width = t_hi - t_lo
            t = min(max(t_new, t_lo + 1e-3 * width), t_hi - 1e-3 * width)
        if attempt == 0:
            best_t, best_change = 0.0, 0.0  # the full search starts afresh
    if best_t > 0.0:
        _trial(st, inst, n_nodes, best_t, x, d, u, G, xt, dx, ut, vt, Gt)
        return best_t, _CONVERGED, trials + 1
    return 0.0, _LINE_SEARCH_FAILED, trials


@nb.njit(cache=True)
def _move_variable(st, inst, i, move, x, u, v, G):  # type: ignore[no-untyped-def]
    """Move variable ``i`` alone by ``move`` and update net values, levels and the gradient."""
    ent_ptr, ent_idx, ent_val = st[0], st[1], st[2]
    var_ptr, var_agent, var_coef = st[3], st[4], st[5]
    inv_slope, lower, upper = inst[2], inst[3], inst[4]
    x[i] += move
    for idx in range(var_ptr[i], var_ptr[i + 1]):
        j = var_agent[idx]
        u[j] += var_coef[idx] * move
        level = _clip(u[j] * inv_slope[j], lower[j], upper[j])
        change = level - v[j]
        if change != 0.0:
            v[j] = level
            for e in range(ent_ptr[j], ent_ptr[j + 1]):
                G[ent_idx[e]] += ent_val[e] * change


@nb.njit(cache=True)
def _sweep(st, inst, n_nodes, x, u, v, G, floor, buf):  # type: ignore[no-untyped-def]
    """One Gauss-Seidel sweep: move each price, then each rent, alone to the minimum of ``g`` along it.

    Variables out of balance by at most ``floor`` stay where they are. Moves that would be unbounded are
    skipped (the Newton iterations report those); rents stay >= 0.
    """
    var_ptr, var_agent, var_coef = st[3], st[4], st[5]
    slope, inv_slope, lower, upper, mu_on = inst[1], inst[2], inst[3], inst[4], inst[7]
    for i in range(x.shape[0]):
        if i >= n_nodes and not mu_on[i - n_nodes]:
            continue
        if abs(G[i]) <= floor:
            continue
        lo, hi = var_ptr[i], var_ptr[i + 1]
        move = _ray_root(var_agent[lo:hi], var_coef[lo:hi], G[i], u, slope, inv_slope, lower, upper, buf)
        if i >= n_nodes:
            move = max(move, -x[i])
        if move == np.inf or move == -np.inf or move == 0.0:
            continue
        _move_variable(st, inst, i, move, x, u, v, G)


@nb.njit(cache=True)
def _admissible_rents(x, n_nodes, mu_on):  # type: ignore[no-untyped-def]
    """Rents of a starting point made admissible in place: zero for rows that never bind, none negative."""
    for k in range(mu_on.shape[0]):
        if not mu_on[k] or x[n_nodes + k] < 0.0:
            x[n_nodes + k] = 0.0


@nb.njit(cache=True)
def _solve_one(st, inst, n_nodes, x, tol, max_iter, sweeps, direction, stats, start):  # type: ignore[no-untyped-def]
    """Solve one scaled instance in place (``x`` holds the start and returns the solution).

    ``sweeps`` Gauss-Seidel sweeps of exact single-variable moves come first (for a cold start); with
    ``sweeps`` 0 (a warm start) one pass moves only the variables out of balance by more than ``_WARM_FLOOR``;
    with ``sweeps`` -1 none (a cold start already swept).
    Returns ``(iterations, outcome)`` with the outcome codes above; on an unbounded dual ``direction``
    holds the direction along which it falls (the diverging prices and rents). ``stats`` counts line-search
    evaluations, exact moves along null directions, and exact moves of single prices on flat pieces.
    ``start`` is ``(u, v, G)`` already evaluated at the start (by :func:`_shared_start`), or empty arrays.
    """
    ent_ptr, ent_idx, ent_val = st[0], st[1], st[2]
    var_ptr, var_agent, var_coef = st[3], st[4], st[5]
    m = st[9]
    slope, inv_slope, lower, upper, mu_on = inst[1], inst[2], inst[3], inst[4], inst[7]
    J = inv_slope.shape[0]
    n_all = x.shape[0]
    K = n_all - n_nodes
    hfull = np.zeros(n_all)
    for i in range(n_all):
        for idx in range(var_ptr[i], var_ptr[i + 1]):
            hfull[i] += var_coef[idx] * var_coef[idx] * inv_slope[var_agent[idx]]
    _admissible_rents(x, n_nodes, mu_on)
    evaluated = start[2].shape[0] == n_all  # an empty G (n_all >= 1): not evaluated, even with no agents
    if evaluated:
        u, v, G = start
    else:
        u = np.empty(J)
        v = np.empty(J)
        G = np.empty(n_all)
    free_scale = np.empty(J)
    in_play = np.empty(J, dtype=np.bool_)
    fixed = np.zeros(n_all, dtype=np.bool_)
    flat = np.zeros(n_all, dtype=np.bool_)
    reg = np.empty(n_all)
    d = np.empty(n_all)
    z = np.empty(n_all)
    S = np.empty((m, m))
    r = np.empty(m)
    diag_ref = np.empty(m)
    chain = np.zeros(m, dtype=np.bool_)
    null_pivots = np.empty(m, dtype=np.int64)
    w = np.zeros(m)
    w_mark = np.empty(m, dtype=np.int64)
    w_list = np.empty(m, dtype=np.int64)
    ray_agents = np.empty(J, dtype=np.int64)
    ray_rates = np.empty(J)
    arc_rate = np.empty(J)
    buf = np.empty(2 * J + 1)
    xt = np.empty(n_all)
    dx = np.empty(n_all)
    ut = np.empty(J)
    vt = np.empty(J)
    Gt = np.empty(n_all)

    if not evaluated:
        _responses(st, inst, x, u, v)
        _gradient(st, inst, n_nodes, v, G)
    # From a cold start (every price at the scale) the first Newton models see few free agents and their
    # steps are cut to a sliver by the line search; a few Gauss-Seidel sweeps that move each price (and
    # rent) alone to the minimum of g along it bring every stage's prices to their level first.
    for _ in range(sweeps):
        _sweep(st, inst, n_nodes, x, u, v, G, 0.1 * tol, buf)
    if sweeps == 0:
        _sweep(st, inst, n_nodes, x, u, v, G, _WARM_FLOOR, buf)
    # sweeps < 0: the start has had its crash sweeps already (_shared_start)
    for it in range(max_iter + 1):
        res = _residual(x, G, n_nodes, mu_on)
        if _DEBUG:
            print("it", it, "res", res, "argmax", np.argmax(np.abs(G)))
        if res <= tol:
            return it, _CONVERGED
        if it == max_iter:
            return it, _ITERATION_LIMIT
        # Rents held at zero this step (Bertsekas' epsilon-active set), and rows that never bind.
        eps_active = min(1e-3, res)
        for i in range(n_all):
            fixed[i] = False
        for k in range(K):
            i = n_nodes + k
            if (not mu_on[k]) or (x[i] <= eps_active and G[i] > 0.0):
                fixed[i] = True
        # Prices (and rents) that no free agent touches sit on a linear piece of g: minimise g exactly
        # along each of them in turn (Gauss-Seidel, so neighbours see each other's moves; a move changes
        # the net values of the moved variable's agents only, so only theirs are classified again).
        for j in range(J):
            in_play[j] = _in_play(u[j] * inv_slope[j], lower[j], upper[j])
            free_scale[j] = inv_slope[j] if in_play[j] else 0.0
        for i in range(n_all):
            if fixed[i] or abs(G[i]) <= 0.1 * tol:
                continue  # already balanced (to within rounding of the tolerance)
            lo, hi = var_ptr[i], var_ptr[i + 1]
            touched = False
            for idx in range(lo, hi):
                if in_play[var_agent[idx]]:
                    touched = True
                    break
            if touched:
                continue
            move = _ray_root(var_agent[lo:hi], var_coef[lo:hi], G[i], u, slope, inv_slope, lower, upper, buf)
            if i >= n_nodes:
                move = max(move, -x[i])
            if move == np.inf or move == -np.inf:
                # g falls without bound along this variable alone: nothing can balance it.
                for q in range(n_all):
                    direction[q] = 0.0
                direction[i] = 1.0 if move > 0.0 else -1.0
                return it, _UNBOUNDED
            if move != 0.0:
                _move_variable(st, inst, i, move, x, u, v, G)
                stats[2] += 1
                for idx in range(lo, hi):
                    j = var_agent[idx]
                    in_play[j] = _in_play(u[j] * inv_slope[j], lower[j], upper[j])
                    free_scale[j] = inv_slope[j] if in_play[j] else 0.0
        # Each variable's own curvature (its Hessian diagonal; where no free agent touches it, the
        # diagonal it would have with all its agents free).
        for i in range(n_all):
            diag = 0.0
            for idx in range(var_ptr[i], var_ptr[i + 1]):
                diag += free_scale[var_agent[idx]] * var_coef[idx] * var_coef[idx]
            flat[i] = diag == 0.0 and not fixed[i]
            if diag > 0.0:
                reg[i] = diag
            else:
                reg[i] = hfull[i] if hfull[i] > 0.0 else 1.0
        n_null = _newton_direction(
            st, G, free_scale, fixed, reg, flat, S, r, diag_ref, chain, null_pivots, d, w, w_mark, w_list
        )
        for i in range(n_all):
            if fixed[i]:
                d[i] = -x[i]
        slope0 = _arc_slope(G, x, d, n_nodes)
        if not slope0 < 0.0:
            # Not a descent direction (rounding in a near-singular system): take a scaled gradient step.
            for i in range(n_all):
                d[i] = -x[i] if fixed[i] else -G[i] / reg[i]
            slope0 = _arc_slope(G, x, d, n_nodes)
            if not slope0 < 0.0:
                return it, _LINE_SEARCH_FAILED
        t, code, trials = _line_search(st, inst, n_nodes, x, d, u, v, G, slope0, arc_rate, xt, dx, ut, vt, Gt)
        stats[0] += trials
        if code == _UNBOUNDED:
            for i in range(n_all):
                direction[i] = d[i]
            return it + 1, _UNBOUNDED
        if code != _CONVERGED:
            return it, code
        if _DEBUG:
            print("   t", t, "trials", trials, "slope0", slope0, "null", n_null)
            for i in range(n_all):
                print(
                    "      var", i, "x", x[i], "d", d[i], "G", G[i], "flat", flat[i], "fixed", fixed[i], "reg", reg[i]
                )
        for i in range(n_all):
            x[i] = xt[i]
        G, Gt = Gt, G  # the trial point's work arrays become the current ones
        u, ut = ut, u
        v, vt = vt, v
        # Groups of prices tied together by free agents but pinned by none: g is linear along the group's
        # common move, so minimise g exactly along it (the Newton step only scaled it by a guess).
        stats[1] += n_null
        for q in range(n_null):
            a = null_pivots[q]
            for b in range(m):
                r[b] = 0.0
            r[a] = diag_ref[a]
            _cholesky_solve(S, r)
            _expand(st, G, free_scale, fixed, reg, r, z, False)
            z_max = 0.0
            for i in range(n_all):
                z_max = max(z_max, abs(z[i]))
            g0 = 0.0
            for i in range(n_all):
                if abs(z[i]) <= 1e-12 * z_max:
                    z[i] = 0.0  # rounding residue of the solve
                g0 += G[i] * z[i]
            if abs(g0) <= 0.1 * tol * z_max:
                continue  # g is already flat along this direction
            count = 0
            for j in range(J):
                rate = 0.0
                for e in range(ent_ptr[j], ent_ptr[j + 1]):
                    rate += ent_val[e] * z[ent_idx[e]]
                if abs(rate) > 1e-10 * z_max:
                    ray_agents[count] = j
                    ray_rates[count] = rate
                    count += 1
            move = _ray_root(ray_agents[:count], ray_rates[:count], g0, u, slope, inv_slope, lower, upper, buf)
            if _DEBUG:
                print("   null pivot", a, "g0", g0, "count", count, "move", move)
                for q in range(count):
                    print(
                        "       agent",
                        ray_agents[q],
                        ray_rates[q],
                        u[ray_agents[q]],
                        lower[ray_agents[q]],
                        upper[ray_agents[q]],
                        slope[ray_agents[q]],
                    )
                for i in range(n_all):
                    print("       z", i, z[i], "G", G[i], "x", x[i])
            for i in range(n_nodes, n_all):  # rents stay >= 0
                if z[i] * move < 0.0 and abs(move * z[i]) > x[i]:
                    move = -x[i] / z[i]
            if move == np.inf or move == -np.inf:
                for i in range(n_all):
                    direction[i] = move * z[i] if z[i] != 0.0 else 0.0
                return it + 1, _UNBOUNDED
            if move != 0.0:
                for i in range(n_all):
                    x[i] += move * z[i]
                for i in range(n_nodes, n_all):
                    x[i] = max(x[i], 0.0)
                _responses(st, inst, x, u, v)
                _gradient(st, inst, n_nodes, v, G)
        for i in range(n_all):
            if abs(x[i]) > _PRICE_BOUND:
                for q in range(n_all):
                    direction[q] = d[q]
                return it + 1, _UNBOUNDED
    return max_iter, _ITERATION_LIMIT


@nb.njit(cache=True, parallel=True)
def _solve_batch(st, n_nodes, batch, x, tol, max_iter, sweeps, canonical, share, out):  # type: ignore[no-untyped-def]
    """Solve every instance of a scaled batch; ``x`` (B, N + K) holds starts and returns solutions.

    ``batch`` is ``(cost, slope, lower, upper, injection, rhs, price_scale)``, each ``(B, ...)``; ``out`` is
    ``(iterations, outcome, direction, stats, raw, source)``, filled per instance (``raw``: the solution before
    its undetermined prices were made canonical; ``source``: the instance whose solution it started from,
    -1 for its own start). With ``share`` > 0, instances are solved in rounds of 1, 1, 2, 4, ... and each
    starts from the best of its own start and the solutions of the last ``share`` instances solved before
    its round (:func:`_shared_start`).
    """
    B = x.shape[0]
    if not share:
        for b in nb.prange(B):
            _solve_instance(b, st, n_nodes, batch, x, tol, max_iter, sweeps, canonical, out, _not_evaluated())
        return
    lo = 0
    size = 1
    while lo < B:
        hi = min(B, lo + size)
        for b in nb.prange(lo, hi):
            own, start = _shared_start(b, lo, share, st, n_nodes, batch, x, tol, sweeps, out)
            _solve_instance(b, st, n_nodes, batch, x, tol, max_iter, own, canonical, out, start)
        if lo > 0:
            size *= 2
        lo = hi


@nb.njit(cache=True, nogil=True)
def _solve_batch_serial(st, n_nodes, batch, x, tol, max_iter, sweeps, canonical, share, out):  # type: ignore[no-untyped-def]
    """:func:`_solve_batch` on the calling thread only (the same rounds, so the same answers).

    For a batch of one instance (every solve of a single run) threads bring nothing, and waking the
    thread pool for each of the many small solves costs time, most of all on a busy machine.
    """
    B = x.shape[0]
    lo = 0
    size = 1
    while lo < B:
        hi = min(B, lo + size) if share else B
        for b in range(lo, hi):
            if share:
                own, start = _shared_start(b, lo, share, st, n_nodes, batch, x, tol, sweeps, out)
            else:
                own, start = sweeps, _not_evaluated()
            _solve_instance(b, st, n_nodes, batch, x, tol, max_iter, own, canonical, out, start)
        if lo > 0:
            size *= 2
        lo = hi


@nb.njit(cache=True)
def _instance(b, batch):  # type: ignore[no-untyped-def]
    """Instance ``b`` of a scaled batch as the kernel's tuple (see the notes above the kernels)."""
    cost, slope, lower, upper, injection, rhs = batch[0], batch[1], batch[2], batch[3], batch[4], batch[5]
    mu_on = np.empty(rhs.shape[1], dtype=np.bool_)
    for k in range(rhs.shape[1]):
        mu_on[k] = rhs[b, k] < np.inf
    return (cost[b], slope[b], 1.0 / slope[b], lower[b], upper[b], injection[b], rhs[b], mu_on)


@nb.njit(cache=True)
def _dual_value(st, inst, n_nodes, x, u, v):  # type: ignore[no-untyped-def]
    """The dual objective ``g(x)`` (scaled), for comparing starting points of one instance; ``u`` and ``v``
    receive what :func:`_responses` would (the same operations in the same order), for the start finally
    chosen (whose gradient :func:`_gradient` then gives)."""
    ent_ptr, ent_idx, ent_val = st[0], st[1], st[2]
    cost, slope, inv_slope, lower, upper = inst[0], inst[1], inst[2], inst[3], inst[4]
    injection, rhs, mu_on = inst[5], inst[6], inst[7]
    total = 0.0
    for n in range(n_nodes):
        total += injection[n] * x[n]
    for k in range(mu_on.shape[0]):
        if mu_on[k]:
            total += rhs[k] * x[n_nodes + k]
    for j in range(cost.shape[0]):
        acc = -cost[j]
        for e in range(ent_ptr[j], ent_ptr[j + 1]):
            acc += ent_val[e] * x[ent_idx[e]]
        total += _phi_increment(0.0, acc, slope[j], lower[j], upper[j])
        u[j] = acc
        v[j] = _clip(acc * inv_slope[j], lower[j], upper[j])
    return total


@nb.njit(cache=True)
def _not_evaluated():  # type: ignore[no-untyped-def]
    """No evaluation of the start to hand on (see :func:`_solve_one`'s ``start``)."""
    return np.empty(0), np.empty(0), np.empty(0)


@nb.njit(cache=True)
def _shared_start(b, solved, candidates, st, n_nodes, batch, x, tol, sweeps, out):  # type: ignore[no-untyped-def]
    """Start instance ``b`` from the best of its own start and the (raw) solutions of the last
    ``candidates`` instances solved before it (indices below ``solved``): the lowest dual objective among
    those also nearer balance (a smaller largest residual) than its own start. Instances of one batch are
    often alike (the draws of an ensemble in one period): another draw's solution of the same period is
    nearer than the draw's own previous period, most of all where a shock (an export ban) moves every draw.
    A cold start is compared after its crash sweeps (made here). Returns the sweeps still to make (``sweeps``
    in the first round, -1 after crash sweeps made here, 0 (the warm pass) from a warm start or another
    instance's solution) and the chosen start's net values, levels and gradient (for :func:`_solve_one`;
    empty in the first round).
    """
    raw, source = out[4], out[5]
    outcome = out[1]
    scale = batch[6]
    source[b] = -1
    if solved == 0:
        return sweeps, _not_evaluated()
    inst = _instance(b, batch)
    mu_on = inst[7]
    n_all = x.shape[1]
    J = inst[0].shape[0]
    y = np.empty(n_all)
    for i in range(n_all):
        y[i] = x[b, i]
    _admissible_rents(y, n_nodes, mu_on)
    if sweeps > 0:
        u = np.empty(J)
        v = np.empty(J)
        Gs = np.empty(n_all)
        buf = np.empty(2 * J + 1)
        _responses(st, inst, y, u, v)
        _gradient(st, inst, n_nodes, v, Gs)
        for _ in range(sweeps):
            _sweep(st, inst, n_nodes, y, u, v, Gs, 0.1 * tol, buf)
        for i in range(n_all):
            x[b, i] = y[i]
    # the best start's evaluation, and a second set of arrays for the candidate being evaluated
    u_best, v_best, G_best = np.empty(J), np.empty(J), np.empty(n_all)
    u_try, v_try, G_try = np.empty(J), np.empty(J), np.empty(n_all)
    best = _dual_value(st, inst, n_nodes, y, u_best, v_best)
    _gradient(st, inst, n_nodes, v_best, G_best)
    balance = _residual(y, G_best, n_nodes, mu_on)
    pick = -1
    for c in range(solved - 1, max(0, solved - candidates) - 1, -1):
        if outcome[c] != _CONVERGED:
            continue
        ratio = scale[c] / scale[b]
        for i in range(n_all):
            y[i] = raw[c, i] * ratio
        _admissible_rents(y, n_nodes, mu_on)
        value = _dual_value(st, inst, n_nodes, y, u_try, v_try)
        if not value < best:
            continue  # its gradient is not needed
        _gradient(st, inst, n_nodes, v_try, G_try)
        if _residual(y, G_try, n_nodes, mu_on) < balance:
            best = value
            pick = c
            u_best, u_try = u_try, u_best
            v_best, v_try = v_try, v_best
            G_best, G_try = G_try, G_best
    if pick < 0:
        return (-1 if sweeps > 0 else sweeps), (u_best, v_best, G_best)
    ratio = scale[pick] / scale[b]
    for i in range(n_all):
        x[b, i] = raw[pick, i] * ratio
    source[b] = pick
    return 0, (u_best, v_best, G_best)


@nb.njit(cache=True)
def _solve_instance(b, st, n_nodes, batch, x, tol, max_iter, sweeps, canonical, out, start):  # type: ignore[no-untyped-def]
    """Solve instance ``b`` of a scaled batch in place (the body of :func:`_solve_batch`); ``start`` as in
    :func:`_solve_one`."""
    iterations, outcome, direction, stats, raw = out[0], out[1], out[2], out[3], out[4]
    inst = _instance(b, batch)
    its, code = _solve_one(st, inst, n_nodes, x[b], tol, max_iter, sweeps, direction[b], stats[b], start)
    iterations[b] = its
    outcome[b] = code
    for i in range(x.shape[1]):
        raw[b, i] = x[b, i]  # the iterate itself: the better warm start for a nearby problem
    if code == _CONVERGED and canonical:
        stats[b, 3] = _canonicalise(st, inst, n_nodes, x[b])


# --------------------------------------------------------------------------------------------------------
# Python facade
# --------------------------------------------------------------------------------------------------------


class BatchedNewtonSolver:
    """Our own solver: a whole batch sharing one topology (or several such batches, :meth:`solve_many`),
    solved by semismooth Newton in price space.

    Parameters
    ----------
    max_iter:
        Newton iterations per instance in the batched pass.
    extra_iter:
        Further iterations for an instance still short of the tolerance after ``max_iter``: it starts again
        cold if it was warm-started (``max_iter`` steps), then continues from its last iterate, alone.
    restart_from_reference:
        For an instance still unsolved after that, solve it with HiGHS and start Newton again from HiGHS's
        prices and rents (``max_iter`` more steps; the answer must still meet the engine's tolerance). Only
        then does the solve raise :class:`~critmin.core.errors.SolveError`.
    canonical_prices:
        Replace the prices of nodes that no free agent pins by their canonical value (see
        ``docs/engine.md``). On by default; switching it off returns the iterate's value.
    share_starts:
        Let the instances of a batch start from each other's solutions: they are solved in rounds of 1, 1,
        2, 4, ... instances, and each starts from the solution of one of the last four instances solved
        before its round where that has a lower dual objective and a smaller residual than its own start.
        The draws of an ensemble in one period are alike, and another draw's solution is usually nearer than
        the draw's own previous period. On by default; an instance's answer then depends on its batch within
        the tolerance, and by more only at prices the equilibrium leaves open (see ``docs/engine.md``).
    """

    name = "engine"

    def __init__(
        self,
        max_iter: int = 100,
        canonical_prices: bool = True,
        extra_iter: int = 400,
        restart_from_reference: bool = True,
        share_starts: bool = True,
    ) -> None:
        self.max_iter = max_iter
        self.share_starts = share_starts
        self.extra_iter = extra_iter
        self.restart_from_reference = restart_from_reference
        #: Labels of the instances of the last batch restarted from HiGHS's answer (diagnostics).
        self.last_restarted: list[str] = []
        #: Labels of the instances of the last batch that needed the extra iterations (diagnostics).
        self.last_extended: list[str] = []
        self.canonical_prices = canonical_prices
        self._prepared: dict[int, tuple[weakref.ref[Topology], PreparedTopology]] = {}
        #: Per instance of the last batch: line-search evaluations, moves along null directions, moves of
        #: single prices on flat pieces, and the canonical-price outcome (0 nothing to do, 1 applied,
        #: 2 kept the iterate's prices) (diagnostics).
        self.last_stats = np.zeros((0, 4), dtype=np.int64)
        #: Per instance of the last batch: the instance whose solution it started from, -1 for its own start.
        self.last_sources = np.zeros(0, dtype=np.int64)

    def prepare(self, topology: Topology) -> PreparedTopology:
        """The prepared structure of ``topology`` (computed once and cached per topology object)."""
        key = id(topology)
        hit = self._prepared.get(key)
        if hit is not None and hit[0]() is topology:
            return hit[1]
        prepared = _prepared_by_content(topology)
        self._prepared = {k: val for k, val in self._prepared.items() if val[0]() is not None}
        self._prepared[key] = (weakref.ref(topology), prepared)
        return prepared

    def solve(
        self,
        topology: Topology,
        data: InstanceData,
        *,
        warm_start: FloatArray | None = None,
        warm_rents: FloatArray | None = None,
        tol: float = 1e-9,
    ) -> Solution:
        """Solve every instance of the batch.

        Parameters
        ----------
        topology, data:
            The batch.
        warm_start:
            ``(B, N)`` starting prices (e.g. the previous period's); default: ``price_scale`` everywhere.
        warm_rents:
            ``(B, K)`` starting rents; default zero.
        tol:
            Required largest relative residual (:func:`~critmin.market.problem.residuals`).

        Returns
        -------
        Solution
            ``solver="engine"``; ``iterations`` counts Newton steps.

        Raises
        ------
        InfeasibleError
            Bounds that conflict, or a dual that diverges (no feasible allocation); names the instance and
            the nodes or constraints that cannot balance.
        SolveError
            The iteration limit, or a line search that could not make progress.
        """
        return self.solve_many([BatchProblem(topology, data, warm_start, warm_rents)], tol=tol)[0]

    def solve_many(self, problems: list[BatchProblem], *, tol: float = 1e-9) -> list[Solution]:
        """Solve several batches (of different topologies: the minerals of a period) in one call.

        Each batch gets exactly the answer :meth:`solve` gives it alone. With more than one batch and more
        than one thread, the batches are spread over the engine's threads (numba's thread count), each
        solved on one thread, largest first; a single batch is spread over the threads instance by
        instance. Errors are raised for the first batch, in the given order, that has one; the diagnostics
        (``last_stats`` and the others) are those of the last batch.
        """
        threads = nb.get_num_threads()
        if len(problems) < 2 or threads < 2:
            out = []
            for problem in problems:
                job = self._begin(problem, tol)
                job.run()
                out.append(self._finish(job))
            return out
        # Each batch goes to a thread as soon as it is set up, largest first, and is finished here (checks,
        # residuals: Python) while the others are still being solved.
        pool = _thread_pool(threads)
        order = sorted(range(len(problems)), key=lambda i: -_work(problems[i]))
        started: dict[int, tuple[_Job, Future[None]] | CritminError | ValueError] = {}
        for i in order:
            try:
                job = self._begin(problems[i], tol)
            except (CritminError, ValueError) as error:  # raised in its turn below
                started[i] = error
                continue
            started[i] = (job, pool.submit(job.run_serial))
        solutions = []
        for i in range(len(problems)):
            entry = started[i]
            if isinstance(entry, Exception):
                raise entry
            job, done = entry
            done.result()
            solutions.append(self._finish(job))
        return solutions

    def _begin(self, problem: BatchProblem, tol: float) -> _Job:
        """Check a batch and set up its kernel call (starts, scaled numbers, output arrays)."""
        topology, data, warm_start, warm_rents = problem.topology, problem.data, problem.warm_start, problem.warm_rents
        data.validate(topology)
        check_bounds(topology, data)
        B, N, K = data.n_instances, topology.n_nodes, topology.n_cons
        if warm_start is not None and warm_start.shape != (B, N):
            raise ValueError(f"warm_start has shape {warm_start.shape}, expected {(B, N)}")
        if warm_rents is not None and warm_rents.shape != (B, K):
            raise ValueError(f"warm_rents has shape {warm_rents.shape}, expected {(B, K)}")
        groups = _distinct_instances(data, warm_start, warm_rents) if B > 1 else None
        if groups is not None:
            # Instances equal in every number, start included, have the same answer (the kernel solves each
            # instance on its own): solve one of each (e.g. the draws of an ensemble before any uncertain input
            # acts) and copy it to the others.
            first = groups[0]
            data = data.take(first)
            warm_start = None if warm_start is None else warm_start[first]
            warm_rents = None if warm_rents is None else warm_rents[first]
            B = data.n_instances
        prepared = self.prepare(topology)
        ps = data.price_scale[:, None]
        batch = _scaled_batch(data)
        x = np.empty((B, N + K))
        x[:, :N] = 1.0 if warm_start is None else warm_start / ps
        x[:, N:] = 0.0 if warm_rents is None else np.maximum(warm_rents / ps, 0.0)
        out = (
            np.zeros(B, dtype=np.int64),  # iterations
            np.zeros(B, dtype=np.int64),  # outcome
            np.zeros((B, N + K)),  # direction
            np.zeros((B, 4), dtype=np.int64),  # stats
            np.empty((B, N + K)),  # raw
            np.full(B, -1, dtype=np.int64),  # source
        )
        warm = warm_start is not None or warm_rents is not None
        sweeps = 0 if warm else _CRASH_SWEEPS
        share = _SHARED_CANDIDATES if self.share_starts and B > 1 else 0
        call = (prepared.as_tuple(), N, batch, x, 0.5 * tol, self.max_iter, sweeps, self.canonical_prices, share, out)
        return _Job(topology, data, groups, tol, warm, prepared, batch, x, out, call)

    def _finish(self, job: _Job) -> Solution:
        """Second chances for the instances still short of the tolerance, errors, and the solution."""
        topology, data, tol, x, batch, prepared = job.topology, job.data, job.tol, job.x, job.batch, job.prepared
        iterations, outcome, direction, stats, raw, source = job.out
        B, N = data.n_instances, topology.n_nodes
        K = topology.n_cons
        ps = data.price_scale[:, None]

        # Instances still moving at the limit (a few, where the active set keeps changing for many steps)
        # go on from their last iterate with a larger budget, one at a time; the rest are done.
        def resume(pos: int, start: FloatArray, budget: int, sweeps: int = 0) -> None:
            """Iterate instance ``pos`` alone from ``start`` (scaled prices and rents) for ``budget`` steps."""
            sub = slice(pos, pos + 1)
            xb = np.ascontiguousarray(start.reshape(1, -1))
            its = np.zeros(1, dtype=np.int64)
            code = np.zeros(1, dtype=np.int64)
            one = tuple(arr[sub] for arr in batch)
            found = (its, code, direction[sub], stats[sub], raw[sub], source[sub])
            _solve_batch_serial(
                prepared.as_tuple(), N, one, xb, 0.5 * tol, budget, sweeps, self.canonical_prices, 0, found
            )
            x[sub] = xb
            iterations[pos] += its[0]
            outcome[pos] = code[0]

        stuck = np.flatnonzero((outcome == _ITERATION_LIMIT) | (outcome == _LINE_SEARCH_FAILED)).tolist()
        self.last_extended = [data.label(pos) for pos in stuck]
        self.last_restarted = []
        unsolved = (_ITERATION_LIMIT, _LINE_SEARCH_FAILED)
        for pos in stuck:
            if job.warm or source[pos] >= 0:
                # a warm start can lead Newton into a long walk across active sets: start cold
                cold = np.concatenate([np.ones(N), np.zeros(K)])
                resume(pos, cold, self.max_iter, _CRASH_SWEEPS)
            if self.extra_iter > 0 and outcome[pos] in unsolved:
                resume(pos, x[pos].copy(), self.extra_iter)
            if outcome[pos] in unsolved and self.restart_from_reference:
                start = _reference_start(topology, data.take(np.array([pos])))
                if start is not None:
                    self.last_restarted.append(data.label(pos))
                    resume(pos, start, self.max_iter)
        self.last_stats = stats
        self.last_sources = source
        for b in range(B):
            code = int(outcome[b])
            if code == _UNBOUNDED:
                raise InfeasibleError(data.label(b), _divergence_reason(topology, direction[b]))
            if code == _ITERATION_LIMIT:
                again = " (and again from HiGHS's answer)" if data.label(b) in self.last_restarted else ""
                raise SolveError(
                    data.label(b),
                    f"no convergence to tolerance {tol:g} within {self.max_iter + self.extra_iter} Newton "
                    f"iterations{again}",
                )
            if code == _LINE_SEARCH_FAILED:
                raise SolveError(data.label(b), "the line search could not make progress (numerical trouble)")
        price = x[:, :N] * ps
        rent = x[:, N:] * ps
        level = agent_response(topology, data, price, rent)
        _on_bounds(level, data.lower, data.upper, data.quantity_scale)
        res = residuals(topology, data, price, level, rent, response=level)
        _raise_if_above(data, res, tol)
        solution = Solution(
            price=price,
            level=level,
            rent=rent,
            iterations=iterations,
            residuals=res,
            solver=self.name,
            status=tuple(Status.OPTIMAL for _ in range(B)),
            start_price=raw[:, :N] * ps if self.canonical_prices else None,
            start_rent=raw[:, N:] * ps if self.canonical_prices else None,
        )
        if job.groups is None:
            return solution
        first, inverse = job.groups
        self.last_stats = self.last_stats[inverse]
        self.last_sources = np.where(self.last_sources >= 0, first[self.last_sources], -1)[inverse]
        res = solution.residuals
        return Solution(
            price=solution.price[inverse],
            level=solution.level[inverse],
            rent=solution.rent[inverse],
            iterations=solution.iterations[inverse],
            residuals=Residuals(res.primal[inverse], res.complementarity[inverse], res.dual[inverse]),
            solver=solution.solver,
            status=tuple(solution.status[i] for i in inverse),
            start_price=None if solution.start_price is None else solution.start_price[inverse],
            start_rent=None if solution.start_rent is None else solution.start_rent[inverse],
        )


@dataclass
class _Job:
    """One batch's kernel call, between :meth:`BatchedNewtonSolver._begin` and ``_finish``: ``data`` holds
    the distinct instances the kernel solves (``groups``: where they sit in the caller's batch, or None)."""

    topology: Topology
    data: InstanceData
    groups: tuple[IntArray, IntArray] | None
    tol: float
    warm: bool
    prepared: PreparedTopology
    batch: tuple[FloatArray, ...]
    x: FloatArray
    out: tuple[np.ndarray, ...]
    call: tuple[Any, ...]  # the kernel's arguments, ``out`` last

    def run(self) -> None:
        """The kernel on this batch, over the engine's threads when it has several instances."""
        if self.data.n_instances > 1:
            # Instances take very different numbers of iterations: threads take them one at a time.
            chunk = nb.set_parallel_chunksize(1)
            try:
                _solve_batch(*self.call)
            finally:
                nb.set_parallel_chunksize(chunk)
        else:
            _solve_batch_serial(*self.call)

    def run_serial(self) -> None:
        """The kernel on this batch on the calling thread (it releases the GIL: batches run side by side)."""
        _solve_batch_serial(*self.call)


def _work(problem: BatchProblem) -> int:
    """A proxy for a batch's kernel time: instances times agents."""
    return problem.data.n_instances * problem.topology.n_agents


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` threads for batches solved side by side (one per size, kept for the process:
    callers on other threads may be using a pool of another size)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="critmin-engine")
        return pool


def _scaled_batch(data: InstanceData) -> tuple[FloatArray, ...]:
    """The kernel's batch: ``(cost, slope, lower, upper, injection, rhs, price_scale)``, scaled per instance."""
    ps = data.price_scale[:, None]
    qs = data.quantity_scale[:, None]
    return (
        np.ascontiguousarray(data.cost / ps),
        np.ascontiguousarray(data.slope * qs / ps),
        np.ascontiguousarray(data.lower / qs),
        np.ascontiguousarray(data.upper / qs),
        np.ascontiguousarray(data.injection / qs),
        np.ascontiguousarray(data.rhs / qs),
        np.ascontiguousarray(data.price_scale, dtype=float),
    )


def canonical_prices(topology: Topology, data: InstanceData, price: FloatArray, rent: FloatArray) -> FloatArray:
    """``price`` ``(B, N)`` with the prices that the equilibrium leaves open made canonical, as the engine
    reports them (docs/engine.md); for another solver's answers (the reference solver's).

    ``rent`` ``(B, K)`` are the side constraints' rents. Each group of nodes that no free agent pins takes its
    canonical value where that keeps every agent's level; the other prices are returned as given.
    """
    N, K = topology.n_nodes, topology.n_cons
    ps = data.price_scale[:, None]
    x = np.empty((data.n_instances, N + K))
    x[:, :N] = price / ps
    x[:, N:] = np.maximum(rent / ps, 0.0)
    start = x[:, :N].copy()
    _canonicalise_batch(_prepared_by_content(topology).as_tuple(), N, _scaled_batch(data), x)
    moved = x[:, :N] != start
    out = price.copy()
    out[moved] = (x[:, :N] * ps)[moved]
    return out


@nb.njit(cache=True)
def _canonicalise_batch(st, n_nodes, batch, x):  # type: ignore[no-untyped-def]
    """:func:`_canonicalise` for every instance of a scaled batch (``x`` in place)."""
    for b in range(x.shape[0]):
        _canonicalise(st, _instance(b, batch), n_nodes, x[b])


@nb.njit(cache=True)
def _on_bounds(level, lower, upper, quantity_scale):  # type: ignore[no-untyped-def]
    """Levels ``(B, J)`` within rounding of a finite bound, put on it (in place; one pass after every solve).

    The same margin as the solver's own classification (:func:`_strictly_inside`, on scaled numbers): a level
    within ``_ON_BOUND (1 + |bound|)`` quantity scales of its bound is on it. An agent at a kink otherwise reports a
    level of a few 1e-12 quantity scales whose size, and sign of being there at all, depends on the path the
    solver took; instruments and metrics that ask whether a flow exists (traced content, de-minimis shares,
    who relies on whom) would then answer by rounding.
    """
    for b in range(level.shape[0]):
        qs = quantity_scale[b]
        for j in range(level.shape[1]):
            lo, hi = lower[b, j], upper[b, j]
            if np.isfinite(lo) and abs(level[b, j] - lo) <= _ON_BOUND * (qs + abs(lo)):
                level[b, j] = lo
            elif np.isfinite(hi) and abs(level[b, j] - hi) <= _ON_BOUND * (qs + abs(hi)):
                level[b, j] = hi


def _distinct_instances(
    data: InstanceData, warm_start: FloatArray | None, warm_rents: FloatArray | None
) -> tuple[IntArray, IntArray] | None:
    """``(first, inverse)`` when some instances of the batch repeat others exactly, else None.

    ``first`` lists one instance of each distinct kind (the first met) and ``inverse`` maps every instance to
    its position in ``first``. Instances are compared on every number the solve reads, starting point
    included: a fingerprint per row (a weighted sum of the numbers' bit patterns, in integers so that equal
    rows give equal sums) finds candidates, and an exact comparison decides. Starting prices are looked at
    first: in a warm-started batch whose starts all differ, nothing else needs to be read.
    """
    arrays = [a for a in (warm_start, warm_rents) if a is not None]
    arrays += [data.cost, data.slope, data.lower, data.upper, data.injection, data.rhs]
    arrays += [data.price_scale[:, None], data.quantity_scale[:, None]]
    fingerprint = np.zeros(data.n_instances, dtype=np.int64)
    for pos, arr in enumerate(arrays):
        if arr.shape[1]:
            bits = np.ascontiguousarray(arr).view(np.int64)
            fingerprint += (bits * _hash_weights(arr.shape[1], pos)).sum(axis=1)
        if pos == 0 and warm_start is not None and np.unique(fingerprint).size == data.n_instances:
            return None
    _, first, inverse = np.unique(fingerprint, return_index=True, return_inverse=True)
    if first.size == data.n_instances:
        return None
    order = np.argsort(first, kind="stable")  # keep the instances in their order of appearance
    first = first[order]
    inverse = np.argsort(order)[inverse.ravel()]
    for arr in arrays:
        if not np.array_equal(arr, arr[first][inverse]):
            return None  # two fingerprints met by chance: solve every instance
    return first, inverse


@functools.lru_cache(maxsize=64)
def _hash_weights(n: int, salt: int) -> IntArray:
    """``n`` fixed odd 64-bit weights (read-only) for :func:`_distinct_instances`."""
    weights = np.random.default_rng((n, salt)).integers(1, 2**62, n, dtype=np.int64) * 2 + 1
    weights.flags.writeable = False
    return weights


def _reference_start(topology: Topology, data: InstanceData) -> FloatArray | None:
    """Scaled prices and rents of one instance from HiGHS, as a starting point; None if HiGHS fails too."""
    from critmin.market.reference import HighsSolver

    try:
        answer = HighsSolver(time_limit=30.0).solve(topology, data, tol=np.inf)
    except CritminError:
        return None
    ps = float(data.price_scale[0])
    return np.concatenate([answer.price[0] / ps, np.maximum(answer.rent[0] / ps, 0.0)])


def _divergence_reason(topology: Topology, direction: FloatArray, shown: int = 6) -> str:
    """Name the nodes (and constraints) whose duals diverge."""
    N = topology.n_nodes
    size = np.abs(direction)
    top = float(size.max(initial=0.0))
    moving = [i for i in np.argsort(-size, kind="stable") if size[i] >= 0.1 * top and top > 0.0]
    nodes = [topology.node_labels[i] for i in moving if i < N]
    cons = [topology.con_labels[i - N] for i in moving if i >= N]
    parts = []
    if nodes:
        more = f" and {len(nodes) - shown} more" if len(nodes) > shown else ""
        parts.append("nodes that cannot balance: " + ", ".join(nodes[:shown]) + more)
    if cons:
        parts.append("side constraints that cannot hold: " + ", ".join(cons[:shown]))
    detail = "; ".join(parts) if parts else "no node identified"
    return f"no feasible allocation (the dual is unbounded); {detail}"


def _raise_if_above(data: InstanceData, res: Residuals, tol: float) -> None:
    worst = res.worst()
    bad = np.flatnonzero(~(worst <= tol))
    if len(bad):
        b = int(bad[0])
        raise SolveError(
            data.label(b),
            f"residual {worst[b]:.3g} above tolerance {tol:g} (primal {res.primal[b]:.3g}, "
            f"complementarity {res.complementarity[b]:.3g}, dual {res.dual[b]:.3g})",
        )
