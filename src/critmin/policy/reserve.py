"""Strategic reserves (Project Vault, a SECURE-Act reserve agency, the National Defense Stockpile).

A reserve holds a stock of one stage's product per mineral at a location (the owner, or a named region for
a bloc's reserve). Each period it enters the market through price-responsive segments:

- **buy**: up to ``min(rate, (target - stock)/years, money left / trigger / years)`` t/yr while the price at
  the location is at or below the buy trigger; it buys gradually over a band of ``band`` below the trigger
  (all of it at ``trigger * (1 - band)``);
- **release**: up to ``min(rate, stock / years)`` t/yr, offered in every region allowed to draw, with one
  side constraint keeping total releases within that amount. With a price trigger, releases start at the
  trigger and are complete at ``trigger * (1 + band)``: the release caps the price near the trigger while
  stock lasts. With a shortfall trigger, the reserve releases at any price once the shortfall in the owner's
  market in the previous period reached the threshold. If ``sectors`` is given, releases are limited to those
  sectors' shortfall in the drawing regions in the previous period (they are delivered into the market, as
  a stockpile's sales are).

Stocks carry over; a target in days of cover is converted with the location's base-year use of the stage.
A budget shared by several minerals is split in proportion to each mineral's target value at base prices.
Money is tracked: purchases, sales and holding cost (a share of the stock's value per year) make up the
payer's fiscal cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from critmin.core.arrays import FloatArray, block_index
from critmin.core.specs import Days, Money, PricePerT, Rate, Share, Tonnes, TonnesPerYear
from critmin.policy.base import Instrument, MineralContext, PeriodContext
from critmin.policy.blocs import Selector
from critmin.policy.effects import ConstraintSpec, MineralOutcome, SegmentSpec, whole_batch_field


class BuyRule(BaseModel):
    """Buy up to ``rate`` while the price is at or below ``trigger_price``."""

    model_config = ConfigDict(extra="forbid")
    rate: TonnesPerYear
    trigger_price: PricePerT


class ReleaseRule(BaseModel):
    """Release up to ``rate`` when the price exceeds ``trigger_price`` or shortfall reaches a threshold."""

    model_config = ConfigDict(extra="forbid")
    rate: TonnesPerYear
    trigger_price: PricePerT | None = None
    shortfall_trigger: Share | None = None

    @model_validator(mode="after")
    def _one(self) -> ReleaseRule:
        if (self.trigger_price is None) == (self.shortfall_trigger is None):
            raise ValueError("give exactly one of 'trigger_price' or 'shortfall_trigger'")
        return self


@dataclass(frozen=True)
class _ReserveLayout:
    """A reserve's place in its mineral's problem: stage, location, target stock, segment and row indices."""

    stage: int
    location: int
    target: float
    buy: int  # the buy segment (-1 without a buy rule)
    drawers: list[int]  # regions that draw on releases
    release: list[int]  # their release segments (empty without a release rule)
    release_total: int  # the row capping total releases (-1 without a release rule)


class Reserve(Instrument):
    """A strategic reserve of one stage's product, per mineral covered."""

    kind: Literal["reserve"] = "reserve"
    owner: str = Field(description="Owning region or bloc")
    location: str | None = Field(default=None, description="Region where the stock is held (default: owner)")
    payer: str | None = Field(default=None, description="Region whose budget pays (default: location)")
    stage: str = Field(default="refine", description="Stage of the product held")
    target_tonnes: Tonnes | None = Field(default=None, description="Target stock per mineral")
    target_days: Days | None = Field(default=None, description="Target in days of the location's use")
    initial_stock: Tonnes = Field(default=0.0, description="Stock at the start, per mineral")
    budget: Money | None = Field(default=None, description="Money available for purchases (all minerals)")
    buy: BuyRule | None = None
    release: ReleaseRule | None = None
    holding_cost: Rate = Field(default=0.0, description="Share of the stock's value per year")
    draw: Selector | None = Field(default=None, description="Regions that may draw (default: the location)")
    sectors: list[str] | None = Field(default=None, description="Sectors that may draw (default: all)")
    band: Share = Field(default=0.02, description="Width of the buy/release price band, share of trigger")

    @model_validator(mode="after")
    def _target(self) -> Reserve:
        if self.target_tonnes is not None and self.target_days is not None:
            raise ValueError("give at most one of 'target_tonnes' or 'target_days'")
        if self.buy is None and self.release is None:
            raise ValueError("a reserve needs a 'buy' rule, a 'release' rule, or both")
        return self

    def selectors(self) -> dict[str, Selector]:
        out: dict[str, Selector] = {"owner": self.owner}
        for name in ("location", "payer"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.draw is not None:
            out["draw"] = self.draw
        return out

    # -- helpers ---------------------------------------------------------------------------------------
    def _location(self, mctx: MineralContext) -> int:
        if self.location is not None:
            return mctx.cal.regions.index(self.location)
        if self.owner in mctx.cal.regions:
            return mctx.cal.regions.index(self.owner)
        import datetime as dt

        members = mctx.regions_at(self.owner, self.start or dt.date(mctx.cal.years[0], 7, 1))
        if not members:
            raise ValueError(f"reserve {self.label}: owner {self.owner!r} has no members; set 'location'")
        return members[0]

    def _stage(self, mctx: MineralContext) -> int:
        if self.stage in mctx.cal.stages:
            return mctx.cal.stages.index(self.stage)
        return mctx.cal.n_stages - 1

    def _drawers(self, mctx: MineralContext) -> list[int]:
        import datetime as dt

        if self.draw is None:
            return [self._location(mctx)]
        when = self.start or dt.date(mctx.cal.years[0], 7, 1)
        regions = mctx.regions_at(self.draw, when)
        return regions or [self._location(mctx)]

    def target(self, mctx: MineralContext) -> float:
        """Target stock of this mineral in tonnes (infinite when none is given)."""
        if self.target_tonnes is not None:
            return float(self.target_tonnes)
        if self.target_days is not None:
            cal = mctx.cal
            s, r = self._stage(mctx), self._location(mctx)
            use = cal.base_flow[s, :, r].sum()
            return float(self.target_days) * float(use) / 365.0
        return np.inf

    def _layout(self, pctx: PeriodContext) -> _ReserveLayout:
        """Where this reserve sits in its mineral's problem: fixed for a run, so found once per run."""
        state = pctx.my_state()
        layout = state.get("layout")
        if layout is None:
            mctx = pctx.mineral
            regions = mctx.cal.regions
            drawers = self._drawers(mctx)
            layout = _ReserveLayout(
                stage=self._stage(mctx),
                location=self._location(mctx),
                target=self.target(mctx),
                buy=pctx.segment_index[mctx.segment_name("buy")] if self.buy is not None else -1,
                drawers=drawers,
                release=[pctx.segment_index[mctx.segment_name(f"release/{regions[r]}")] for r in drawers]
                if self.release is not None
                else [],
                release_total=pctx.constraint_index[mctx.segment_name("release-total")]
                if self.release is not None
                else -1,
            )
            state["layout"] = layout
        return layout

    # -- hooks -----------------------------------------------------------------------------------------
    def structure(self, mctx: MineralContext) -> tuple[list[SegmentSpec], list[ConstraintSpec]]:
        s, loc = self._stage(mctx), self._location(mctx)
        segments: list[SegmentSpec] = []
        constraints: list[ConstraintSpec] = []
        if self.buy is not None:
            segments.append(SegmentSpec(mctx.segment_name("buy"), s, loc, "buy"))
        if self.release is not None:
            names = []
            for r in self._drawers(mctx):
                name = mctx.segment_name(f"release/{mctx.cal.regions[r]}")
                segments.append(SegmentSpec(name, s, r, "sell"))
                names.append(name)
            constraints.append(
                ConstraintSpec(mctx.segment_name("release-total"), segments=tuple((n, 1.0) for n in names))
            )
        return segments, constraints

    def _state(self, pctx: PeriodContext) -> dict[str, Any]:
        """The draw's state, with the stock, spending and budget set up on first use."""
        state = pctx.my_state()
        if "stock" not in state:
            state["stock"] = float(self.initial_stock)
            state["spent"] = 0.0
            state["budget"] = self._budget_share(pctx)
        return state

    def apply(self, pctx: PeriodContext) -> None:
        inputs = pctx.inputs
        fields = [getattr(inputs, name) for name in _APPLIED]
        assert all(field is not None for field in fields)
        _apply_alike([self], [pctx], [field[None] for field in fields])  # one draw: views of its own arrays

    @classmethod
    def apply_batch(cls, instruments: Sequence[Instrument], contexts: Sequence[PeriodContext]) -> None:
        """:meth:`apply` for a batch: where every draw's reserve sits alike (the same place, segments and kinds
        of rule in the same market; its numbers and state may differ) and the draws' inputs are the rows of
        the batch's arrays, in one pass over those arrays; else draw by draw. The same numbers either way."""
        reserves: list[Reserve] = [r for r in instruments if isinstance(r, Reserve)]
        inputs = [pctx.inputs for pctx in contexts]
        arrays = [a for a in (whole_batch_field(inputs, name) for name in _APPLIED) if a is not None]
        first, pctx0 = reserves[0], contexts[0]

        def kinds(r: Reserve, pctx: PeriodContext) -> tuple[object, ...]:
            """What must agree for one pass: the kinds of rule and the place (the target is a number)."""
            at = r._layout(pctx)
            where = (at.stage, at.location, at.buy, at.drawers, at.release, at.release_total)
            return (r.buy is None, r.release is None, r.release is None or r.release.trigger_price is None, where)

        if (
            len(reserves) != len(contexts)
            or len(arrays) != len(_APPLIED)
            or not cls.alike(reserves, contexts, ("sectors",))
            or any(p.years != pctx0.years for p in contexts)
            or any(kinds(r, p) != kinds(first, pctx0) for r, p in zip(reserves, contexts, strict=True))
        ):
            super().apply_batch(instruments, contexts)
            return
        _apply_alike(reserves, list(contexts), arrays)

    def _budget_share(self, pctx: PeriodContext) -> float:
        if self.budget is None:
            return np.inf
        weights = pctx.state.get("__reserve_weights__", {}).get(pctx.instrument_id)
        if not weights:
            return float(self.budget)
        return float(self.budget) * weights.get(pctx.mineral.cal.mineral, 0.0)

    @classmethod
    def settle_batch(
        cls, instruments: Sequence[Instrument], contexts: Sequence[PeriodContext], outcomes: Sequence[MineralOutcome]
    ) -> None:
        """:meth:`settle` for the draws of a batch: the draws whose reserve sits in the same place with the
        same rules are settled together, on arrays with the draws first (element for element the same
        arithmetic, sums left to right as in :meth:`settle`); only the state and the ledgers are per draw."""
        groups: dict[tuple[object, ...], list[int]] = {}
        for b, (inst, pctx) in enumerate(zip(instruments, contexts, strict=True)):
            assert isinstance(inst, Reserve)
            layout = inst._layout(pctx)
            key = (
                layout.stage,
                layout.location,
                layout.buy,
                tuple(layout.drawers),
                tuple(layout.release),
                inst.buy is None,
                inst.release is None,
                None if inst.sectors is None else tuple(pctx.mineral.sector_indices(inst.sectors)),
                float(inst.holding_cost),
                inst.payer,
                pctx.years,
                "reference_demand" in pctx.my_state(),
            )
            groups.setdefault(key, []).append(b)
        for members in groups.values():
            _settle_alike(
                [instruments[b] for b in members],  # type: ignore[misc]
                [contexts[b] for b in members],
                [outcomes[b] for b in members],
            )

    def settle(self, pctx: PeriodContext, outcome: MineralOutcome) -> None:
        _settle_alike([self], [pctx], [outcome])


#: The period inputs a reserve writes (and the demand scale it reads), in the order :func:`_apply_alike` takes.
_APPLIED = ("segment_quantity", "segment_price_low", "segment_price_high", "constraint_rhs", "demand_scale")


def _apply_alike(reserves: list[Reserve], contexts: list[PeriodContext], arrays: list[FloatArray]) -> None:
    """Apply reserves that sit alike (the same place, segments and kinds of rule, one period) to their draws,
    on arrays with the draws first: ``arrays`` are the :data:`_APPLIED` inputs, row ``b`` draw ``b``'s.

    Buying: up to the rate, the room left below the target and what the money left affords, at prices in a
    band below the trigger. Releasing: up to the rate and the stock, at a price trigger's band, or (with a
    shortfall trigger) at any price once last period's shortfall reached the trigger; capped by the
    drawing sectors' last gap where sectors are named. All draws' numbers and states may differ.
    """
    quantity, price_low, price_high, rhs, demand_scale = arrays
    first, pctx0 = reserves[0], contexts[0]
    layout = first._layout(pctx0)
    states = [r._state(p) for r, p in zip(reserves, contexts, strict=True)]
    share = np.array([r.active_share(p.start, p.end) for r, p in zip(reserves, contexts, strict=True)])
    years = pctx0.years
    band = np.array([float(r.band) for r in reserves])
    stock = np.array([state["stock"] for state in states])
    if first.buy is not None:
        j = layout.buy
        trigger = np.array([float(r.buy.trigger_price) for r in reserves])  # type: ignore[union-attr]
        target = np.array([r._layout(p).target for r, p in zip(reserves, contexts, strict=True)])
        room = np.maximum(target - stock, 0.0) / years
        budget = np.array([state["budget"] for state in states])
        spent = np.array([state["spent"] for state in states])
        money = np.where(np.isfinite(budget), budget - spent, np.inf)
        affordable = np.maximum(money, 0.0) / np.maximum(trigger, 1e-9) / years
        rate = np.array([float(r.buy.rate) for r in reserves])  # type: ignore[union-attr]
        quantity[:, j] = share * np.minimum(np.minimum(rate, room), affordable)
        price_high[:, j] = trigger
        price_low[:, j] = trigger * (1.0 - band)
    if first.release is not None:
        rate = np.array([float(r.release.rate) for r in reserves])  # type: ignore[union-attr]
        available = share * np.minimum(rate, stock / years)
        if first.release.trigger_price is not None:
            lo = np.array([float(r.release.trigger_price) for r in reserves])  # type: ignore[union-attr, arg-type]
            hi = lo * (1.0 + band)
        else:
            shortfall = np.array([state.get("last_shortfall", 0.0) for state in states])
            threshold = np.array([float(r.release.shortfall_trigger or 0.0) for r in reserves])  # type: ignore[union-attr]
            available = np.where(shortfall < threshold, 0.0, available)
            lo = np.zeros(len(reserves))
            hi = np.full(len(reserves), 0.01 * pctx0.mineral.cal.price_scale)
        if first.sectors is not None:
            available = np.minimum(available, np.array([state.get("last_sector_gap", 0.0) for state in states]))
        for j in layout.release:
            quantity[:, j] = available
            price_low[:, j] = lo
            price_high[:, j] = hi
        rhs[:, layout.release_total] = available
    reference = pctx0.mineral.cal.base_consumption * demand_scale
    for state, row in zip(states, reference, strict=True):
        state["reference_demand"] = row


def _settle_alike(reserves: list[Reserve], contexts: list[PeriodContext], outcomes: list[MineralOutcome]) -> None:
    """Settle the reserves of draws whose reserves share their layout, rules, holding cost and payer, on
    arrays with the draws first: purchases and their cost at the location's price, releases and what they
    recover at the drawers' prices (summed left to right over the drawers), the stock carried over, its
    holding cost, the shortfall in the owner's market (and the drawing sectors' gap) that a
    shortfall-triggered release reads next period, and the payer's fiscal cost."""
    first, pctx0 = reserves[0], contexts[0]
    cal = pctx0.mineral.cal
    layout = first._layout(pctx0)
    s, loc = layout.stage, layout.location
    years = pctx0.years
    states = [pctx.my_state() for pctx in contexts]
    G = len(reserves)
    price = np.stack([o.price[s] for o in outcomes])  # (draw, region)
    segment = np.stack([o.segment for o in outcomes])
    zero = np.zeros(G)
    bought, released, spent, recovered = zero, zero, zero, zero
    if first.buy is not None:
        bought = segment[:, layout.buy]
        spent = bought * years * price[:, loc]
    if first.release is not None and len(layout.release):
        levels = segment[:, layout.release]
        terms = levels * years * price[:, layout.drawers]
        released = np.zeros(G)
        recovered = np.zeros(G)
        for i in range(levels.shape[1]):  # left to right, as settle sums them
            released = released + levels[:, i]
            recovered = recovered + terms[:, i]
    previous = np.array([state["stock"] for state in states])
    stock = np.maximum(previous + (bought - released) * years, 0.0)
    holding = float(first.holding_cost) * stock * price[:, loc] * years
    shortfall = gap = None
    if "reference_demand" in states[0]:
        ref = np.stack([state["reference_demand"] for state in states])  # (draw, region, sector)
        consumption = np.stack([o.consumption for o in outcomes])
        demand = ref[:, loc].sum(axis=1)
        got = consumption[:, loc].sum(axis=1)
        shortfall = np.where(demand > 0, np.maximum(0.0, demand - got) / np.where(demand > 0, demand, 1.0), 0.0)
        if first.sectors is not None:
            cols = pctx0.mineral.sector_indices(first.sectors)
            rows, columns = block_index(layout.drawers, cols)
            block = (slice(None), rows, columns)
            gap = np.maximum(ref[block] - consumption[block], 0.0).reshape(G, -1).sum(axis=1)
    stage = cal.stages[s]
    location = cal.regions[loc]
    payer = first.payer or location
    for g, (state, pctx) in enumerate(zip(states, contexts, strict=True)):
        state["stock"] = float(stock[g])
        state["spent"] += float(spent[g])
        if shortfall is not None:
            state["last_shortfall"] = float(shortfall[g])
            if gap is not None:
                state["last_sector_gap"] = float(gap[g])
        ledger = pctx.ledger
        ledger.add("reserve_purchase", float(bought[g]), region=location, stage=stage)
        ledger.add("reserve_release", float(released[g]), region=location, stage=stage)
        ledger.add("reserve_stock", float(stock[g]), region=location, stage=stage)
        ledger.add("reserve_spent", float(spent[g]), region=payer)
        ledger.add("reserve_recovered", float(recovered[g]), region=payer)
        ledger.add("reserve_holding_cost", float(holding[g]), region=payer)
        ledger.add("fiscal_cost", float(spent[g] - recovered[g] + holding[g]), region=payer)
