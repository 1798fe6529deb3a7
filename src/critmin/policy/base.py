"""What every instrument shares: dates, the minerals and stages it covers, and the hooks it implements.

An instrument is a validated spec (pydantic). At run time the simulation asks each instrument, for each
mineral it covers:

- ``structure(mctx)``: the segments and side constraints it adds to the mineral's problem (fixed for a run);
- ``apply(pctx)``: its effect on one period's numbers (bounds, wedges, capacity, demand, segments);
- ``refine(pctx, outcome)``: for instruments whose effect depends on the equilibrium itself (the variable
  levy of a reference-price floor, a budget cap), update the effect and return how much it moved;
- ``settle(pctx, outcome)``: its accounting after the period clears (payments, revenues, stocks).

Runtime state (stocks, money, projects) lives in ``pctx.state[instrument id]``, never in the spec.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from critmin.core.arrays import FloatArray
from critmin.core.specs import Date
from critmin.policy.blocs import Bloc, Selector, check_selector, midpoint, resolve
from critmin.policy.effects import ConstraintSpec, MineralOutcome, PeriodInputs, SegmentSpec

if TYPE_CHECKING:
    from critmin.data.calibrate import CalibratedMineral


class Instrument(BaseModel):
    """Fields shared by every instrument. Subclasses set ``kind`` to a literal."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    name: str | None = Field(default=None, description="Label used in results; defaults to kind and position")
    start: Date | None = Field(default=None, description="First day in force (default: from the start)")
    end: Date | None = Field(default=None, description="First day no longer in force (default: never ends)")
    minerals: list[str] | Literal["all"] = Field(default="all", description="Minerals covered")
    enabled: bool = Field(default=True, description="False switches the instrument off (an uncertain event)")
    description: str = ""
    sources: list[str] = Field(default_factory=list, description="Citations for the parameters")

    @model_validator(mode="after")
    def _check_dates(self) -> Instrument:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self

    # -- identity and coverage ---------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return self.name or self.kind

    def covers(self, mineral: str) -> bool:
        return self.minerals == "all" or mineral in self.minerals

    def selectors(self) -> dict[str, Selector]:
        """The region selectors of this instrument, by field name (for validation)."""
        return {}

    def check(
        self, regions: list[str], blocs: Mapping[str, Bloc], minerals: Mapping[str, tuple[str, ...]]
    ) -> tuple[str, str] | None:
        """Return ``(field, reason)`` if the instrument names something the world or scenario lacks."""
        for fname, sel in self.selectors().items():
            reason = check_selector(sel, regions, blocs)
            if reason:
                return fname, reason
        if self.minerals != "all":
            for m in self.minerals:
                if m not in minerals:
                    return "minerals", f"unknown mineral {m!r}; known: {', '.join(minerals)}"
        stages = getattr(self, "stages", None)
        if stages:
            for m, st in minerals.items():
                if self.covers(m):
                    for s in stages:
                        if s not in st and self.minerals != "all":
                            return "stages", f"mineral {m!r} has no stage {s!r}; stages: {', '.join(st)}"
        return None

    def active_share(self, start: dt.date, end: dt.date) -> float:
        """The share of the period ``[start, end)`` during which the instrument is in force."""
        if not self.enabled:
            return 0.0
        lo = max(start, self.start) if self.start else start
        hi = min(end, self.end) if self.end else end
        if hi <= lo:
            return 0.0
        return (hi - lo).days / (end - start).days

    # -- hooks (defaults do nothing) ---------------------------------------------------------------------
    def structure(self, mctx: MineralContext) -> tuple[list[SegmentSpec], list[ConstraintSpec]]:
        return [], []

    def apply(self, pctx: PeriodContext) -> None:
        return None

    @classmethod
    def apply_batch(cls, instruments: Sequence[Instrument], contexts: Sequence[PeriodContext]) -> None:
        """``apply`` for the draws of a batch: ``instruments[b]`` (the same instrument in every draw, its
        drawn values aside) acts on ``contexts[b]``. Instruments whose per-draw work is small numpy
        operations override this to do it once for the whole batch, with the same numbers."""
        for instrument, pctx in zip(instruments, contexts, strict=True):
            instrument.apply(pctx)

    @staticmethod
    def alike(
        instruments: Sequence[Instrument], contexts: Sequence[PeriodContext], fields: tuple[str, ...] | None = None
    ) -> bool:
        """Whether every draw of a batch holds the same instrument (no value of it drawn; or only the named
        ``fields`` the same) in the same market (the same calibrated mineral, regions and blocs): what it
        builds from those alone is then the same for every draw."""
        first, mctx = instruments[0], contexts[0].mineral
        cal, content = mctx.cal, mctx.content_id()
        if not all(pctx.mineral.cal is cal and pctx.mineral.content_id() == content for pctx in contexts):
            return False
        if fields is None:
            values = first.__dict__
            return all(inst is first or inst.__dict__ == values for inst in instruments)
        chosen = [getattr(first, name) for name in fields]
        return all(inst is first or [getattr(inst, name) for name in fields] == chosen for inst in instruments)

    def refine(self, pctx: PeriodContext, outcome: MineralOutcome) -> float:
        return 0.0

    @classmethod
    def refine_batch(
        cls, instruments: Sequence[Instrument], contexts: Sequence[PeriodContext], outcomes: Sequence[MineralOutcome]
    ) -> FloatArray:
        """``refine`` for the draws of a batch (``instruments[b]`` refines ``contexts[b]`` on ``outcomes[b]``),
        as :meth:`apply_batch` is to ``apply``; returns each draw's change (0 where it has settled)."""
        return np.array(
            [inst.refine(pctx, outcome) for inst, pctx, outcome in zip(instruments, contexts, outcomes, strict=True)],
            dtype=np.float64,
        )

    def settle(self, pctx: PeriodContext, outcome: MineralOutcome) -> None:
        return None

    @classmethod
    def settle_batch(
        cls, instruments: Sequence[Instrument], contexts: Sequence[PeriodContext], outcomes: Sequence[MineralOutcome]
    ) -> None:
        """``settle`` for the draws of a batch (``instruments[b]`` settles ``contexts[b]`` on ``outcomes[b]``),
        as :meth:`apply_batch` is to ``apply``: overridden where once for the whole batch is faster, with the
        same numbers."""
        for instrument, pctx, outcome in zip(instruments, contexts, outcomes, strict=True):
            instrument.settle(pctx, outcome)

    @classmethod
    def acts_after_solving(cls) -> tuple[bool, bool]:
        """Whether the kind has a ``refine`` and a ``settle`` of its own (the defaults do nothing, and a
        batch skips them)."""
        found = _ACTS_AFTER_SOLVING.get(cls)
        if found is None:
            found = (
                cls.refine is not Instrument.refine,
                (
                    cls.settle is not Instrument.settle
                    or cls.settle_batch.__func__ is not Instrument.settle_batch.__func__  # type: ignore[attr-defined]
                ),
            )
            _ACTS_AFTER_SOLVING[cls] = found
        return found


#: :meth:`Instrument.acts_after_solving` by kind.
_ACTS_AFTER_SOLVING: dict[type, tuple[bool, bool]] = {}


#: Resolved selectors by (selector, date, regions, content of the blocs), shared by every context in a process.
_RESOLVED: dict[tuple[Any, ...], list[int]] = {}
#: How many entries :data:`_RESOLVED` holds before it starts afresh.
_RESOLVED_SIZE = 100_000
#: A number for each content of regions and blocs seen (hashing the content once per context, not per lookup).
_CONTENT_IDS: dict[tuple[Any, ...], int] = {}
_NEXT_CONTENT_ID = itertools.count()


def _content_id(content: tuple[Any, ...]) -> int:
    """The number of a content of regions and blocs (the same content, the same number while remembered)."""
    found = _CONTENT_IDS.get(content)
    if found is None:
        if len(_CONTENT_IDS) >= 1_000:
            _CONTENT_IDS.clear()  # numbers are never reused, so what was resolved under old ones stays right
        found = _CONTENT_IDS[content] = next(_NEXT_CONTENT_ID)
    return found


def _blocs_content(blocs: Mapping[str, Bloc]) -> tuple[Any, ...]:
    """Everything :func:`~critmin.policy.blocs.resolve` reads of ``blocs``, as a hashable value."""
    return tuple(
        (name, tuple(b.members), tuple(sorted(b.joins.items())), tuple(sorted(b.leaves.items())))
        for name, b in sorted(blocs.items())
    )


@dataclass
class MineralContext:
    """What an instrument may read about one mineral for a whole run."""

    cal: CalibratedMineral
    blocs: Mapping[str, Bloc]
    instrument_id: str = ""
    #: Resolved selectors by (selector, date): blocs are fixed for a run, and instruments ask every period.
    _resolved: dict[tuple[str | tuple[str, ...], dt.date], list[int]] = field(
        default_factory=dict, repr=False, compare=False
    )
    #: The number of the content of ``blocs`` and the region list (:func:`_content_id`), part of the key to
    #: :data:`_RESOLVED` (found on first use).
    _content: int | None = field(default=None, repr=False, compare=False)

    @property
    def regions(self) -> tuple[str, ...]:
        return self.cal.regions

    def stage_indices(self, stages: list[str] | None, default: str | None = None) -> list[int]:
        """Indices of named stages present for this mineral (all stages when ``stages`` is None)."""
        if stages is None:
            if default is None:
                return list(range(self.cal.n_stages))
            stages = [default]
        if stages == ["last"]:
            return [self.cal.n_stages - 1]
        return [self.cal.stages.index(s) for s in stages if s in self.cal.stages]

    def sector_indices(self, sectors: list[str] | None) -> list[int]:
        if sectors is None:
            return list(range(len(self.cal.sectors)))
        return [self.cal.sectors.index(s) for s in sectors if s in self.cal.sectors]

    def content_id(self) -> int:
        """A number for the content of this context's regions and blocs: two contexts with the same number
        resolve every selector alike (found once per context)."""
        if self._content is None:
            self._content = _content_id((self.cal.regions, _blocs_content(self.blocs)))
        return self._content

    def regions_at(self, selector: Selector, date: dt.date) -> list[int]:
        """Indices of the regions ``selector`` names on ``date`` (a fresh list; resolved once per date)."""
        key = (selector if isinstance(selector, str) else tuple(selector), date)
        hit = self._resolved.get(key)
        if hit is None:
            # every draw of an ensemble and every instrument has its own context, but their blocs are
            # mostly the same: share what was resolved by content
            shared = (key, self.content_id())
            hit = _RESOLVED.get(shared)
            if hit is None:
                hit = resolve(selector, self.cal.regions, self.blocs, date)
                if len(_RESOLVED) >= _RESOLVED_SIZE:
                    _RESOLVED.clear()
                _RESOLVED[shared] = hit
            self._resolved[key] = hit
        return list(hit)

    def segment_name(self, suffix: str) -> str:
        return f"{self.instrument_id}/{self.cal.mineral}/{suffix}"


@dataclass
class Ledger:
    """Money and stock records of one period, keyed by variable and labels (summed on insertion)."""

    values: dict[tuple[str, str, str, str, str], float] = field(default_factory=lambda: defaultdict(float))

    def add(
        self, variable: str, value: float, *, region: str = "", partner: str = "", stage: str = "", sector: str = ""
    ) -> None:
        if value != 0.0 and math.isfinite(value):
            self.values[(variable, stage, region, partner, sector)] += float(value)

    def set(
        self, variable: str, value: float, *, region: str = "", partner: str = "", stage: str = "", sector: str = ""
    ) -> None:
        self.values[(variable, stage, region, partner, sector)] = float(value)


@dataclass
class PeriodContext:
    """One period of one mineral: the numbers instruments write, and what they may read."""

    mineral: MineralContext
    period: int | str
    start: dt.date
    end: dt.date
    inputs: PeriodInputs
    previous: MineralOutcome | None
    state: dict[str, Any]
    segment_index: Mapping[str, int]
    constraint_index: Mapping[str, int]
    ledger: Ledger
    expected_price: FloatArray  # (S, R) adaptive expectation of use-node prices
    instrument_id: str = ""
    #: Results shared by the draws of one batch for this mineral and period, under keys that hold everything
    #: the result depends on (an instrument's numbers that do not differ between draws are built once).
    shared: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def years(self) -> float:
        """Length of the period in years (calendar months / 12: a year is exactly 1, a quarter 0.25)."""
        return period_years(self.start, self.end)

    @cached_property
    def mid(self) -> dt.date:
        return midpoint(self.start, self.end)

    def regions_at(self, selector: Selector) -> list[int]:
        return self.mineral.regions_at(selector, self.mid)

    def my_state(self) -> dict[str, Any]:
        return self.state.setdefault(self.instrument_id, {})

    def last_price(self) -> FloatArray:
        """Use-node prices of the previous period (base-year prices before the first)."""
        return self.previous.price if self.previous is not None else self.mineral.cal.base_price

    def last_flow(self) -> FloatArray:
        return self.previous.flow if self.previous is not None else self.mineral.cal.base_flow


def period_years(start: dt.date, end: dt.date) -> float:
    """Length of ``[start, end)`` in years, counted in calendar months (a year is exactly 1)."""
    return (end.year - start.year) + (end.month - start.month) / 12.0 + (end.day - start.day) / 365.25


def full_inputs(cal: CalibratedMineral, n_segments: int, n_constraints: int) -> PeriodInputs:
    """Period inputs with every array allocated at its neutral value (nothing changes the base year)."""
    return full_inputs_batch([cal], n_segments, n_constraints)[0]


def full_inputs_batch(cals: Sequence[CalibratedMineral], n_segments: int, n_constraints: int) -> list[PeriodInputs]:
    """:func:`full_inputs` for a batch of draws (one calibrated mineral each), as rows of one array per field.

    Each draw's arrays are views of a row of the batch's array, so whoever builds the batch's instances reads
    the whole block at once (:func:`critmin.market.build.build_instances` recognises rows of one array).
    """
    first = cals[0]
    B, S, R, K = len(cals), first.n_stages, first.n_regions, len(first.sectors)
    same = all(cal is first for cal in cals)
    capacity = np.repeat(first.capacity[None], B, axis=0) if same else np.stack([cal.capacity for cal in cals])
    price_high = np.empty((B, n_segments))
    price_high[:] = np.array([cal.price_scale for cal in cals], dtype=np.float64)[:, None]
    arrays = {
        "demand_scale": np.ones((B, R, K)),
        "capacity": capacity,
        "supply_cost_shift": np.zeros((B, S, R)),
        "supply_lower": np.zeros((B, S, R)),
        "route_wedge": np.zeros((B, S, R, R)),
        "route_cost_shift": np.zeros((B, S, R, R)),
        "route_lower": np.zeros((B, S, R, R)),
        "route_upper": np.full((B, S, R, R), np.inf),
        "injection_use": np.zeros((B, S, R)),
        "segment_quantity": np.zeros((B, n_segments)),
        "segment_price_low": np.zeros((B, n_segments)),
        "segment_price_high": price_high,
        "constraint_rhs": np.full((B, n_constraints), np.inf),
    }
    rows = {name: list(values) for name, values in arrays.items()}  # each draw's view of its row
    return [PeriodInputs(**{name: views[b] for name, views in rows.items()}, batch=(arrays, b, rows)) for b in range(B)]
