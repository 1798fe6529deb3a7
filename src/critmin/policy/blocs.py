"""Blocs (named sets of regions whose members join and leave on dates) and region selectors.

A selector names regions wherever an instrument needs them: a region code (``"CHN"``), a bloc name
(``"club"``), the complement of either (``"not club"``), ``"all"``, or a list of these (their union).
Membership is read at the middle of a period: a region that joins in February counts for that year.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from critmin.core.specs import Date

Selector = str | list[str]


class Bloc(BaseModel):
    """A named set of regions; ``members`` belong from the start, ``joins``/``leaves`` change it on dates."""

    model_config = ConfigDict(extra="forbid")

    members: list[str] = Field(default_factory=list, description="Members from the start of the run")
    joins: dict[str, Date] = Field(default_factory=dict, description="Region -> date it joins")
    leaves: dict[str, Date] = Field(default_factory=dict, description="Region -> date it leaves")
    description: str = ""
    sources: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Bloc:
        dup = {r for r in self.members if self.members.count(r) > 1}
        if dup:
            raise ValueError(f"members listed twice: {', '.join(sorted(dup))}")
        return self

    def all_regions(self) -> set[str]:
        """Every region that is a member at some date."""
        return set(self.members) | set(self.joins) | set(self.leaves)

    def members_at(self, date: dt.date) -> set[str]:
        """Members on ``date``."""
        out = set()
        for region in self.all_regions():
            joined = region in self.members or (region in self.joins and self.joins[region] <= date)
            if region in self.joins and region not in self.members and self.joins[region] > date:
                joined = False
            left = region in self.leaves and self.leaves[region] <= date
            if joined and not left:
                out.add(region)
        return out


def selector_terms(selector: Selector) -> list[str]:
    """The terms of a selector as a list of strings."""
    return [selector] if isinstance(selector, str) else list(selector)


def check_selector(selector: Selector, regions: Sequence[str], blocs: Mapping[str, Bloc]) -> str | None:
    """Return a reason if ``selector`` names something unknown, else ``None``."""
    known = set(regions) | set(blocs) | {"all"}
    for term in selector_terms(selector):
        name = term[4:].strip() if term.startswith("not ") else term.strip()
        if name not in known:
            return (
                f"unknown region or bloc {name!r}; regions: {', '.join(regions)}; blocs: {', '.join(blocs) or '(none)'}"
            )
    return None


def resolve(selector: Selector, regions: Sequence[str], blocs: Mapping[str, Bloc], date: dt.date) -> list[int]:
    """Indices (into ``regions``) of the regions a selector names on ``date``, in region order."""
    chosen: set[str] = set()
    for term in selector_terms(selector):
        negate = term.startswith("not ")
        name = term[4:].strip() if negate else term.strip()
        if name == "all":
            names = set(regions)
        elif name in blocs:
            names = blocs[name].members_at(date) & set(regions)
        elif name in regions:
            names = {name}
        else:
            raise KeyError(name)
        chosen |= (set(regions) - names) if negate else names
    return [i for i, r in enumerate(regions) if r in chosen]


def midpoint(start: dt.date, end: dt.date) -> dt.date:
    """The middle of a period ``[start, end)``."""
    return start + (end - start) / 2


def membership_table(
    blocs: Mapping[str, Bloc], regions: Sequence[str], dates: Iterable[dt.date]
) -> dict[str, list[list[bool]]]:
    """Membership of each bloc per date and region (for results)."""
    out: dict[str, list[list[bool]]] = {}
    for name, bloc in blocs.items():
        out[name] = [[r in bloc.members_at(d) for r in regions] for d in dates]
    return out
