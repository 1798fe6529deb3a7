"""Random period problems of the shapes the market builder makes, feasible by construction.

A chain of ``S`` stages over ``R`` regions: mines feed stage-0 origin nodes, routes carry each stage's
product from origin nodes to use nodes, processors turn stage ``s-1`` product at a use node into stage ``s``
product at the origin node of the same region, sectors and price-responsive segments (buy, sell) trade at
use nodes, must-run injections enter use nodes, and quotas bound sums of route flows.

Every instance is built around a random allocation ``v0`` that meets all balances and side constraints
(offtake lower bounds, must-produce volumes and injections included), so it is feasible; bans, binding
capacities, cut-off regions and zero demand are drawn on top of it. Numbers are drawn in units of order one
and then multiplied by a random ``price_scale`` and ``quantity_scale``.

Used by the property tests and by ``benchmarks/engine_vs_highs.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from critmin.market.problem import InstanceData, Topology


@dataclass(frozen=True)
class ChainLayout:
    """Index maps of a random chain (positions of nodes and agents)."""

    stages: int
    regions: int
    sector_stage: tuple[int, ...]
    segment_side: tuple[str, ...]  # "buy" or "sell"
    segment_stage: tuple[int, ...]
    segment_region: tuple[int, ...]
    quotas: tuple[tuple[tuple[int, int, int], ...], ...]  # each: routes (stage, origin, destination)
    yields: tuple[float, ...]

    def origin(self, s: int, r: int) -> int:
        return s * self.regions + r

    def use(self, s: int, r: int) -> int:
        return (self.stages + s) * self.regions + r

    @property
    def n_nodes(self) -> int:
        return 2 * self.stages * self.regions

    def supply(self, r: int) -> int:
        return r

    def process(self, s: int, r: int) -> int:
        return self.regions + (s - 1) * self.regions + r

    def route(self, s: int, o: int, d: int) -> int:
        R = self.regions
        return self.stages * R + (s * R + o) * R + d

    def demand(self, r: int, k: int) -> int:
        R = self.regions
        return self.stages * R + self.stages * R * R + r * len(self.sector_stage) + k

    def segment(self, i: int) -> int:
        R = self.regions
        return self.stages * R + self.stages * R * R + R * len(self.sector_stage) + i

    @property
    def n_agents(self) -> int:
        return self.segment(len(self.segment_side))


def random_layout(
    rng: np.random.Generator,
    stages: int,
    regions: int,
    sectors: int | None = None,
    segments: int | None = None,
    quotas: int | None = None,
) -> ChainLayout:
    """A random chain structure: sector stages, segments, quota route sets and yields."""
    S, R = stages, regions
    if sectors is None:
        sectors = int(rng.integers(1, 4))
    sector_stage = [S - 1] + [int(rng.integers(0, S)) for _ in range(sectors - 1)]
    if segments is None:
        segments = int(rng.integers(0, 3))
    sides = tuple(str(rng.choice(["buy", "sell"])) for _ in range(segments))
    seg_stage = tuple(int(rng.integers(0, S)) for _ in range(segments))
    seg_region = tuple(int(rng.integers(0, R)) for _ in range(segments))
    if quotas is None:
        quotas = int(rng.integers(0, 3))
    quota_sets = []
    for _ in range(quotas):
        s, o = int(rng.integers(0, S)), int(rng.integers(0, R))
        dests = [d for d in range(R) if rng.random() < 0.6] or [int(rng.integers(0, R))]
        quota_sets.append(tuple((s, o, d) for d in dests))
    yields = (1.0, *tuple(float(rng.uniform(0.5, 1.0)) for _ in range(S - 1)))
    return ChainLayout(S, R, tuple(sector_stage), sides, seg_stage, seg_region, tuple(quota_sets), yields)


def chain_topology(layout: ChainLayout) -> Topology:
    """The topology of a chain layout."""
    S, R = layout.stages, layout.regions
    J = layout.n_agents
    nodes = -np.ones((J, 2), dtype=np.int64)
    coef = np.zeros((J, 2))
    labels = [""] * J
    for r in range(R):
        j = layout.supply(r)
        nodes[j, 0], coef[j, 0], labels[j] = layout.origin(0, r), 1.0, f"supply/{r}"
    for s in range(1, S):
        for r in range(R):
            j = layout.process(s, r)
            nodes[j] = (layout.use(s - 1, r), layout.origin(s, r))
            coef[j] = (-1.0, layout.yields[s])
            labels[j] = f"process/{s}/{r}"
    for s in range(S):
        for o in range(R):
            for d in range(R):
                j = layout.route(s, o, d)
                nodes[j] = (layout.origin(s, o), layout.use(s, d))
                coef[j] = (-1.0, 1.0)
                labels[j] = f"route/{s}/{o}->{d}"
    for r in range(R):
        for k, s in enumerate(layout.sector_stage):
            j = layout.demand(r, k)
            nodes[j, 0], coef[j, 0], labels[j] = layout.use(s, r), -1.0, f"demand/{s}/{r}/{k}"
    for i, side in enumerate(layout.segment_side):
        j = layout.segment(i)
        nodes[j, 0] = layout.use(layout.segment_stage[i], layout.segment_region[i])
        coef[j, 0] = -1.0 if side == "buy" else 1.0
        labels[j] = f"segment/{side}/{i}"
    con_row, con_agent = [], []
    for q, routes in enumerate(layout.quotas):
        for s, o, d in routes:
            con_row.append(q)
            con_agent.append(layout.route(s, o, d))
    node_labels = [f"origin/{s}/{r}" for s in range(S) for r in range(R)] + [
        f"use/{s}/{r}" for s in range(S) for r in range(R)
    ]
    return Topology(
        node_labels=tuple(node_labels),
        agent_labels=tuple(labels),
        agent_node=nodes,
        agent_coef=coef,
        con_labels=tuple(f"quota/{q}" for q in range(len(layout.quotas))),
        con_row=np.array(con_row, dtype=np.int64),
        con_agent=np.array(con_agent, dtype=np.int64),
        con_coef=np.ones(len(con_row)),
    )


@dataclass(frozen=True)
class Features:
    """Probabilities of the features drawn into an instance."""

    ban: float = 0.2  # a non-domestic route is banned (upper = 0) where the certificate sends nothing
    cut_off: float = 0.2  # one region trades with nobody
    offtake: float = 0.15  # a used route gets a lower bound (offtake contract)
    licence: float = 0.15  # a route gets a finite upper bound
    binding: float = 0.3  # a capacity equals the certificate's level
    bind_all: float = 0.1  # every capacity equals the certificate's level, and demand is strong
    must_produce: float = 0.15  # a producer gets a lower bound
    injection: float = 0.2  # a use node gets a must-run injection
    zero_demand: float = 0.2  # a sector is switched off (upper = 0) or priced out
    wedge: float = 0.3  # a route gets a policy wedge (possibly a subsidy)
    quota_binding: float = 0.5  # a quota's rhs equals the certificate's flow over its routes


def random_instance_numbers(
    rng: np.random.Generator, layout: ChainLayout, features: Features = Features()
) -> dict[str, np.ndarray]:
    """Numbers of one feasible instance (unscaled, order one), as a dict of InstanceData fields."""
    S, R, K = layout.stages, layout.regions, len(layout.sector_stage)
    J, N, Q = layout.n_agents, layout.n_nodes, len(layout.quotas)
    cost = np.zeros(J)
    slope = np.ones(J)
    lower = np.zeros(J)
    upper = np.full(J, np.inf)
    injection = np.zeros(N)
    v0 = np.zeros(J)

    bind_all = rng.random() < features.bind_all
    cut = int(rng.integers(0, R)) if (R > 1 and rng.random() < features.cut_off) else -1
    allowed = np.ones((S, R, R), dtype=bool)
    for s in range(S):
        for o in range(R):
            for d in range(R):
                if o != d and (o == cut or d == cut or rng.random() < features.ban):
                    allowed[s, o, d] = False
    sector_on = rng.random((R, K)) >= features.zero_demand
    for r in range(R):  # every region keeps a sink at the last stage
        last = [k for k in range(K) if layout.sector_stage[k] == S - 1]
        if not sector_on[r, last].any():
            sector_on[r, last[0]] = True

    output = rng.uniform(0.1, 1.0, R) * (rng.random(R) < 0.85)
    for r in range(R):
        v0[layout.supply(r)] = output[r]
    seg_level = np.zeros(len(layout.segment_side))
    for s in range(S):
        inflow = np.zeros(R)
        for o in range(R):
            dests = np.flatnonzero(allowed[s, o])
            weights = rng.dirichlet(np.ones(len(dests))) * (rng.random(len(dests)) < 0.7)
            weights[weights < 0.05] = 0.0  # no vanishing flows: they make needlessly tiny bounds
            if weights.sum() == 0.0:
                weights[dests == o] = 1.0
            weights /= weights.sum()
            for d, wgt in zip(dests, weights, strict=True):
                v0[layout.route(s, o, d)] = output[o] * wgt
                inflow[d] += output[o] * wgt
        for d in range(R):
            if rng.random() < features.injection:
                injection[layout.use(s, d)] = rng.uniform(0.05, 0.5)
                inflow[d] += injection[layout.use(s, d)]
        for i, side in enumerate(layout.segment_side):
            if layout.segment_stage[i] != s:
                continue
            d = layout.segment_region[i]
            if side == "sell":
                seg_level[i] = rng.uniform(0.0, 0.5)
                inflow[d] += seg_level[i]
            else:
                seg_level[i] = rng.uniform(0.0, 0.5) * inflow[d]
                inflow[d] -= seg_level[i]
        next_output = np.zeros(R)
        for d in range(R):
            sinks = [k for k in range(K) if layout.sector_stage[k] == s and sector_on[d, k]]
            to_process = 0.0
            if s < S - 1:
                to_process = inflow[d] if not sinks else inflow[d] * rng.uniform(0.1, 0.9)
                v0[layout.process(s + 1, d)] = to_process
                next_output[d] = layout.yields[s + 1] * to_process
            rest = inflow[d] - to_process
            if sinks:
                shares = rng.dirichlet(np.ones(len(sinks)))
                for k, share in zip(sinks, shares, strict=True):
                    v0[layout.demand(d, k)] = rest * share
        output = next_output
    for i in range(len(layout.segment_side)):
        v0[layout.segment(i)] = seg_level[i]

    def capacity(level: float) -> float:
        if bind_all or rng.random() < features.binding:
            return level
        return level * rng.uniform(1.0, 2.0) + rng.uniform(0.0, 0.3)

    # Mines and processors.
    for r in range(R):
        j = layout.supply(r)
        cost[j] = rng.uniform(0.1, 1.0)
        slope[j] = np.exp(rng.uniform(np.log(0.2), np.log(5.0)))
        upper[j] = capacity(v0[j]) if (bind_all or rng.random() < 0.8) else np.inf
        if v0[j] > 0.05 and rng.random() < features.must_produce:
            lower[j] = v0[j] * rng.uniform(0.3, 1.0)
    for s in range(1, S):
        for r in range(R):
            j = layout.process(s, r)
            cost[j] = rng.uniform(0.05, 0.5)
            slope[j] = np.exp(rng.uniform(np.log(0.2), np.log(5.0)))
            upper[j] = capacity(v0[j])
            if v0[j] > 0.05 and rng.random() < features.must_produce:
                lower[j] = v0[j] * rng.uniform(0.3, 1.0)
    # Routes.
    for s in range(S):
        friction = rng.uniform(0.02, 0.3)
        for o in range(R):
            for d in range(R):
                j = layout.route(s, o, d)
                slope[j] = friction
                cost[j] = 0.0 if o == d else rng.uniform(0.0, 0.2)
                if rng.random() < features.wedge:
                    cost[j] += rng.uniform(-0.05, 0.3)
                if not allowed[s, o, d]:
                    upper[j] = 0.0
                elif rng.random() < features.licence:
                    upper[j] = v0[j] * rng.uniform(1.0, 2.0)
                if v0[j] > 0.05 and rng.random() < features.offtake:
                    lower[j] = v0[j] * rng.uniform(0.3, 1.0)
    # Sectors.
    for r in range(R):
        for k, s in enumerate(layout.sector_stage):
            j = layout.demand(r, k)
            cost[j] = -rng.uniform(1.0, 4.0) * (1.0 + s) * (3.0 if bind_all else 1.0)
            slope[j] = np.exp(rng.uniform(np.log(0.2), np.log(5.0)))
            if not sector_on[r, k]:
                upper[j] = 0.0
            elif rng.random() < 0.1 and v0[j] == 0.0:
                cost[j] = -0.01  # priced out: nobody pays this little
    # Segments: a band of prices over which the quantity goes from none to all.
    for i, side in enumerate(layout.segment_side):
        j = layout.segment(i)
        qty = max(v0[j], rng.uniform(0.05, 0.5))
        low = rng.uniform(0.5, 2.0) * (1.0 + layout.segment_stage[i])
        width = rng.uniform(0.05, 1.0)
        slope[j] = width / qty if qty > 0.0 else 1.0
        upper[j] = qty
        cost[j] = -(low + width) if side == "buy" else low
    # Quotas.
    rhs = np.zeros(Q)
    for q, routes in enumerate(layout.quotas):
        flow = sum(v0[layout.route(s, o, d)] for s, o, d in routes)
        rhs[q] = flow if rng.random() < features.quota_binding else flow * rng.uniform(1.0, 1.5) + 0.1
    return {"cost": cost, "slope": slope, "lower": lower, "upper": upper, "injection": injection, "rhs": rhs}


def random_batch(
    rng: np.random.Generator,
    layout: ChainLayout,
    n_instances: int,
    features: Features = Features(),
    scaled: bool = True,
) -> InstanceData:
    """A batch of feasible instances of one layout, each with its own random scales (if ``scaled``)."""
    parts = [random_instance_numbers(rng, layout, features) for _ in range(n_instances)]
    if scaled:
        ps = 10.0 ** rng.uniform(0.0, 5.0, n_instances)
        qs = 10.0 ** rng.uniform(0.0, 5.0, n_instances)
    else:
        ps = np.ones(n_instances)
        qs = np.ones(n_instances)

    def stack(name: str) -> np.ndarray:
        return np.stack([p[name] for p in parts])

    return InstanceData(
        cost=stack("cost") * ps[:, None],
        slope=stack("slope") * (ps / qs)[:, None],
        lower=stack("lower") * qs[:, None],
        upper=stack("upper") * qs[:, None],
        injection=stack("injection") * qs[:, None],
        rhs=stack("rhs").reshape(n_instances, -1) * qs[:, None],
        price_scale=ps,
        quantity_scale=qs,
        instance_labels=tuple(f"random {b}" for b in range(n_instances)),
    )


def random_problem(
    seed: int,
    stages: int,
    regions: int,
    n_instances: int = 1,
    features: Features = Features(),
    **layout_options: int,
) -> tuple[Topology, InstanceData]:
    """A random layout and a batch of instances on it, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    layout = random_layout(rng, stages, regions, **layout_options)
    return chain_topology(layout), random_batch(rng, layout, n_instances, features)


def undetermined_nodes(
    topology: Topology, data: InstanceData, level: np.ndarray, rent: np.ndarray, b: int, tol: float = 1e-7
) -> np.ndarray:
    """Boolean mask ``(N + K,)`` of the duals of instance ``b`` that the equilibrium does not pin down.

    A dual is undetermined when it has a component in the null space of the Hessian of the strictly
    interior agents (restricted to node prices and the rents of binding constraints). Agents within ``tol``
    (relative to ``quantity_scale``) of a bound count as at the bound, which can only mark more duals as
    undetermined, never fewer.
    """
    N, K = topology.n_nodes, topology.n_cons
    qs = data.quantity_scale[b]
    v = level[b] / qs
    lo, hi = data.lower[b] / qs, data.upper[b] / qs
    interior = (v > lo + tol) & (v < hi - tol)
    M = np.vstack([topology.incidence_dense(), -topology.constraints_dense()])
    slack = (data.rhs[b] - topology.constraints_dense() @ level[b]) / qs
    binding = np.concatenate([np.ones(N, dtype=bool), slack <= tol])
    keep = np.flatnonzero(binding)
    scaled_slope = data.slope[b] * qs / data.price_scale[b]
    H = (M[keep][:, interior] / scaled_slope[interior]) @ M[keep][:, interior].T
    undetermined = np.zeros(N + K, dtype=bool)
    if len(keep) == 0:
        return undetermined
    eigval, eigvec = np.linalg.eigh(H)
    scale = max(float(np.abs(eigval).max(initial=0.0)), 1.0)
    null = eigvec[:, eigval <= 1e-10 * scale]
    if null.shape[1]:
        undetermined[keep] = np.linalg.norm(null, axis=1) > 1e-6
    return undetermined
