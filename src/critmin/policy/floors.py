"""Price floors, both proposed designs.

``cfd`` (contract for difference; the July 2025 DoD–MP Materials terms: 110 USD/kg NdPr oxide for ten
years from Q4 2025). Eligible producers receive ``max(F - p, 0)`` per tonne on eligible volume, where ``p``
is their own (producer) price. In equilibrium an eligible producer supplies ``min(V, q(F))`` whatever the
price, and follows its cost curve above: the instrument sets that lower bound on the producer's output,
with ``q(F)`` read from the producer's calibrated supply curve (for a processor, its margin at output price
``F`` and the previous period's input price). The payment is the payer's fiscal cost. A budget cap (over the
whole term) scales the eligible volume down so that payments never exceed what is left; solved as a fixed
point with the period's prices.

``reference_price`` (the February 2026 proposal: reference prices kept by adjustable tariffs). Imports into
the bloc from non-members pay the variable levy ``max(0, F - delivered price)``, with the delivered price the
exporter's producer price plus the route's calibrated cost. The levy depends on prices, so the period is
solved as a fixed point: levy from the last prices, solve, update, until the largest change in the levy is
below ``tolerance`` times ``F`` (reported as ``levy_iterations`` and ``levy_residual``). Levy revenue
accrues to the importing member.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from critmin.core.arrays import FloatArray, block_index
from critmin.core.specs import Money, PricePerT, TonnesPerYear
from critmin.policy.base import Instrument, PeriodContext
from critmin.policy.blocs import Selector
from critmin.policy.effects import (
    MineralOutcome,
    PeriodInputs,
    batch_rows,
    rows_in_order,
    stack_outcomes,
    whole_batch_field,
)

#: Default tolerance of the reference-price fixed point, relative to the floor.
LEVY_TOLERANCE = 1e-6
#: Bounds on the relaxation of a reference-price levy's fixed-point steps (1 is a plain step).
RELAXATION_RANGE = (0.1, 2.0)
#: Payments may exceed what is left of a CfD budget by this share before the volume is scaled again; the
#: settlement caps them at the budget exactly.
BUDGET_TOLERANCE = 1e-6


def supply_at(pctx: PeriodContext, stage: int, region: int, price: float) -> float:
    """Output of a producer at ``price`` from its calibrated curve and this period's capacity."""
    cal = pctx.mineral.cal
    assert pctx.inputs.capacity is not None and pctx.inputs.supply_cost_shift is not None
    a = cal.supply_intercept[stage, region] + pctx.inputs.supply_cost_shift[stage, region]
    b = cal.supply_slope[stage, region]
    cap = pctx.inputs.capacity[stage, region]
    if stage == 0:
        return float(np.clip((price - a) / b, 0.0, cap))
    y = cal.yields[stage]
    input_price = pctx.last_price()[stage - 1, region]
    z = np.clip((y * price - input_price - a) / b, 0.0, cap / y)
    return float(y * z)


class CfdFloor(Instrument):
    """A contract-for-difference price floor for eligible producers."""

    kind: Literal["cfd"] = "cfd"
    floor: PricePerT = Field(description="Floor price F, e.g. '110 USD/kg'")
    eligible: Selector = Field(description="Producing regions (or bloc) whose output is eligible")
    stage: str = Field(default="refine", description="Stage whose output is eligible")
    volume_cap: TonnesPerYear | None = Field(default=None, description="Eligible volume per year (total)")
    budget: Money | None = Field(default=None, description="Budget over the whole term")
    payer: str | None = Field(default=None, description="Region that pays (default: the first eligible)")

    def selectors(self) -> dict[str, Selector]:
        out: dict[str, Selector] = {"eligible": self.eligible}
        if self.payer is not None:
            out["payer"] = self.payer
        return out

    def _stage(self, pctx: PeriodContext) -> int | None:
        idx = pctx.mineral.stage_indices([self.stage])
        return idx[0] if idx else None

    def _eligible_total(self, pctx: PeriodContext) -> float:
        """Eligible volume per year: the volume cap, lowered by the budget when the budget binds."""
        cap = float(self.volume_cap) if self.volume_cap is not None else np.inf
        return min(cap, pctx.my_state().get("budget_volume", np.inf))

    def apply(self, pctx: PeriodContext) -> None:
        share = self.active_share(pctx.start, pctx.end)
        state = pctx.my_state()
        state["share"] = share
        s = self._stage(pctx)
        if share == 0.0 or s is None:
            state["volume"] = {}
            return
        cal = pctx.mineral.cal
        regions = pctx.regions_at(self.eligible)
        base = cal.base_production[s, regions]
        weights = base / base.sum() if base.sum() > 0 else np.full(len(regions), 1.0 / max(len(regions), 1))
        total = self._eligible_total(pctx)
        volume: dict[int, float] = {}
        assert pctx.inputs.supply_lower is not None
        for r, w in zip(regions, weights, strict=True):
            cap = total * w if np.isfinite(total) else np.inf
            volume[r] = cap
            lower = min(cap, supply_at(pctx, s, r, float(self.floor)))
            pctx.inputs.supply_lower[s, r] = max(pctx.inputs.supply_lower[s, r], share * lower)
        state["volume"] = volume
        # producers protected by the floor expect at least F (read by the investment pipeline)
        protections = pctx.state.setdefault("__floors__", {})
        for r in regions:
            protections[(s, r)] = max(protections.get((s, r), 0.0), float(self.floor))

    def _payments(self, pctx: PeriodContext, outcome: MineralOutcome) -> dict[int, float]:
        """Payment per eligible region: ``max(F - producer price, 0)`` on output up to its eligible volume."""
        state = pctx.my_state()
        s = self._stage(pctx)
        if s is None or not state.get("volume"):
            return {}
        share = state["share"]
        out = {}
        for r, cap in state["volume"].items():
            gap = max(float(self.floor) - float(outcome.origin_price[s, r]), 0.0)
            eligible = min(float(outcome.production[s, r]), cap)
            out[r] = gap * eligible * share * pctx.years
        return out

    def refine(self, pctx: PeriodContext, outcome: MineralOutcome) -> float:
        if self.budget is None:
            return 0.0
        state = pctx.my_state()
        due = sum(self._payments(pctx, outcome).values())
        left = max(float(self.budget) - state.get("spent", 0.0), 0.0)
        if due <= left * (1 + BUDGET_TOLERANCE) or due == 0.0:
            return 0.0
        s = self._stage(pctx)
        assert s is not None
        # the volume whose payments exhaust what is left, at this round's prices
        paid = [(r, cap) for r, cap in state["volume"].items()]
        gap_volume = sum(
            max(float(self.floor) - float(outcome.origin_price[s, r]), 0.0) * min(float(outcome.production[s, r]), cap)
            for r, cap in paid
        )
        current = min(self._eligible_total(pctx), sum(min(float(outcome.production[s, r]), c) for r, c in paid))
        new = current * left / due if gap_volume > 0 else 0.0
        old = state.get("budget_volume", np.inf)
        state["budget_volume"] = new
        self.apply(pctx)
        return abs(new - old) / max(new, 1e-12) if np.isfinite(old) else 1.0

    def settle(self, pctx: PeriodContext, outcome: MineralOutcome) -> None:
        state = pctx.my_state()
        payments = self._payments(pctx, outcome)
        cal = pctx.mineral.cal
        total = sum(payments.values())
        if self.budget is not None:
            total = min(total, max(float(self.budget) - state.get("spent", 0.0), 0.0))
        state["spent"] = state.get("spent", 0.0) + total
        state.pop("budget_volume", None)
        s = self._stage(pctx)
        for r, pay in payments.items():
            pctx.ledger.add("floor_payment", pay, region=cal.regions[r], stage=cal.stages[s] if s is not None else "")
        if payments:
            who = self.payer or cal.regions[next(iter(payments))]
            pctx.ledger.add("fiscal_cost", total, region=who)


class ReferencePriceFloor(Instrument):
    """Reference prices kept by a variable levy on imports into a bloc from non-members."""

    kind: Literal["reference_price"] = "reference_price"
    floor: PricePerT = Field(description="Reference price F")
    bloc: str = Field(description="The bloc whose imports are levied (a bloc or region selector)")
    stages: list[str] = Field(default_factory=lambda: ["refine"], description="Stages with a reference price")
    tolerance: float = Field(default=LEVY_TOLERANCE, gt=0, description="Fixed-point tolerance relative to F")

    def selectors(self) -> dict[str, Selector]:
        return {"bloc": self.bloc}

    def _levied(self, pctx: PeriodContext) -> tuple[Any, ...]:
        """Which routes are levied and their transport costs: ``(members, outside, block, stages, route
        costs)``, the same while membership is (found once per draw and membership)."""
        cal = pctx.mineral.cal
        members = pctx.regions_at(self.bloc)
        state = pctx.my_state()
        key = tuple(members)
        found = state.get("levied")
        if found is None or found[0] != key:
            outside = [o for o in range(cal.n_regions) if o not in members]
            block = block_index(outside, members)
            stages = pctx.mineral.stage_indices(self.stages)
            found = (key, outside, block, stages, [cal.route_cost[s][block] for s in stages])
            state["levied"] = found
        return found

    def _levies(self, levied: tuple[Any, ...], origin_price: FloatArray, shift: FloatArray, share: float) -> FloatArray:
        """The levy ``(B, S, R, R)`` of draws with origin prices ``(B, S, R)`` and route cost shifts
        ``(B, S, R, R)`` (one draw, or the draws of a batch with the same levied routes)."""
        _, outside, block, stages, route_cost = levied
        levy = np.zeros(shift.shape)
        rows = (slice(None), *block)  # every draw, the levied (origin, destination) block
        floor = float(self.floor)
        for s, cost in zip(stages, route_cost, strict=True):
            delivered = origin_price[:, s][:, outside][:, :, None] + cost + shift[:, s][rows]
            levy[:, s][rows] = np.maximum(0.0, floor - delivered)
        return levy * share

    def _levy(self, pctx: PeriodContext, origin_price: FloatArray) -> FloatArray:
        cal = pctx.mineral.cal
        share = self.active_share(pctx.start, pctx.end)
        if share == 0.0:
            return np.zeros((cal.n_stages, cal.n_regions, cal.n_regions))
        assert pctx.inputs.route_cost_shift is not None
        return self._levies(self._levied(pctx), origin_price[None], pctx.inputs.route_cost_shift[None], share)[0]

    def _start(self, pctx: PeriodContext, levy: FloatArray) -> None:
        """A period's first levy (from the last prices) and its fixed point's counters in the draw's state."""
        state = pctx.my_state()
        state["levy"] = levy
        state["iterations"] = 0
        state["residual"] = 0.0
        state["step"] = None  # the last round's plain step, and the relaxation it was taken with
        state["relaxation"] = 1.0

    def apply(self, pctx: PeriodContext) -> None:
        guess = pctx.previous.origin_price if pctx.previous is not None else pctx.mineral.cal.base_origin_price
        levy = self._levy(pctx, guess)
        self._start(pctx, levy)
        assert pctx.inputs.route_wedge is not None
        pctx.inputs.route_wedge += levy

    @classmethod
    def apply_batch(cls, instruments: Sequence[Instrument], contexts: Sequence[PeriodContext]) -> None:
        """:meth:`apply` for a batch: where every draw holds the same floor in the same market, the levies of
        all draws from one block of last prices (the same numbers, element for element); else draw by draw."""
        first = instruments[0]
        assert isinstance(first, ReferencePriceFloor)
        pctx0 = contexts[0]
        share = first.active_share(pctx0.start, pctx0.end)
        if share == 0.0 or not cls.alike(instruments, contexts):
            super().apply_batch(instruments, contexts)
            return
        inputs = [pctx.inputs for pctx in contexts]
        guess = np.stack(
            [p.previous.origin_price if p.previous is not None else p.mineral.cal.base_origin_price for p in contexts]
        )
        levied = first._levied(pctx0)
        for pctx in contexts[1:]:
            pctx.my_state()["levied"] = levied
        levies = first._levies(levied, guess, _route_cost_shifts(inputs), share)
        for pctx, levy in zip(contexts, levies, strict=True):
            first._start(pctx, levy)
        whole = whole_batch_field(inputs, "route_wedge")
        if whole is not None:
            whole += levies
            return
        for inp, levy in zip(inputs, levies, strict=True):
            assert inp.route_wedge is not None
            inp.route_wedge += levy

    def _relax(self, pctx: PeriodContext, old: FloatArray, target: FloatArray, change: float) -> float:
        """One round of the fixed point from the levy this round's prices call for (``target``): the
        relaxed step written to the state and the route wedges; returns ``change`` (0 once settled)."""
        state = pctx.my_state()
        state["iterations"] += 1
        state["residual"] = change
        if change <= self.tolerance:
            return 0.0
        # Aitken's adaptive relaxation (Irons and Tuck; Kuttler and Wall): the relaxation is rescaled by how
        # the plain step changed since the last round, projected on that change. Along a direction where the
        # map contracts by lambda, steps of 1 / (1 - lambda) land on the fixed point: longer ones where
        # it converges slowly and monotonely, shorter ones where it oscillates or cycles.
        step = target - old
        theta = 1.0
        last = state["step"]
        if last is not None:
            change_of_step = step - last
            norm = float((change_of_step * change_of_step).sum())
            if norm > 0.0:
                theta = -state["relaxation"] * float((last * change_of_step).sum()) / norm
                theta = min(max(theta, RELAXATION_RANGE[0]), RELAXATION_RANGE[1])
        new = old + theta * step
        state["step"] = step
        state["relaxation"] = theta
        assert pctx.inputs.route_wedge is not None
        pctx.inputs.route_wedge += new - old
        state["levy"] = new
        return change

    def refine(self, pctx: PeriodContext, outcome: MineralOutcome) -> float:
        old = pctx.my_state()["levy"]
        target = self._levy(pctx, outcome.origin_price)
        change = float(np.abs(target - old).max(initial=0.0)) / float(self.floor)
        return self._relax(pctx, old, target, change)

    @classmethod
    def refine_batch(
        cls, instruments: Sequence[Instrument], contexts: Sequence[PeriodContext], outcomes: Sequence[MineralOutcome]
    ) -> FloatArray:
        """:meth:`refine` for a batch: where every draw holds the same floor in the same market, the levies
        this round's prices call for from one block (the same numbers); the relaxation draw by draw."""
        first = instruments[0]
        assert isinstance(first, ReferencePriceFloor)
        pctx0 = contexts[0]
        share = first.active_share(pctx0.start, pctx0.end)
        if share == 0.0 or not cls.alike(instruments, contexts):
            return super().refine_batch(instruments, contexts, outcomes)
        levied = first._levied(pctx0)
        shift = _route_cost_shifts([pctx.inputs for pctx in contexts])
        targets = first._levies(levied, stack_outcomes(outcomes, "origin_price"), shift, share)
        olds = [pctx.my_state()["levy"] for pctx in contexts]
        floor = float(first.floor)
        moved = np.zeros(len(contexts))
        for b, (pctx, old, target) in enumerate(zip(contexts, olds, targets, strict=True)):
            pctx.my_state()["levied"] = levied
            change = float(np.abs(target - old).max(initial=0.0)) / floor
            moved[b] = first._relax(pctx, old, target, change)
        return moved

    def _book(self, pctx: PeriodContext, revenue: FloatArray) -> None:
        state = pctx.my_state()
        cal = pctx.mineral.cal
        for d, region in enumerate(cal.regions):
            pctx.ledger.add("levy_revenue", revenue[d], region=region)
        pctx.ledger.set("levy_iterations", float(state.get("iterations", 0)), region=self.bloc)
        pctx.ledger.set("levy_residual", float(state.get("residual", 0.0)), region=self.bloc)

    def settle(self, pctx: PeriodContext, outcome: MineralOutcome) -> None:
        levy = pctx.my_state().get("levy")
        if levy is None:
            return
        self._book(pctx, (levy * outcome.flow).sum(axis=(0, 1)) * pctx.years)

    @classmethod
    def settle_batch(
        cls, instruments: Sequence[Instrument], contexts: Sequence[PeriodContext], outcomes: Sequence[MineralOutcome]
    ) -> None:
        """:meth:`settle` for a batch: every draw's levy revenue in one product (the same numbers)."""
        levies = [pctx.my_state().get("levy") for pctx in contexts]
        if any(levy is None for levy in levies) or any(p.years != contexts[0].years for p in contexts):
            super().settle_batch(instruments, contexts, outcomes)
            return
        flows = stack_outcomes(outcomes, "flow")
        revenue = (np.stack(levies) * flows).sum(axis=(1, 2)) * contexts[0].years  # type: ignore[arg-type]
        for inst, pctx, row in zip(instruments, contexts, revenue, strict=True):
            assert isinstance(inst, ReferencePriceFloor)
            inst._book(pctx, row)


def _route_cost_shifts(inputs: Sequence[PeriodInputs]) -> FloatArray:
    """The draws' route cost shifts ``(B, S, R, R)``, for reading (their batch's array where they are its rows)."""
    found = batch_rows(inputs, "route_cost_shift")
    if found is not None:
        whole, rows = found
        return whole if rows_in_order(whole, rows) else whole[rows]
    shifts = [inp.route_cost_shift for inp in inputs]
    assert all(shift is not None for shift in shifts)
    return np.stack(shifts)  # type: ignore[arg-type]
