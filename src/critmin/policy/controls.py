"""Export controls (ban, quota, licensing; leakage; extraterritorial reach) and hoarding.

Reference flow. A control that covers only part of a period cannot know the flow the market would have
chosen in the uncovered part; it uses the *reference flow* of a route: the larger of its base-year flow and
its flow in the previous period. A ban in force for a share ``f`` of a period caps the route at
``(1 - f) * reference``; a quota's right-hand side is ``f * Q + (1 - f) * reference total``.

- ``ban``: routes from the exporters to the targets carry nothing (beyond leakage).
- ``quota``: total flow from the exporters to the targets at each covered stage is at most ``Q`` (absolute,
  t/yr) or ``share`` times base-year exports to the targets; the dual of the constraint is the quota rent
  (USD/t), earned by the exporters on what they ship. The target set is read at the quota's start.
- ``licensing``: a share of the reference flow is approved, and licensed flows pay a per-unit cost wedge
  (delay, paperwork): the wedge is ``cost`` per tonne or ``cost_rate`` times the base-year producer price.
- ``leakage``: a share of the controlled (reference) volume still reaches the targets through third
  countries, at a markup on the base-year producer price: modelled as extra capacity on the controlled route
  that pays the markup as a wedge.
- ``extraterritorial``: every other country's exports to the targets of a covered stage (a target's
  re-exports to another target included) are capped at the share of their reference flow that does not
  trace back to the controller (mine origin or any earlier processing location), with content traced by
  proportional mixing through the previous period's flows; countries whose content is below the de-minimis
  threshold are exempt. Under licensing, ``approval_share`` of that content is licensed as well.
- ``hoarding``: the controller's own stock purchases, a buy segment at its market up to a rate and price cap.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from critmin.core.arrays import FloatArray, block_index, stack_rows
from critmin.core.specs import PricePerT, Rate, Share, TonnesPerYear
from critmin.policy.base import Instrument, MineralContext, PeriodContext
from critmin.policy.blocs import Selector
from critmin.policy.effects import ConstraintSpec, MineralOutcome, SegmentSpec, stack_outcomes, whole_batch_field


def reference_flow(pctx: PeriodContext) -> FloatArray:
    """The larger of base-year and previous-period flows, per route ``(S, R, R)``."""
    return np.maximum(pctx.mineral.cal.base_flow, pctx.last_flow())


def controller_content(flow: FloatArray, controller: list[int]) -> FloatArray:
    """Share of each origin node's product ``(S, R)`` that passed through ``controller`` regions at any step.

    Proportional mixing: a use node's content is the flow-weighted mean of its origins' content; an origin
    node of a processing stage carries its region's content at the previous stage's use node, or 1 when the
    region itself is a controller. ``flow`` may carry leading dimensions (draws): ``(..., S, R, R)`` gives
    ``(..., S, R)``.
    """
    *lead, S, R, _ = flow.shape
    origin = np.zeros((*lead, S, R))
    ctrl = np.zeros(R, dtype=bool)
    ctrl[controller] = True
    for s in range(S):
        if s == 0:
            origin[..., 0, :] = ctrl.astype(float)
        else:
            inflow = flow[..., s - 1, :, :].sum(axis=-2)
            mixed = np.divide(
                (flow[..., s - 1, :, :] * origin[..., s - 1, :, None]).sum(axis=-2),
                inflow,
                out=np.zeros((*lead, R)),
                where=inflow > 0,
            )
            origin[..., s, :] = np.where(ctrl, 1.0, mixed)
    return origin


class ExportControl(Instrument):
    """An export control by ``exporter`` on ``targets``: ban, quota or licensing."""

    kind: Literal["export_control"] = "export_control"
    mode: Literal["ban", "quota", "licensing"]
    exporter: Selector = Field(description="Controlling regions or bloc")
    targets: Selector = Field(default="all", description="Destinations covered")
    stages: list[str] | None = Field(default=None, description="Stages covered (default: all)")
    quota: TonnesPerYear | None = Field(default=None, description="Absolute quota (mode quota), per stage")
    quota_share: Share | None = Field(default=None, description="Quota as a share of base-year exports")
    approval_share: Share | None = Field(default=None, description="Licensing: share of flow approved")
    cost: PricePerT | None = Field(default=None, description="Licensing: per-unit cost of delay")
    cost_rate: Rate | None = Field(default=None, description="Licensing: cost as a share of the price")
    leakage_share: Share = Field(default=0.0, description="Share of controlled volume that still leaks")
    leakage_markup: Rate = Field(default=0.0, description="Markup on leaked volume, share of the price")
    extraterritorial: bool = Field(default=False, description="Restrict third countries' re-exports")
    de_minimis: Share = Field(default=0.0, description="Content share below which re-exports are exempt")

    @model_validator(mode="after")
    def _check_mode(self) -> ExportControl:
        if self.mode == "quota" and (self.quota is None) == (self.quota_share is None):
            raise ValueError("a quota needs exactly one of 'quota' (t/yr) or 'quota_share'")
        if self.mode == "licensing" and self.approval_share is None:
            raise ValueError("licensing needs 'approval_share'")
        if self.mode != "quota" and (self.quota is not None or self.quota_share is not None):
            raise ValueError(f"'quota' and 'quota_share' apply only to mode quota, not {self.mode}")
        return self

    def selectors(self) -> dict[str, Selector]:
        return {"exporter": self.exporter, "targets": self.targets}

    # -- structure: one constraint per covered stage for quotas ---------------------------------------------
    def _routes(self, mctx: MineralContext, date: object) -> tuple[list[int], list[int]]:
        when = date if isinstance(date, dt.date) else dt.date(mctx.cal.years[0], 7, 1)
        exp = mctx.regions_at(self.exporter, when)
        tgt = [d for d in mctx.regions_at(self.targets, when) if d not in exp]
        return exp, tgt

    def structure(self, mctx: MineralContext) -> tuple[list[SegmentSpec], list[ConstraintSpec]]:
        if self.mode != "quota":
            return [], []
        when = self.start or dt.date(mctx.cal.years[0], 7, 1)
        exp, tgt = self._routes(mctx, when)
        cons = []
        for s in mctx.stage_indices(self.stages):
            routes = tuple((s, o, d, 1.0) for o in exp for d in tgt)
            if routes:
                cons.append(ConstraintSpec(name=mctx.segment_name(f"quota/{mctx.cal.stages[s]}"), routes=routes))
        return [], cons

    def apply(self, pctx: PeriodContext) -> None:
        share = self.active_share(pctx.start, pctx.end)
        state = pctx.my_state()
        state["share"] = share
        if share == 0.0:
            return
        cal = pctx.mineral.cal
        inputs = pctx.inputs
        assert inputs.route_upper is not None and inputs.route_wedge is not None
        assert inputs.constraint_rhs is not None
        ref = reference_flow(pctx)
        stages = np.asarray(pctx.mineral.stage_indices(self.stages), dtype=np.intp)
        exp = pctx.regions_at(self.exporter)
        tgt = [d for d in pctx.regions_at(self.targets) if d not in exp]
        # the (stage, exporter, target) block of every covered stage at once
        rows, cols = block_index(exp, tgt)
        block = (stages[:, None, None], rows[None], cols[None])
        exporter_price = cal.base_origin_price[stages[:, None], rows[:, 0][None, :]][:, :, None]  # (stage, exp, 1)
        ref_block = ref[block]
        leak = self.leakage_share * ref_block * share
        if self.mode == "ban":
            allowed = (1.0 - share) * ref_block + leak
            inputs.route_upper[block] = np.minimum(inputs.route_upper[block], allowed)
        elif self.mode == "licensing":
            approved = ((1.0 - share) + share * float(self.approval_share or 0.0)) * ref_block + leak
            inputs.route_upper[block] = np.minimum(inputs.route_upper[block], approved)
            per_unit = float(self.cost or 0.0) + float(self.cost_rate or 0.0) * exporter_price
            inputs.route_wedge[block] += share * per_unit
        if self.leakage_share > 0 and self.leakage_markup:
            # the leaked volume pays the markup; with a full-period ban it is the only flow left
            inputs.route_wedge[block] += share * self.leakage_markup * exporter_price
        if self.mode == "quota":
            for i, s in enumerate(stages):
                name = pctx.mineral.segment_name(f"quota/{cal.stages[s]}")
                k = pctx.constraint_index.get(name)
                if k is None:
                    continue
                base_exports = float(cal.base_flow[s][rows, cols].sum())
                q = float(self.quota) if self.quota is not None else float(self.quota_share or 0.0) * base_exports
                total_ref = float(ref_block[i].sum())
                inputs.constraint_rhs[k] = share * q + (1.0 - share) * total_ref + leak[i].sum()
        if self.extraterritorial:
            content = controller_content(pctx.last_flow(), exp)
            # every other country's exports to the targets (a target re-exporting to another target included;
            # its own domestic use is not an export)
            controlled = np.zeros(cal.n_regions, dtype=bool)
            controlled[exp] = True
            others = np.flatnonzero(~controlled)
            dests = np.asarray(tgt, dtype=np.intp)
            # under licensing the controller's content needs a licence too, approved at the same share
            denied = 1.0 - float(self.approval_share or 0.0) if self.mode == "licensing" else 1.0
            third = (stages[:, None, None], others[None, :, None], dests[None, None, :])
            share_of = content[stages[:, None], others[None, :]][:, :, None]  # (stage, origin, 1)
            cap = (1.0 - share * denied * share_of) * ref[third]
            current = inputs.route_upper[third]
            capped = (share_of > self.de_minimis) & (others[:, None] != dests[None, :])[None]
            inputs.route_upper[third] = np.where(capped, np.minimum(current, cap), current)

    @classmethod
    def apply_batch(cls, instruments: Sequence[Instrument], contexts: Sequence[PeriodContext]) -> None:
        """:meth:`apply` for a batch of draws, with the same numbers: draws whose ban or licensing covers the
        same exporters, targets and stages are done in one block (draw x stage x exporter x target); quotas and
        draws that stand alone go through :meth:`apply`."""
        groups: dict[tuple[str, bool, tuple[int, ...], tuple[int, ...], tuple[int, ...]], list[int]] = defaultdict(list)
        # where every draw bans or licenses the same stages from the same exporters to the same targets in the
        # same market (what is drawn, if anything, is a share, markup, approval or date), the group is found once
        same = cls.alike(instruments, contexts, ("mode", "extraterritorial", "stages", "exporter", "targets"))
        group = None
        for b, (inst, pctx) in enumerate(zip(instruments, contexts, strict=True)):
            assert isinstance(inst, ExportControl)
            share = inst.active_share(pctx.start, pctx.end)
            if share == 0.0 or inst.mode == "quota":
                inst.apply(pctx)
                continue
            if group is None or not same:
                exporters = pctx.regions_at(inst.exporter)
                targets = tuple(d for d in pctx.regions_at(inst.targets) if d not in exporters)
                covered = tuple(pctx.mineral.stage_indices(inst.stages))
                group = (inst.mode, inst.extraterritorial, covered, tuple(exporters), targets)
            groups[group].append(b)
        for (mode, extraterritorial, stages, exp, tgt), members in groups.items():
            if len(members) == 1:
                b = members[0]
                instruments[b].apply(contexts[b])
            else:
                controls = [instruments[b] for b in members]
                assert all(isinstance(c, ExportControl) for c in controls)
                _ban_or_licence_block(
                    controls,  # type: ignore[arg-type]
                    [contexts[b] for b in members],
                    mode,
                    extraterritorial,
                    list(stages),
                    list(exp),
                    list(tgt),
                )

    def settle(self, pctx: PeriodContext, outcome: MineralOutcome) -> None:
        if self.mode != "quota" or pctx.my_state().get("share", 0.0) == 0.0:
            return
        cal = pctx.mineral.cal
        exp = pctx.regions_at(self.exporter)
        for s in pctx.mineral.stage_indices(self.stages):
            k = pctx.constraint_index.get(pctx.mineral.segment_name(f"quota/{cal.stages[s]}"))
            if k is None:
                continue
            rent = float(outcome.rent[k])
            when = self.start or dt.date(cal.years[0], 7, 1)
            _, tgt = self._routes(pctx.mineral, when)
            for o in exp:
                shipped = float(outcome.flow[s, o, tgt].sum())
                pctx.ledger.add("quota_rent", rent * shipped * pctx.years, region=cal.regions[o])


def _ban_or_licence_block(
    controls: list[ExportControl],
    contexts: list[PeriodContext],
    mode: str,
    extraterritorial: bool,
    stages: list[int],
    exp: list[int],
    tgt: list[int],
) -> None:
    """:meth:`ExportControl.apply` (ban or licensing) for several draws at once, element for element the same
    arithmetic, on arrays with the draws first."""
    share = np.array([c.active_share(p.start, p.end) for c, p in zip(controls, contexts, strict=True)])
    for pctx, value in zip(contexts, share, strict=True):
        pctx.my_state()["share"] = float(value)
    B = len(controls)
    column = (slice(None), None, None, None)  # a per-draw number against (stage, exporter, target) blocks
    # the draws' route arrays: written in place when they are the rows of the batch's arrays, else copies
    # written back at the end
    inputs = [p.inputs for p in contexts]
    whole_upper = whole_batch_field(inputs, "route_upper")
    whole_wedge = whole_batch_field(inputs, "route_wedge")
    if whole_upper is not None and whole_wedge is not None:
        upper, wedge, in_place = whole_upper, whole_wedge, True
    else:
        upper = np.stack([inp.route_upper for inp in inputs])  # type: ignore[misc]
        wedge = np.stack([inp.route_wedge for inp in inputs])  # type: ignore[misc]
        in_place = False
    cals = [p.mineral.cal for p in contexts]
    previous = [p.previous for p in contexts]
    if all(o is not None for o in previous):  # read only
        last = stack_outcomes(previous, "flow")  # type: ignore[arg-type]
    else:
        last = stack_rows([p.last_flow() for p in contexts])
    base_flow = np.stack([cal.base_flow for cal in cals]) if any(c is not cals[0] for c in cals) else cals[0].base_flow
    ref = np.maximum(base_flow, last)  # reference_flow of each draw
    st = np.asarray(stages, dtype=np.intp)
    rows, cols = block_index(exp, tgt)
    block = (slice(None), st[:, None, None], rows[None], cols[None])
    if all(cal is cals[0] for cal in cals):
        origin_price = np.broadcast_to(cals[0].base_origin_price, (B, *cals[0].base_origin_price.shape))
    else:
        origin_price = np.stack([cal.base_origin_price for cal in cals])
    exporter_price = origin_price[:, st[:, None], rows[:, 0][None, :]][..., None]  # (draw, stage, exp, 1)
    ref_block = ref[block]
    f = share[column]
    leakage = np.array([float(c.leakage_share) for c in controls])
    leak = leakage[column] * ref_block * f
    if mode == "ban":
        allowed = (1.0 - f) * ref_block + leak
        upper[block] = np.minimum(upper[block], allowed)
    else:  # licensing
        approval = np.array([float(c.approval_share or 0.0) for c in controls])
        approved = ((1.0 - f) + f * approval[column]) * ref_block + leak
        upper[block] = np.minimum(upper[block], approved)
        cost = np.array([float(c.cost or 0.0) for c in controls])[column]
        rate = np.array([float(c.cost_rate or 0.0) for c in controls])[column]
        wedge[block] += f * (cost + rate * exporter_price)
    markup = np.array([float(c.leakage_markup) for c in controls])
    leaking = np.flatnonzero((leakage > 0) & (markup != 0))
    if leaking.size:
        # the leaked volume pays the markup; with a full-period ban it is the only flow left
        sub = (leaking[:, None, None, None], *block[1:])
        wedge[sub] += (share[leaking] * markup[leaking])[column] * exporter_price[leaking]
    if extraterritorial:
        content = controller_content(last, exp)  # (draw, S, R)
        R = cals[0].n_regions
        controlled = np.zeros(R, dtype=bool)
        controlled[exp] = True
        others = np.flatnonzero(~controlled)
        dests = np.asarray(tgt, dtype=np.intp)
        denied = (1.0 - approval) if mode == "licensing" else np.ones(B)
        third = (slice(None), st[:, None, None], others[None, :, None], dests[None, None, :])
        share_of = content[:, st[:, None], others[None, :]][..., None]  # (draw, stage, origin, 1)
        cap = (1.0 - f * denied[column] * share_of) * ref[third]
        current = upper[third]
        minimis = np.array([float(c.de_minimis) for c in controls])[column]
        capped = (share_of > minimis) & (others[:, None] != dests[None, :])[None, None]
        upper[third] = np.where(capped, np.minimum(current, cap), current)
    if not in_place:
        for b, inp in enumerate(inputs):
            inp.route_upper[...] = upper[b]  # type: ignore[index]
            inp.route_wedge[...] = wedge[b]  # type: ignore[index]


class Hoarding(Instrument):
    """Stock purchases by an exporting country for itself: buys up to ``rate`` while the price is at most
    ``price_cap`` (gradually over a 2% band below it); the stock is kept and reported."""

    kind: Literal["hoarding"] = "hoarding"
    region: str = Field(description="The hoarding region")
    stages: list[str] | None = Field(default=None, description="Stage bought (default: the first after mining)")
    rate: TonnesPerYear = Field(description="Largest purchase per year")
    price_cap: PricePerT | None = Field(default=None, description="Buys only at or below this price")

    def selectors(self) -> dict[str, Selector]:
        return {"region": self.region}

    def _stage(self, mctx: MineralContext) -> int:
        idx = mctx.stage_indices(self.stages)
        if self.stages is None:
            return min(1, mctx.cal.n_stages - 1)
        return idx[0]

    def structure(self, mctx: MineralContext) -> tuple[list[SegmentSpec], list[ConstraintSpec]]:
        r = mctx.cal.regions.index(self.region)
        return [SegmentSpec(mctx.segment_name("buy"), self._stage(mctx), r, "buy")], []

    def apply(self, pctx: PeriodContext) -> None:
        share = self.active_share(pctx.start, pctx.end)
        j = pctx.segment_index[pctx.mineral.segment_name("buy")]
        s = self._stage(pctx.mineral)
        cap = (
            float(self.price_cap) if self.price_cap is not None else 10.0 * float(pctx.mineral.cal.base_price[s].max())
        )
        assert pctx.inputs.segment_quantity is not None
        assert pctx.inputs.segment_price_low is not None and pctx.inputs.segment_price_high is not None
        pctx.inputs.segment_quantity[j] = share * float(self.rate)
        pctx.inputs.segment_price_high[j] = cap
        pctx.inputs.segment_price_low[j] = 0.98 * cap

    def settle(self, pctx: PeriodContext, outcome: MineralOutcome) -> None:
        j = pctx.segment_index[pctx.mineral.segment_name("buy")]
        s = self._stage(pctx.mineral)
        cal = pctx.mineral.cal
        r = cal.regions.index(self.region)
        bought = float(outcome.segment[j]) * pctx.years
        state = pctx.my_state()
        state["stock"] = state.get("stock", 0.0) + bought
        stage = cal.stages[s]
        pctx.ledger.add("reserve_purchase", float(outcome.segment[j]), region=self.region, stage=stage)
        pctx.ledger.set("reserve_stock", state["stock"], region=self.region, stage=stage)
        pctx.ledger.add("reserve_spent", bought * float(outcome.price[s, r]), region=self.region)
