"""Exogenous shocks: capacity outages, demand surges, logistics cost spikes.

Each acts for the share of the period it covers: an outage of share ``x`` for half a year removes ``x/2``
of the year's capacity; a surge of factor ``g`` for a quarter scales demand by ``1 + (g - 1)/4``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from critmin.core.arrays import block_index
from critmin.core.specs import PricePerT, Rate, Share
from critmin.policy.base import Instrument, PeriodContext
from critmin.policy.blocs import Selector


class Outage(Instrument):
    """A share of the capacity of regions at some stages is lost."""

    kind: Literal["outage"] = "outage"
    regions: Selector = Field(description="Regions affected")
    stages: list[str] | None = Field(default=None, description="Stages affected (default: all)")
    share: Share = Field(description="Share of capacity lost")

    def selectors(self) -> dict[str, Selector]:
        return {"regions": self.regions}

    def apply(self, pctx: PeriodContext) -> None:
        f = self.active_share(pctx.start, pctx.end)
        if f == 0.0:
            return
        assert pctx.inputs.capacity is not None
        rows = pctx.regions_at(self.regions)
        for s in pctx.mineral.stage_indices(self.stages):
            pctx.inputs.capacity[s, rows] *= 1.0 - f * self.share


class DemandSurge(Instrument):
    """Demand of some sectors in some regions is scaled by ``factor`` (1.3 = 30% more at every price)."""

    kind: Literal["demand_surge"] = "demand_surge"
    regions: Selector = Field(default="all", description="Regions affected")
    sectors: list[str] | None = Field(default=None, description="Sectors affected (default: all)")
    factor: float = Field(gt=0, description="Demand multiplier while in force")

    def selectors(self) -> dict[str, Selector]:
        return {"regions": self.regions}

    def apply(self, pctx: PeriodContext) -> None:
        f = self.active_share(pctx.start, pctx.end)
        if f == 0.0:
            return
        assert pctx.inputs.demand_scale is not None
        rows = pctx.regions_at(self.regions)
        cols = pctx.mineral.sector_indices(self.sectors)
        pctx.inputs.demand_scale[block_index(rows, cols)] *= 1.0 + f * (self.factor - 1.0)


class LogisticsSpike(Instrument):
    """Shipping costs on routes between regions rise by a per-unit amount or a share of the price."""

    kind: Literal["logistics"] = "logistics"
    origins: Selector = Field(default="all")
    destinations: Selector = Field(default="all")
    stages: list[str] | None = Field(default=None, description="Stages affected (default: all)")
    per_unit: PricePerT | None = Field(default=None, description="Added cost per tonne")
    rate: Rate | None = Field(default=None, description="Added cost as a share of the base-year price")

    @model_validator(mode="after")
    def _one(self) -> LogisticsSpike:
        if (self.per_unit is None) == (self.rate is None):
            raise ValueError("give exactly one of 'per_unit' or 'rate'")
        return self

    def selectors(self) -> dict[str, Selector]:
        return {"origins": self.origins, "destinations": self.destinations}

    def apply(self, pctx: PeriodContext) -> None:
        f = self.active_share(pctx.start, pctx.end)
        if f == 0.0:
            return
        cal = pctx.mineral.cal
        assert pctx.inputs.route_cost_shift is not None
        org = pctx.regions_at(self.origins)
        dst = pctx.regions_at(self.destinations)
        mask = np.zeros((cal.n_regions, cal.n_regions), dtype=bool)
        mask[block_index(org, dst)] = True
        np.fill_diagonal(mask, False)
        for s in pctx.mineral.stage_indices(self.stages):
            add = float(self.per_unit) if self.per_unit is not None else float(self.rate or 0.0) * cal.base_price[s]
            extra = np.broadcast_to(add, (cal.n_regions,)) if np.ndim(add) else np.full(cal.n_regions, add)
            pctx.inputs.route_cost_shift[s] += f * np.where(mask, extra[None, :], 0.0)
