"""Layer 3: the instruments of the contest, as validated specs that turn themselves into the engine's hooks.

One module per instrument family: ``trade`` (tariffs, export taxes), ``controls`` (export controls,
hoarding), ``floors`` (CfD and reference-price floors), ``offtake``, ``reserve``, ``investment``
(projects, joint investments, permitting reform), ``shocks``; ``blocs`` for blocs and region selectors.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from critmin.policy.controls import ExportControl, Hoarding
from critmin.policy.floors import CfdFloor, ReferencePriceFloor
from critmin.policy.investment import PermittingReform, Projects
from critmin.policy.offtake import Offtake
from critmin.policy.reserve import Reserve
from critmin.policy.shocks import DemandSurge, LogisticsSpike, Outage
from critmin.policy.trade import ExportTax, Tariff

AnyInstrument = Annotated[
    Tariff
    | ExportTax
    | ExportControl
    | Hoarding
    | CfdFloor
    | ReferencePriceFloor
    | Offtake
    | Reserve
    | Projects
    | PermittingReform
    | Outage
    | DemandSurge
    | LogisticsSpike,
    Field(discriminator="kind"),
]

#: The order in which instruments act within a period: shocks set capacity and demand, trade measures and
#: controls set bounds and wedges, floors register the prices they protect before projects decide, contracts
#: and reserves come last.
APPLY_ORDER: dict[str, int] = {
    "outage": 0,
    "demand_surge": 0,
    "logistics": 0,
    "tariff": 1,
    "export_tax": 1,
    "export_control": 2,
    "hoarding": 2,
    "cfd": 3,
    "reference_price": 3,
    "permitting_reform": 4,
    "projects": 5,
    "offtake": 6,
    "reserve": 7,
}

__all__ = [
    "APPLY_ORDER",
    "AnyInstrument",
    "CfdFloor",
    "DemandSurge",
    "ExportControl",
    "ExportTax",
    "Hoarding",
    "LogisticsSpike",
    "Offtake",
    "Outage",
    "PermittingReform",
    "Projects",
    "ReferencePriceFloor",
    "Reserve",
    "Tariff",
]
