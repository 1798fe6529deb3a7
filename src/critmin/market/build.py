"""Build period problems from calibrated minerals, and read solutions back into labelled arrays.

A mineral with ``S`` stages and ``R`` regions has, for each stage ``s`` and region ``r``, an *origin* node
(the product of stage ``s`` made in ``r``, before it ships) and a *use* node (the market for stage-``s``
product delivered to ``r``). Agents:

- ``supply[r]``: mines at the stage-0 origin node;
- ``process[s, r]`` (``s >= 1``): takes stage ``s-1`` product from the use node in ``r`` and yields
  ``y[s]`` units of stage ``s`` product at the origin node in ``r``;
- ``route[s, o, d]``: ships stage ``s`` product from origin ``o`` to use node ``d`` (the domestic route
  ``o == d`` included);
- ``demand[r, k]``: sector ``k`` of region ``r`` at the use node of the sector's stage;
- ``disposal[s, r]``: free disposal at every use node: surplus product is stored or discarded at no cost,
  so a market never clears far below zero (it takes product only at negative prices, with a slope of a
  millionth of the price scale per unit of the quantity scale, so prices stay above ``-1e-6`` of the scale
  per unit disposed);
- extra structure for the instruments: price-responsive segments at a node (stock purchases and releases)
  and side constraints over sets of routes (quotas).

No agent touches two origin nodes, so the solver can eliminate the origin block (see ``engine.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from critmin.core.arrays import FloatArray, IntArray
from critmin.data.calibrate import CalibratedMineral
from critmin.market.problem import InstanceData, Solution, Topology
from critmin.policy.effects import ConstraintSpec, MineralOutcome, PeriodInputs, SegmentSpec, batch_rows, rows_in_order

#: Free disposal: price drop (share of the price scale) per quantity scale disposed.
DISPOSAL_SLOPE = 1e-6


@dataclass(frozen=True)
class MarketLayout:
    """Index maps from (stage, region, sector) labels to the nodes and agents of one topology."""

    stages: tuple[str, ...]
    regions: tuple[str, ...]
    sectors: tuple[str, ...]
    sector_stage: tuple[int, ...]
    segments: tuple[SegmentSpec, ...] = ()
    constraints: tuple[ConstraintSpec, ...] = ()
    origin_node: IntArray = field(init=False)
    use_node: IntArray = field(init=False)
    supply_agent: IntArray = field(init=False)  # (R,)
    process_agent: IntArray = field(init=False)  # (S, R), -1 at stage 0
    route_agent: IntArray = field(init=False)  # (S, R, R)
    demand_agent: IntArray = field(init=False)  # (R, K)
    disposal_agent: IntArray = field(init=False)  # (S, R)
    segment_agent: IntArray = field(init=False)  # (n_segments,)

    def __post_init__(self) -> None:
        S, R, K = len(self.stages), len(self.regions), len(self.sectors)
        origin = np.arange(S * R).reshape(S, R)
        use = S * R + np.arange(S * R).reshape(S, R)
        object.__setattr__(self, "origin_node", origin)
        object.__setattr__(self, "use_node", use)
        n = 0
        supply = np.arange(n, n + R)
        n += R
        process = -np.ones((S, R), dtype=np.int64)
        process[1:] = n + np.arange((S - 1) * R).reshape(S - 1, R)
        n += (S - 1) * R
        route = n + np.arange(S * R * R).reshape(S, R, R)
        n += S * R * R
        demand = n + np.arange(R * K).reshape(R, K)
        n += R * K
        disposal = n + np.arange(S * R).reshape(S, R)
        n += S * R
        segment = n + np.arange(len(self.segments))
        for name, value in (
            ("supply_agent", supply),
            ("process_agent", process),
            ("route_agent", route),
            ("demand_agent", demand),
            ("disposal_agent", disposal),
            ("segment_agent", segment),
        ):
            object.__setattr__(self, name, value.astype(np.int64))

    @classmethod
    def for_mineral(
        cls,
        cal: CalibratedMineral,
        segments: Sequence[SegmentSpec] = (),
        constraints: Sequence[ConstraintSpec] = (),
    ) -> MarketLayout:
        return cls(cal.stages, cal.regions, cal.sectors, cal.sector_stage, tuple(segments), tuple(constraints))

    @property
    def n_agents(self) -> int:
        return int(self.segment_agent[-1] + 1) if len(self.segments) else int(self.disposal_agent.max() + 1)

    @cached_property
    def topology(self) -> Topology:
        S = len(self.stages)
        J = self.n_agents
        nodes = -np.ones((J, 2), dtype=np.int64)
        coef = np.zeros((J, 2))
        labels: list[str] = [""] * J
        for r, reg in enumerate(self.regions):
            j = self.supply_agent[r]
            nodes[j, 0], coef[j, 0] = self.origin_node[0, r], 1.0
            labels[j] = f"supply/{self.stages[0]}/{reg}"
        for s in range(1, S):
            for r, reg in enumerate(self.regions):
                j = self.process_agent[s, r]
                nodes[j] = (self.use_node[s - 1, r], self.origin_node[s, r])
                coef[j] = (-1.0, 1.0)  # the yield is applied through the instance numbers, see below
                labels[j] = f"process/{self.stages[s]}/{reg}"
        R = len(self.regions)
        routes = self.route_agent  # (S, R, R): origin o of stage s ships to the use node in d
        nodes[routes, 0] = np.broadcast_to(self.origin_node[:, :, None], (S, R, R))
        nodes[routes, 1] = np.broadcast_to(self.use_node[:, None, :], (S, R, R))
        coef[routes] = (-1.0, 1.0)
        for j, label in zip(
            routes.ravel().tolist(),
            (f"route/{stage}/{org}->{dst}" for stage in self.stages for org in self.regions for dst in self.regions),
            strict=True,
        ):
            labels[j] = label
        for r, reg in enumerate(self.regions):
            for k, sec in enumerate(self.sectors):
                j = self.demand_agent[r, k]
                nodes[j, 0], coef[j, 0] = self.use_node[self.sector_stage[k], r], -1.0
                labels[j] = f"demand/{self.stages[self.sector_stage[k]]}/{reg}/{sec}"
        for s in range(S):
            for r, reg in enumerate(self.regions):
                j = self.disposal_agent[s, r]
                nodes[j, 0], coef[j, 0] = self.use_node[s, r], -1.0
                labels[j] = f"disposal/{self.stages[s]}/{reg}"
        for i, seg in enumerate(self.segments):
            j = self.segment_agent[i]
            if seg.side == "process":
                if seg.stage < 1:
                    raise ValueError(f"segment {seg.name}: a processing segment needs a later stage")
                nodes[j] = (self.use_node[seg.stage - 1, seg.region], self.origin_node[seg.stage, seg.region])
                coef[j] = (-1.0, 1.0)
            else:
                node_map = self.use_node if seg.node == "use" else self.origin_node
                nodes[j, 0] = node_map[seg.stage, seg.region]
                coef[j, 0] = -1.0 if seg.side == "buy" else 1.0
            labels[j] = f"segment/{seg.name}"
        con_row: list[int] = []
        con_agent: list[int] = []
        con_coef: list[float] = []
        seg_index = {seg.name: i for i, seg in enumerate(self.segments)}
        if len(seg_index) != len(self.segments):
            raise ValueError("segment names must be unique within a layout")
        for k, con in enumerate(self.constraints):
            for s, o, d, c in con.routes:
                con_row.append(k)
                con_agent.append(int(self.route_agent[s, o, d]))
                con_coef.append(float(c))
            for name, c in con.segments:
                con_row.append(k)
                con_agent.append(int(self.segment_agent[seg_index[name]]))
                con_coef.append(float(c))
        node_labels = [f"{self.stages[s]}/origin/{r}" for s in range(S) for r in self.regions] + [
            f"{self.stages[s]}/use/{r}" for s in range(S) for r in self.regions
        ]
        return Topology(
            node_labels=tuple(node_labels),
            agent_labels=tuple(labels),
            agent_node=nodes,
            agent_coef=coef,
            con_labels=tuple(c.name for c in self.constraints),
            con_row=np.array(con_row, dtype=np.int64),
            con_agent=np.array(con_agent, dtype=np.int64),
            con_coef=np.array(con_coef, dtype=float),
        )


def topology_with_yields(layout: MarketLayout, cals: Sequence[CalibratedMineral]) -> Topology:
    """The layout's topology with processing yields written into the incidence.

    Yields are structure (they are the same in every instance of a batch); minerals batched together must
    share them.
    """
    base = layout.topology
    S = len(layout.stages)
    if S == 1:
        return base
    yields = cals[0].yields
    for cal in cals[1:]:
        if not np.allclose(cal.yields, yields):
            raise ValueError("minerals batched together must share processing yields")
    if np.all(yields == 1.0):
        return base
    coef = base.agent_coef.copy()
    for s in range(1, S):
        coef[layout.process_agent[s], 1] = yields[s]
    for i, seg in enumerate(layout.segments):
        if seg.side == "process":
            coef[layout.segment_agent[i], 1] = yields[seg.stage]
    return Topology(
        node_labels=base.node_labels,
        agent_labels=base.agent_labels,
        agent_node=base.agent_node,
        agent_coef=coef,
        con_labels=base.con_labels,
        con_row=base.con_row,
        con_agent=base.con_agent,
        con_coef=base.con_coef,
    )


def build_instances(
    layout: MarketLayout,
    cals: Sequence[CalibratedMineral],
    inputs: Sequence[PeriodInputs],
    labels: Sequence[str] = (),
) -> InstanceData:
    """The numbers of a batch: one instance per (calibrated mineral, period inputs) pair.

    Built for the whole batch at once (an ensemble chunk is a batch of draws); an input left ``None`` takes
    its neutral value (the calibrated base year).
    """
    if len(cals) != len(inputs):
        raise ValueError("one PeriodInputs per calibrated mineral instance")
    B, J, N = len(cals), layout.n_agents, 2 * len(layout.stages) * len(layout.regions)
    n_con, n_seg = len(layout.constraints), len(layout.segments)
    S, R, K = len(layout.stages), len(layout.regions), len(layout.sectors)
    cost = np.zeros((B, J))
    slope = np.ones((B, J))
    lower = np.zeros((B, J))
    upper = np.full((B, J), np.inf)
    injection = np.zeros((B, N))

    def cal_values(name: str) -> FloatArray:
        first = getattr(cals[0], name)
        if all(cal is cals[0] for cal in cals):
            return np.broadcast_to(np.asarray(first, dtype=np.float64), (B, *np.shape(first)))
        return np.stack([np.asarray(getattr(cal, name), dtype=np.float64) for cal in cals])

    def input_values(name: str, default: FloatArray | float, shape: tuple[int, ...]) -> FloatArray:
        found = batch_rows(inputs, name)
        if found is not None:  # every draw's array is its row of one batch array: read the block at once
            whole, rows = found
            block: FloatArray = whole if rows_in_order(whole, rows) else whole[rows]  # only read here
            return block
        values = [getattr(inp, name) for inp in inputs]
        fill = np.broadcast_to(np.asarray(default, dtype=np.float64), (B, *shape))
        return np.stack([fill[b] if v is None else v for b, v in enumerate(values)])

    capacity = input_values("capacity", cal_values("capacity"), (S, R))
    intercept = cal_values("supply_intercept") + input_values("supply_cost_shift", 0.0, (S, R))
    sup_lower = np.minimum(input_values("supply_lower", 0.0, (S, R)), capacity)
    yields = cal_values("yields")  # (B, S)
    supply_slope = cal_values("supply_slope")
    # mines
    js = layout.supply_agent
    cost[:, js] = intercept[:, 0]
    slope[:, js] = supply_slope[:, 0]
    upper[:, js] = capacity[:, 0]
    lower[:, js] = sup_lower[:, 0]
    # processors: level is the input; capacity and floors are stated in output
    if S > 1:
        jp = layout.process_agent[1:]
        cost[:, jp] = intercept[:, 1:]
        slope[:, jp] = supply_slope[:, 1:]
        upper[:, jp] = capacity[:, 1:] / yields[:, 1:, None]
        lower[:, jp] = sup_lower[:, 1:] / yields[:, 1:, None]
    # routes
    jr = layout.route_agent
    cost[:, jr] = (
        cal_values("route_cost")
        + input_values("route_wedge", 0.0, (S, R, R))
        + input_values("route_cost_shift", 0.0, (S, R, R))
    )
    slope[:, jr] = np.broadcast_to(cal_values("friction")[:, :, None, None], (B, S, R, R))
    lower[:, jr] = input_values("route_lower", 0.0, (S, R, R))
    upper[:, jr] = input_values("route_upper", np.inf, (S, R, R))
    # sectors: the curve scales horizontally with demand (same elasticity at the base price)
    jd = layout.demand_agent
    scale = input_values("demand_scale", 1.0, (R, K))
    demand_slope = cal_values("demand_slope")
    active = (scale > 0) & (cal_values("base_consumption") > 0)
    cost[:, jd] = -cal_values("demand_intercept")
    slope[:, jd] = np.where(active, demand_slope / np.where(active, scale, 1.0), demand_slope)
    upper[:, jd] = np.where(active, np.inf, 0.0)
    # free disposal: takes product only below a zero price
    price_scale = np.array([cal.price_scale for cal in cals], dtype=np.float64)
    quantity_scale = np.array([cal.quantity_scale for cal in cals], dtype=np.float64)
    jx = layout.disposal_agent
    cost[:, jx] = 0.0
    slope[:, jx] = (DISPOSAL_SLOPE * price_scale / quantity_scale)[:, None, None]
    # segments
    if n_seg:
        jg = layout.segment_agent
        qty = input_values("segment_quantity", 0.0, (n_seg,))
        lo_p = input_values("segment_price_low", 0.0, (n_seg,))
        hi_p = input_values("segment_price_high", 1.0, (n_seg,))
        width = np.maximum(hi_p - lo_p, 1e-6 * price_scale[:, None])
        seg_slope = width / np.where(qty > 0, qty, 1.0)
        slope[:, jg] = seg_slope
        upper[:, jg] = qty
        for i, seg in enumerate(layout.segments):
            j = jg[i]
            # buyer: value hi_p - slope*u, so u = (hi_p - p)/slope; seller: cost lo_p + slope*u
            cost[:, j] = -hi_p[:, i] if seg.side == "buy" else lo_p[:, i]
            if seg.side == "process":  # the level is the input; quantities are stated in output
                upper[:, j] = qty[:, i] / yields[:, seg.stage]
                slope[:, j] = seg_slope[:, i] * yields[:, seg.stage]
    injection[:, layout.use_node] = input_values("injection_use", 0.0, (S, R))
    rhs = input_values("constraint_rhs", np.inf, (n_con,)).copy() if n_con else np.full((B, 0), np.inf)
    return InstanceData(
        cost=cost,
        slope=slope,
        lower=lower,
        upper=upper,
        injection=injection,
        rhs=rhs,
        price_scale=price_scale,
        quantity_scale=quantity_scale,
        instance_labels=tuple(labels),
    )


def read_outcome(layout: MarketLayout, solution: Solution, b: int, yields: FloatArray) -> MineralOutcome:
    """Instance ``b`` of a solved batch, as arrays."""
    one = Solution(
        price=solution.price[b : b + 1],
        level=solution.level[b : b + 1],
        rent=solution.rent[b : b + 1],
        iterations=solution.iterations[b : b + 1],
        residuals=solution.residuals,
    )
    return read_outcomes(layout, one, [yields])[0]


def read_outcomes(layout: MarketLayout, solution: Solution, yields: Sequence[FloatArray]) -> list[MineralOutcome]:
    """Every instance of a solved batch, as arrays (each a row of one array per field for the batch);
    ``yields[b]`` are instance ``b``'s stage yields."""
    v = solution.level
    p = solution.price
    B, S, R = len(yields), len(layout.stages), len(layout.regions)
    y = np.stack([np.asarray(one, dtype=np.float64) for one in yields])  # (B, S)
    production = np.zeros((B, S, R))
    production[:, 0] = v[:, layout.supply_agent]
    processing_input = np.zeros_like(production)
    for s in range(1, S):
        processing_input[:, s] = v[:, layout.process_agent[s]]
        production[:, s] = y[:, s, None] * processing_input[:, s]
    segment = v[:, layout.segment_agent] if len(layout.segments) else np.zeros((B, 0))
    for i, seg in enumerate(layout.segments):
        if seg.side == "process":
            production[:, seg.stage, seg.region] += y[:, seg.stage] * segment[:, i]
            processing_input[:, seg.stage, seg.region] += segment[:, i]
        elif seg.side == "sell" and seg.node == "origin":
            production[:, seg.stage, seg.region] += segment[:, i]
    price = p[:, layout.use_node]
    origin_price = p[:, layout.origin_node]
    flow = np.take(v, layout.route_agent, axis=1)  # (B, S, R, R), C-contiguous: rows of one block
    consumption = v[:, layout.demand_agent]
    disposal = v[:, layout.disposal_agent]
    rent = solution.rent if len(layout.constraints) else np.zeros((B, 0))
    arrays = {
        "price": price,
        "origin_price": origin_price,
        "production": production,
        "processing_input": processing_input,
        "flow": flow,
        "consumption": consumption,
        "segment": segment,
        "disposal": disposal,
        "rent": rent,
    }
    return [
        MineralOutcome(
            price=price[b],
            origin_price=origin_price[b],
            production=production[b],
            processing_input=processing_input[b],
            flow=flow[b],
            consumption=consumption[b],
            segment=segment[b],
            disposal=disposal[b],
            rent=rent[b],
            batch=(arrays, b),  # each field is row b of arrays[field]
        )
        for b in range(B)
    ]


def default_world_problems(
    periods: Sequence[int] | None = None,
) -> list[tuple[Topology, InstanceData]]:
    """The baseline period problems of the default world, grouped into batches that share a topology.

    Each batch holds every (mineral, period) instance whose mineral shares the structure; demand follows the
    reference path and capacity stays at its base-year level. Used by the benchmark.
    """
    from critmin.data.calibrate import calibrate
    from critmin.data.world import load_world

    world = load_world()
    cals = calibrate(world)
    groups: dict[tuple[object, ...], list[CalibratedMineral]] = {}
    for cal in cals.values():
        groups.setdefault(cal.structure_key(), []).append(cal)
    batches = []
    for members in groups.values():
        layout = MarketLayout.for_mineral(members[0])
        topo = topology_with_yields(layout, members) if _same_yields(members) else None
        if topo is None:
            for cal in members:
                batches.append(_batch_for(layout, [cal], periods))
            continue
        batches.append(_batch_for(layout, members, periods))
    return batches


def _same_yields(cals: Sequence[CalibratedMineral]) -> bool:
    return all(np.allclose(c.yields, cals[0].yields) for c in cals)


def _batch_for(
    layout: MarketLayout, cals: Sequence[CalibratedMineral], periods: Sequence[int] | None
) -> tuple[Topology, InstanceData]:
    items: list[CalibratedMineral] = []
    inputs: list[PeriodInputs] = []
    labels: list[str] = []
    for cal in cals:
        years = cal.years if periods is None else tuple(periods)
        for year in years:
            i = cal.years.index(year)
            items.append(cal)
            inputs.append(PeriodInputs(demand_scale=cal.demand_index[i]))
            labels.append(f"{cal.mineral} {year}")
    topo = topology_with_yields(layout, cals)
    return topo, build_instances(layout, items, inputs, labels)
