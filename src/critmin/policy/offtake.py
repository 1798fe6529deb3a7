"""Offtake contracts: a buyer takes a volume from a seller at a contract price over a term.

The volume is a lower bound on the route from seller to buyer (scaled by the share of the period in
force). With ``take_or_pay`` (the default) the volume is always taken; without it the buyer takes it only
while the buyer's market price in the previous period was at or above the contract price (otherwise it
buys on the market). The transfer reported is ``(contract price - buyer's market price) * volume taken``:
positive when the buyer pays more than the market. An export ban on the route overrides the contract
(force majeure): the lower bound never exceeds the route's upper bound.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from critmin.core.specs import PricePerT, TonnesPerYear
from critmin.policy.base import Instrument, PeriodContext
from critmin.policy.blocs import Selector
from critmin.policy.effects import MineralOutcome


class Offtake(Instrument):
    """A long-term purchase contract between two regions for one stage's product."""

    kind: Literal["offtake"] = "offtake"
    buyer: str = Field(description="Buying region")
    seller: str = Field(description="Selling region")
    stage: str = Field(default="refine", description="Stage of the product bought")
    volume: TonnesPerYear = Field(description="Volume per year")
    contract_price: PricePerT = Field(description="Price paid under the contract")
    take_or_pay: bool = Field(default=True, description="The buyer pays for (and takes) the volume regardless")

    def selectors(self) -> dict[str, Selector]:
        return {"buyer": self.buyer, "seller": self.seller}

    def _indices(self, pctx: PeriodContext) -> tuple[int, int, int] | None:
        cal = pctx.mineral.cal
        if self.stage not in cal.stages:
            return None
        return cal.stages.index(self.stage), cal.regions.index(self.seller), cal.regions.index(self.buyer)

    def apply(self, pctx: PeriodContext) -> None:
        share = self.active_share(pctx.start, pctx.end)
        state = pctx.my_state()
        state["volume"] = 0.0
        idx = self._indices(pctx)
        if share == 0.0 or idx is None:
            return
        s, o, d = idx
        if not self.take_or_pay and pctx.last_price()[s, d] < float(self.contract_price):
            return
        volume = share * float(self.volume)
        state["volume"] = volume
        assert pctx.inputs.route_lower is not None
        pctx.inputs.route_lower[s, o, d] = max(pctx.inputs.route_lower[s, o, d], volume)

    def settle(self, pctx: PeriodContext, outcome: MineralOutcome) -> None:
        idx = self._indices(pctx)
        volume = pctx.my_state().get("volume", 0.0)
        if idx is None or volume == 0.0:
            return
        s, o, d = idx
        taken = min(volume, float(outcome.flow[s, o, d]))
        transfer = (float(self.contract_price) - float(outcome.price[s, d])) * taken * pctx.years
        pctx.ledger.add("offtake_transfer", transfer, region=self.buyer, partner=self.seller)
        pctx.ledger.add("offtake_volume", taken, region=self.buyer, partner=self.seller, stage=self.stage)
