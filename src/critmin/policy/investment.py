"""Investment: a pipeline of projects, joint investments, and permitting reform.

Each project adds capacity at one stage in one region. A project *starts* in the first period in which the
expected price of its product in its region (adaptive expectations of the use-node price, see
``critmin.simulate``), or the floor of a price-floor instrument that protects producers of that stage in
that region, reaches its incentive price. A *joint* project (public financing) starts on its date whatever
the price. After its lead time (shortened by any permitting reform in force in its region when it starts)
it delivers, ramping up linearly over ``ramp_up`` years. It produces along its own supply segment: nothing
at or below its unit cost, its full available capacity at ``unit_cost * (1 + cost_band)`` or above. A
mining project sells ore at its region's origin node; a processing project buys the previous stage's
product at its region's use node.

Public support (``support``, money) is counted as the payer's fiscal cost in the period the project starts.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from critmin.core.specs import Date, Money, PricePerT, Rate, Share, TonnesPerYear, Years
from critmin.policy.base import Instrument, MineralContext, PeriodContext
from critmin.policy.blocs import Selector
from critmin.policy.effects import ConstraintSpec, MineralOutcome, SegmentSpec

#: A project's unit (operating) cost as a share of its incentive price, when not given (assumption: the
#: incentive price covers capital at a 15% IRR on top of cash costs; range 0.5-0.8).
DEFAULT_UNIT_COST_SHARE = 0.65


class Project(BaseModel):
    """One capacity project."""

    model_config = ConfigDict(extra="forbid")

    name: str
    mineral: str
    region: str
    stage: str
    capacity: TonnesPerYear = Field(description="Output capacity at full ramp-up")
    incentive_price: PricePerT | None = Field(default=None, description="Price that triggers the start")
    unit_cost: PricePerT | None = Field(default=None, description="Marginal cost (default: share of incentive)")
    lead_time: Years = Field(default=4.0, description="Years from start to first output")
    ramp_up: Years = Field(default=2.0, description="Years from first output to full capacity")
    joint: bool = Field(default=False, description="Publicly financed: starts on 'start_date' whatever the price")
    start_date: Date | None = Field(default=None, description="Start date of a joint investment")
    support: Money = Field(default=0.0, description="Public money committed at the start")
    payer: str | None = Field(default=None, description="Region paying the support (default: the project's)")
    source: str = ""

    @model_validator(mode="after")
    def _check(self) -> Project:
        if self.joint and self.start_date is None:
            raise ValueError("a joint investment needs 'start_date'")
        if not self.joint and self.incentive_price is None:
            raise ValueError("a project that is not joint needs 'incentive_price'")
        if self.unit_cost is None and self.incentive_price is None:
            raise ValueError("give 'unit_cost' or 'incentive_price'")
        return self

    def cost(self) -> float:
        if self.unit_cost is not None:
            return float(self.unit_cost)
        return DEFAULT_UNIT_COST_SHARE * float(self.incentive_price or 0.0)


class Projects(Instrument):
    """A pipeline of capacity projects (market-driven and joint)."""

    kind: Literal["projects"] = "projects"
    projects: list[Project] = Field(description="The projects")
    cost_band: Rate = Field(default=0.2, description="Price band over which a project ramps its output")

    def selectors(self) -> dict[str, Selector]:
        return {f"projects.{i}.region": p.region for i, p in enumerate(self.projects)}

    def covers(self, mineral: str) -> bool:
        return any(p.mineral == mineral for p in self.projects) and super().covers(mineral)

    def _mine(self, mctx: MineralContext) -> list[tuple[int, Project]]:
        return [(i, p) for i, p in enumerate(self.projects) if p.mineral == mctx.cal.mineral]

    def structure(self, mctx: MineralContext) -> tuple[list[SegmentSpec], list[ConstraintSpec]]:
        segments = []
        for i, p in self._mine(mctx):
            if p.stage not in mctx.cal.stages:
                raise ValueError(f"project {p.name}: mineral {p.mineral} has no stage {p.stage!r}")
            s = mctx.cal.stages.index(p.stage)
            r = mctx.cal.regions.index(p.region)
            side: Literal["sell", "process"] = "sell" if s == 0 else "process"
            segments.append(SegmentSpec(mctx.segment_name(f"project{i}"), s, r, side, node="origin"))
        return segments, []

    def _placed(self, pctx: PeriodContext) -> list[tuple[int, Project, int, int, int]]:
        """This mineral's projects with their stage, region and segment indices (fixed for a run, so found
        once per run)."""
        state = pctx.my_state()
        placed = state.get("placed")
        if placed is None:
            cal = pctx.mineral.cal
            placed = [
                (
                    i,
                    p,
                    cal.stages.index(p.stage),
                    cal.regions.index(p.region),
                    pctx.segment_index[pctx.mineral.segment_name(f"project{i}")],
                )
                for i, p in self._mine(pctx.mineral)
            ]
            state["placed"] = placed
        return placed

    def apply(self, pctx: PeriodContext) -> None:
        state = pctx.my_state()
        started: dict[int, float] = state.setdefault("started", {})
        floors = pctx.state.get("__floors__", {})
        reforms = pctx.state.get("__permitting__", [])
        inputs = pctx.inputs
        assert inputs.segment_quantity is not None and inputs.segment_price_low is not None
        assert inputs.segment_price_high is not None
        new: list[int] = []
        t0, t1 = _year_fraction(pctx.start), _year_fraction(pctx.end)
        for i, p, s, r, j in self._placed(pctx):
            if i not in started and self.enabled:
                go = False
                if p.joint:
                    go = p.start_date is not None and p.start_date < pctx.end
                elif self.active_share(pctx.start, pctx.end) > 0:
                    expected = max(float(pctx.expected_price[s, r]), floors.get((s, r), 0.0))
                    go = expected >= float(p.incentive_price or 0.0)
                if go:
                    begin = p.start_date if (p.joint and p.start_date and p.start_date > pctx.start) else pctx.start
                    lead = float(p.lead_time)
                    for reform in reforms:
                        lead = reform.shorten(lead, p.region, begin, pctx)
                    started[i] = _year_fraction(begin) + lead
                    new.append(i)
            online = started.get(i)
            available = 0.0
            if online is not None:
                # average availability over the period: linear ramp from `online` over `ramp_up` years
                available = float(p.capacity) * _ramp_share(t0, t1, online, float(p.ramp_up))
            cost = p.cost()
            inputs.segment_quantity[j] = available
            inputs.segment_price_low[j] = cost
            inputs.segment_price_high[j] = cost * (1.0 + float(self.cost_band))
        state["new"] = new

    def settle(self, pctx: PeriodContext, outcome: MineralOutcome) -> None:
        state = pctx.my_state()
        cal = pctx.mineral.cal
        for i in state.get("new", []):
            p = self.projects[i]
            if p.support:
                pctx.ledger.add("fiscal_cost", float(p.support), region=p.payer or p.region)
                pctx.ledger.add("investment_support", float(p.support), region=p.payer or p.region)
            pctx.ledger.add("projects_started", 1.0, region=p.region, stage=p.stage)
        for _, p, s, _, j in self._placed(pctx):
            level = float(outcome.segment[j])
            if s != 0:
                level *= cal.yields[s]
            pctx.ledger.add("project_output", level, region=p.region, stage=p.stage)


class PermittingReform(Instrument):
    """Lead times of projects starting in the regions while in force are multiplied by ``lead_time_factor``
    (the aim of the Critical Mineral Dominance Act)."""

    kind: Literal["permitting_reform"] = "permitting_reform"
    regions: Selector = Field(description="Regions whose permitting is reformed")
    lead_time_factor: Share = Field(description="Multiplier on lead times, e.g. 0.6")

    def selectors(self) -> dict[str, Selector]:
        return {"regions": self.regions}

    def apply(self, pctx: PeriodContext) -> None:
        reforms = pctx.state.setdefault("__permitting__", [])
        if self not in reforms:
            reforms.append(self)

    def shorten(self, lead: float, region: str, begin: dt.date, pctx: PeriodContext) -> float:
        if not self.enabled:
            return lead
        in_force = (self.start is None or self.start <= begin) and (self.end is None or begin < self.end)
        if not in_force:
            return lead
        names = {pctx.mineral.cal.regions[i] for i in pctx.mineral.regions_at(self.regions, begin)}
        return lead * float(self.lead_time_factor) if region in names else lead


def _year_fraction(date: dt.date) -> float:
    start = dt.date(date.year, 1, 1)
    return date.year + (date - start).days / ((dt.date(date.year + 1, 1, 1) - start).days)


def _ramp_share(t0: float, t1: float, online: float, ramp: float) -> float:
    """Mean over ``[t0, t1)`` of ``clip((t - online) / ramp, 0, 1)`` (a step at ``online`` if ramp is 0)."""
    if t1 <= online:
        return 0.0
    if ramp <= 0:
        return (t1 - max(t0, online)) / (t1 - t0)

    def integral(t: float) -> float:
        # integral of clip((u - online)/ramp, 0, 1) du from -inf to t
        if t <= online:
            return 0.0
        if t <= online + ramp:
            return (t - online) ** 2 / (2 * ramp)
        return ramp / 2 + (t - online - ramp)

    return (integral(t1) - integral(t0)) / (t1 - t0)
