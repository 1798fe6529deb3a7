"""Tariffs and export taxes: per-unit wedges on routes, by importer, exporter, mineral and stage.

An ad valorem rate is converted to a per-unit wedge at the reference price: the base-year market price of
the stage in the importing region (a CIF basis) for tariffs, and the base-year producer price in the
exporting region (an FOB basis) for export taxes. A preferential rate applies where importer and exporter
are both members of a named bloc. A negative export tax is an export subsidy: its cost is the exporter's
fiscal cost. Domestic routes are never taxed. Revenue accrues to the importer (tariff) or exporter (tax).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from critmin.core.arrays import block_index
from critmin.core.specs import PricePerT, Rate
from critmin.policy.base import Instrument, PeriodContext
from critmin.policy.blocs import Selector
from critmin.policy.effects import MineralOutcome, stack_outcomes, whole_batch_field


class _RouteWedge(Instrument):
    importer: Selector = Field(default="all", description="Importing regions or blocs")
    exporter: Selector = Field(default="all", description="Exporting regions or blocs")
    stages: list[str] | None = Field(default=None, description="Stages covered (default: all)")
    rate: Rate | None = Field(default=None, description="Ad valorem rate, e.g. '25%'")
    per_unit: PricePerT | None = Field(default=None, description="Per-unit rate, e.g. '5 USD/kg'")
    preferential_bloc: str | None = Field(default=None, description="Bloc whose internal trade pays the lower rate")
    preferential_rate: Rate | None = Field(default=None, description="Ad valorem rate inside the bloc")
    preferential_per_unit: PricePerT | None = Field(default=None, description="Per-unit rate inside the bloc")

    @model_validator(mode="after")
    def _one_rate(self) -> _RouteWedge:
        if (self.rate is None) == (self.per_unit is None):
            raise ValueError("give exactly one of 'rate' (ad valorem) or 'per_unit'")
        if self.preferential_bloc is None and (
            self.preferential_rate is not None or self.preferential_per_unit is not None
        ):
            raise ValueError("a preferential rate needs 'preferential_bloc'")
        return self

    def selectors(self) -> dict[str, Selector]:
        out: dict[str, Selector] = {"importer": self.importer, "exporter": self.exporter}
        if self.preferential_bloc is not None:
            out["preferential_bloc"] = self.preferential_bloc
        return out

    def _reference(self, pctx: PeriodContext) -> np.ndarray:
        """Reference price per (stage, origin, destination) for ad valorem conversion."""
        raise NotImplementedError

    def wedge(self, pctx: PeriodContext) -> np.ndarray:
        """The per-unit wedge ``(S, R, R)`` this instrument puts on routes this period (read-only)."""
        cal = pctx.mineral.cal
        S, R = cal.n_stages, cal.n_regions
        share = self.active_share(pctx.start, pctx.end)
        if share == 0.0:
            return np.zeros((S, R, R))
        stages = pctx.mineral.stage_indices(self.stages)
        imp = pctx.regions_at(self.importer)
        exp = pctx.regions_at(self.exporter)
        members = pctx.regions_at(self.preferential_bloc) if self.preferential_bloc is not None else []
        # the same for every draw of a batch whose rates and regions agree (the usual case): build it once
        key = (
            type(self),
            id(cal),
            share,
            tuple(stages),
            tuple(imp),
            tuple(exp),
            tuple(members),
            self.rate,
            self.per_unit,
            self.preferential_rate,
            self.preferential_per_unit,
        )
        hit = pctx.shared.get(key)
        if hit is None:
            hit = self._build_wedge(pctx, share, stages, imp, exp, members)
            hit.flags.writeable = False
            pctx.shared[key] = hit
        return hit

    def _build_wedge(
        self, pctx: PeriodContext, share: float, stages: list[int], imp: list[int], exp: list[int], members: list[int]
    ) -> np.ndarray:
        cal = pctx.mineral.cal
        S, R = cal.n_stages, cal.n_regions
        w = np.zeros((S, R, R))
        ref = self._reference(pctx)
        base = ref * self.rate if self.rate is not None else np.full_like(ref, float(self.per_unit or 0.0))
        mask = np.zeros((R, R), dtype=bool)
        mask[block_index(exp, imp)] = True
        np.fill_diagonal(mask, False)
        for s in stages:
            w[s][mask] = base[s][mask]
        if self.preferential_bloc is not None:
            inside = np.zeros((R, R), dtype=bool)
            inside[block_index(members, members)] = True
            inside &= mask
            if self.preferential_rate is not None:
                pref = ref * self.preferential_rate
            else:
                pref = np.full_like(ref, float(self.preferential_per_unit or 0.0))
            for s in stages:
                w[s][inside] = pref[s][inside]
        return w * share

    def apply(self, pctx: PeriodContext) -> None:
        w = self.wedge(pctx)
        pctx.my_state()["wedge"] = w
        assert pctx.inputs.route_wedge is not None
        pctx.inputs.route_wedge += w

    @classmethod
    def apply_batch(cls, instruments: Sequence[Instrument], contexts: Sequence[PeriodContext]) -> None:
        """:meth:`apply` for a batch: where every draw holds the same instrument in the same market (its rates
        not drawn, the usual case) the wedge is built once and added to every draw's row of the batch's
        array at once (the same numbers); else draw by draw."""
        if not cls.alike(instruments, contexts):
            super().apply_batch(instruments, contexts)
            return
        first = instruments[0]
        assert isinstance(first, _RouteWedge)
        w = first.wedge(contexts[0])
        for pctx in contexts:
            pctx.my_state()["wedge"] = w
        whole = whole_batch_field([pctx.inputs for pctx in contexts], "route_wedge")
        if whole is not None:
            whole += w
            return
        for pctx in contexts:
            assert pctx.inputs.route_wedge is not None
            pctx.inputs.route_wedge += w

    @classmethod
    def _revenue(cls, wedge: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """Per-region revenue per year of ``wedge`` on ``flow`` (``(..., S, R, R)``, any leading axes)."""
        raise NotImplementedError

    def _book(self, pctx: PeriodContext, revenue: np.ndarray) -> None:
        """Write a period's per-region revenue (negative: a subsidy's cost) to the ledger."""
        raise NotImplementedError

    def settle(self, pctx: PeriodContext, outcome: MineralOutcome) -> None:
        w = pctx.my_state().get("wedge")
        if w is None:
            return
        self._book(pctx, self._revenue(w, outcome.flow) * pctx.years)

    @classmethod
    def settle_batch(
        cls, instruments: Sequence[Instrument], contexts: Sequence[PeriodContext], outcomes: Sequence[MineralOutcome]
    ) -> None:
        """:meth:`settle` for a batch: where every draw's wedge is the one :meth:`apply_batch` shared, the
        revenue of all draws in one product (the same numbers); else draw by draw."""
        wedges = [pctx.my_state().get("wedge") for pctx in contexts]
        first = wedges[0]
        if first is None or any(w is not first for w in wedges) or any(p.years != contexts[0].years for p in contexts):
            super().settle_batch(instruments, contexts, outcomes)
            return
        revenue = cls._revenue(first, stack_outcomes(outcomes, "flow")) * contexts[0].years
        for inst, pctx, row in zip(instruments, contexts, revenue, strict=True):
            assert isinstance(inst, _RouteWedge)
            inst._book(pctx, row)


class Tariff(_RouteWedge):
    """An import tariff: importers pay per tonne on routes from the exporters (revenue to the importer)."""

    kind: Literal["tariff"] = "tariff"

    def _reference(self, pctx: PeriodContext) -> np.ndarray:
        cal = pctx.mineral.cal
        return np.broadcast_to(cal.base_price[:, None, :], (cal.n_stages, cal.n_regions, cal.n_regions))

    @classmethod
    def _revenue(cls, wedge: np.ndarray, flow: np.ndarray) -> np.ndarray:
        return np.asarray((wedge * flow).sum(axis=(-3, -2)))  # by importer

    def _book(self, pctx: PeriodContext, revenue: np.ndarray) -> None:
        regions = pctx.mineral.regions
        for d in np.flatnonzero(revenue):  # the ledger keeps no zeros
            pctx.ledger.add("tariff_revenue", revenue[d], region=regions[d])


class ExportTax(_RouteWedge):
    """An export tax (negative: an export subsidy) paid by exporters on routes to the importers."""

    kind: Literal["export_tax"] = "export_tax"

    def _reference(self, pctx: PeriodContext) -> np.ndarray:
        cal = pctx.mineral.cal
        return np.broadcast_to(cal.base_origin_price[:, :, None], (cal.n_stages, cal.n_regions, cal.n_regions))

    @classmethod
    def _revenue(cls, wedge: np.ndarray, flow: np.ndarray) -> np.ndarray:
        return np.asarray((wedge * flow).sum(axis=(-3, -1)))  # by exporter

    def _book(self, pctx: PeriodContext, revenue: np.ndarray) -> None:
        regions = pctx.mineral.regions
        for o in np.flatnonzero(revenue):  # the ledger keeps no zeros
            region = regions[o]
            if revenue[o] >= 0:
                pctx.ledger.add("tariff_revenue", revenue[o], region=region)
            else:
                pctx.ledger.add("fiscal_cost", -revenue[o], region=region)
                pctx.ledger.add("export_subsidy", -revenue[o], region=region)
