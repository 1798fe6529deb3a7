"""The hooks through which instruments act on a period problem, in (stage, region, sector) positions.

The policy layer fills these; the market builder (``critmin.market.build``) turns them into the bounds,
wedges, side constraints and segments of the engine's problem. Structure (segments, constraints) is fixed
for a run; numbers (``PeriodInputs``) change every period and draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from critmin.core.arrays import FloatArray, IntArray, stack_rows

NodeKind = Literal["origin", "use"]


@dataclass(frozen=True)
class SegmentSpec:
    """A price-responsive segment at a node: ``buy`` withdraws product, ``sell`` injects it, ``process``
    turns stage ``s-1`` product at the region's use node into stage ``s`` product at its origin node.

    Per instance it has a quantity (upper bound) and a price band ``[price_low, price_high]`` over which it
    goes from nothing to the full quantity: a buyer buys all of it at ``price_low`` or below and nothing at
    ``price_high`` or above; a seller sells nothing at ``price_low`` or below and all at ``price_high``; a
    processor responds to its margin the same way. A band is never narrower than a millionth of the price
    scale, which keeps the period problem strictly convex.
    """

    name: str
    stage: int
    region: int
    side: Literal["buy", "sell", "process"]
    node: NodeKind = "use"


@dataclass(frozen=True)
class ConstraintSpec:
    """A side constraint ``sum coef * level <= rhs`` over a set of routes and segments.

    ``routes`` holds ``(stage, origin, destination, coef)``; ``segments`` holds ``(segment name, coef)``.
    """

    name: str
    routes: tuple[tuple[int, int, int, float], ...] = ()
    segments: tuple[tuple[str, float], ...] = ()


@dataclass
class PeriodInputs:
    """What varies between instances of one mineral: demand, capacity, and the instruments' hooks.

    Every field defaults to the calibrated base year. Shapes: ``S`` stages, ``R`` regions, ``K`` sectors.
    """

    demand_scale: FloatArray | None = None  # (R, K) multiplies base-year demand at every price
    capacity: FloatArray | None = None  # (S, R) output capacity, t/yr
    supply_cost_shift: FloatArray | None = None  # (S, R) added to the marginal cost / processing cost
    supply_lower: FloatArray | None = None  # (S, R) must-produce output (e.g. a CfD-protected producer)
    route_wedge: FloatArray | None = None  # (S, R, R) per-unit policy wedge on routes, USD/t
    route_cost_shift: FloatArray | None = None  # (S, R, R) logistics cost change, USD/t
    route_lower: FloatArray | None = None  # (S, R, R) e.g. offtake volumes
    route_upper: FloatArray | None = None  # (S, R, R) e.g. bans (0) and licence shares
    injection_use: FloatArray | None = None  # (S, R) fixed volume into use nodes (must-run release)
    segment_quantity: FloatArray | None = None  # (n_segments,)
    segment_price_low: FloatArray | None = None  # (n_segments,)
    segment_price_high: FloatArray | None = None  # (n_segments,)
    constraint_rhs: FloatArray | None = None  # (n_constraints,)
    #: Where the arrays are rows of a batch's arrays: those arrays (by field), this draw's row, and every
    #: draw's view of its row (by field), as first handed out.
    batch: tuple[dict[str, FloatArray], int, dict[str, list[FloatArray]]] | None = field(
        default=None, repr=False, compare=False
    )


def batch_rows(inputs: Sequence[PeriodInputs], name: str) -> tuple[FloatArray, IntArray] | None:
    """The batch's array of field ``name`` and each draw's row in it, when every draw's array is still its row
    of that one array (as :func:`~critmin.policy.base.full_inputs_batch` sets them up; an instrument may have
    replaced one). Else None."""
    first = inputs[0].batch
    if first is None:
        return None
    arrays, _, views = first
    whole = arrays.get(name)
    if whole is None:
        return None
    mine = views[name]
    rows = np.empty(len(inputs), dtype=np.intp)
    for b, inp in enumerate(inputs):
        batch = inp.batch
        if batch is None or batch[0] is not arrays or getattr(inp, name) is not mine[batch[1]]:
            return None  # another batch's row, or an array an instrument put in its place
        rows[b] = batch[1]
    return whole, rows


def rows_in_order(whole: FloatArray, rows: IntArray) -> bool:
    """Whether ``rows`` (from :func:`batch_rows`) are all of ``whole``'s rows, in order."""
    return whole.shape[0] == rows.size and bool(np.array_equal(rows, np.arange(rows.size)))


def whole_batch_field(inputs: Sequence[PeriodInputs], name: str) -> FloatArray | None:
    """The batch's array of field ``name`` when ``inputs`` are all its rows, in order (:func:`batch_rows`):
    writing into it writes each draw's field. Else None."""
    found = batch_rows(inputs, name)
    if found is None or not rows_in_order(*found):
        return None
    return found[0]


@dataclass(frozen=True)
class MineralOutcome:
    """One instance's equilibrium in (stage, region, sector) arrays, engine units."""

    price: FloatArray  # (S, R) use-node prices, USD/t
    origin_price: FloatArray  # (S, R) origin-node prices, USD/t
    production: FloatArray  # (S, R) output, t/yr (existing capacity and projects)
    processing_input: FloatArray  # (S, R) input of processors (0 at stage 0)
    flow: FloatArray  # (S, R, R) shipments origin -> destination
    consumption: FloatArray  # (R, K)
    segment: FloatArray  # (n_segments,) levels of the segments
    disposal: FloatArray  # (S, R) product disposed of (stored or discarded) at a zero price
    rent: FloatArray  # (n_constraints,) side-constraint duals, USD/t
    #: ``(arrays, b)`` where the outcome was read with its batch (``arrays[name][b]`` is field ``name``):
    #: lets :func:`stack_outcomes` hand out the batch's array instead of stacking its rows again
    batch: tuple[Mapping[str, FloatArray], int] | None = field(default=None, compare=False, repr=False)

    def use(self) -> FloatArray:
        """Deliveries into each use node ``(S, R)``: the sum over origins of the flows."""
        return np.asarray(self.flow.sum(axis=1))


def stack_outcomes(outcomes: Sequence[MineralOutcome], name: str) -> FloatArray:
    """Field ``name`` of ``outcomes`` as one array with the outcomes first, for reading (do not write into
    it): where the outcomes are every instance of one batch read together, in order, the batch's own array
    (found from their ``batch`` tags, without looking at memory); else :func:`stack_rows` of the fields."""
    first = outcomes[0].batch
    if first is not None:
        arrays = first[0]
        whole = arrays[name]
        if whole.shape[0] == len(outcomes) and all(
            o.batch is not None and o.batch[0] is arrays and o.batch[1] == b for b, o in enumerate(outcomes)
        ):
            return whole
    return stack_rows([getattr(o, name) for o in outcomes])
