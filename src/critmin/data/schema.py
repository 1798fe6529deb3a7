"""The format of a world folder: the files, their columns, and the validated specification of ``world.yaml``.

A world is a folder with ``world.yaml`` and CSV tables. Every table row carries a ``source`` (citation ids
from ``sources.csv``, ``;``-separated, or free text where a world ships no ``sources.csv``) and a ``basis``
(``sourced``, ``derived`` or ``assumption``). The column layout of each table is declared once here
(:data:`FILES`); :mod:`critmin.data.world` reads every table through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BASES = ("sourced", "derived", "assumption")
HORIZONS = ("short_run", "long_run")
SIDES = ("supply", "demand")
#: Region kinds: a country (ISO 3166 alpha-3), an aggregate of listed countries, the rest of the world.
REGION_KINDS = ("country", "aggregate", "remainder")
#: The region code a price row may use to mean "every region not listed separately".
ANY_REGION = "*"


@dataclass(frozen=True)
class FileSpec:
    """Layout of one table of a world folder.

    Attributes
    ----------
    name
        Logical name (the key in ``world.yaml`` ``files``); the default file is ``<name>.csv``.
    required
        Whether a world must ship the file.
    keys
        Columns that identify a row (unique together).
    numeric
        Columns that must hold a number in every row.
    optional_numeric
        Columns that may be empty but must be numbers where given (ranges ``low``/``high``).
    text
        Columns that must be non-empty in every row (besides ``source`` and ``basis``).
    optional_text
        Columns that may be empty.
    nonnegative
        Numeric columns that must be ``>= 0``.
    values
        The numeric fields each row contributes to ``World.sources`` (provenance of numbers).
    """

    name: str
    required: bool
    keys: tuple[str, ...]
    numeric: tuple[str, ...] = ()
    optional_numeric: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    optional_text: tuple[str, ...] = ()
    nonnegative: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    provenance: bool = True

    @property
    def filename(self) -> str:
        return f"{self.name}.csv"

    @property
    def columns(self) -> tuple[str, ...]:
        cols = (*self.keys, *self.numeric, *self.optional_numeric, *self.text, *self.optional_text)
        if self.provenance:
            cols = (*cols, "source", "basis")
        return tuple(dict.fromkeys(cols))


_RANGE = ("low", "high")

#: Every table a world folder may hold, in reading order.
FILES: dict[str, FileSpec] = {
    spec.name: spec
    for spec in (
        FileSpec("sources", False, ("id",), text=("citation",), optional_text=("note",)),
        FileSpec(
            "regions",
            True,
            ("code",),
            numeric=("lat", "lon"),
            text=("name", "kind"),
            optional_text=("members", "location", "inclusion", "note"),
            values=("lat", "lon"),
        ),
        FileSpec("minerals", True, ("mineral",), text=("name", "quantity_unit"), optional_text=("note",)),
        FileSpec(
            "stages",
            True,
            ("mineral", "stage"),
            numeric=("order",),
            optional_numeric=("yield", *_RANGE),
            optional_text=("product", "note"),
            nonnegative=("yield",),
            values=("yield",),
        ),
        FileSpec("sectors", True, ("mineral", "sector"), text=("stage",), optional_text=("note",)),
        FileSpec(
            "production",
            True,
            ("mineral", "stage", "region"),
            numeric=("quantity_t",),
            optional_text=("note",),
            nonnegative=("quantity_t",),
            values=("quantity_t",),
        ),
        FileSpec(
            "capacity",
            True,
            ("mineral", "stage", "region"),
            numeric=("capacity_t",),
            optional_numeric=_RANGE,
            optional_text=("note",),
            nonnegative=("capacity_t", *_RANGE),
            values=("capacity_t",),
        ),
        FileSpec(
            "prices",
            True,
            ("mineral", "stage", "region"),
            numeric=("price_usd_per_t",),
            optional_numeric=_RANGE,
            optional_text=("note",),
            nonnegative=("price_usd_per_t", *_RANGE),
            values=("price_usd_per_t",),
        ),
        FileSpec(
            "consumption",
            True,
            ("mineral", "stage", "region", "sector"),
            numeric=("quantity_t",),
            optional_text=("note",),
            nonnegative=("quantity_t",),
            values=("quantity_t",),
        ),
        FileSpec(
            "demand_growth",
            True,
            ("mineral", "sector", "start_year", "end_year"),
            numeric=("start_year", "end_year", "annual_growth"),
            optional_numeric=_RANGE,
            optional_text=("note",),
            values=("annual_growth",),
        ),
        FileSpec(
            "elasticities",
            True,
            ("mineral", "side", "key", "horizon"),
            numeric=("value",),
            optional_numeric=_RANGE,
            optional_text=("note",),
            values=("value",),
        ),
        FileSpec(
            "freight",
            False,
            ("mineral", "stage"),
            numeric=("gross_per_contained",),
            optional_numeric=_RANGE,
            text=("mode",),
            optional_text=("note",),
            nonnegative=("gross_per_contained", *_RANGE),
            values=("gross_per_contained",),
        ),
        FileSpec(
            "shares",
            False,
            ("mineral", "stage", "kind", "group", "key"),
            numeric=("share",),
            optional_numeric=_RANGE,
            optional_text=("group", "note"),
            nonnegative=("share", *_RANGE),
            values=("share",),
        ),
        FileSpec(
            "content_factors",
            False,
            ("mineral", "stage", "item"),
            numeric=("factor",),
            optional_numeric=_RANGE,
            text=("unit",),
            optional_text=("note",),
            nonnegative=("factor", *_RANGE),
            values=("factor",),
        ),
        FileSpec(
            "trade",
            False,
            ("mineral", "stage", "exporter", "importer"),
            numeric=("quantity_t",),
            optional_numeric=("observed_t", "year", "gross_t", "value_kusd"),
            optional_text=("hs6", "note"),
            nonnegative=("quantity_t", "observed_t", "gross_t", "value_kusd"),
            values=("quantity_t",),
        ),
        FileSpec(
            "wmd_check",
            False,
            ("mineral", "region"),
            numeric=("wmd_quantity_t",),
            optional_numeric=("wmd_reported_t",),
            optional_text=("wmd_table", "countries", "note"),
            nonnegative=("wmd_quantity_t", "wmd_reported_t"),
            values=("wmd_quantity_t",),
        ),
    )
}


class ProvenancedNumber(BaseModel):
    """A number in ``world.yaml`` with its provenance (and a range where it is a parameter)."""

    model_config = ConfigDict(extra="forbid")

    value: float
    basis: Literal["sourced", "derived", "assumption"]
    source: str = Field(min_length=1)
    low: float | None = None
    high: float | None = None
    note: str = ""

    @model_validator(mode="after")
    def _range(self) -> ProvenancedNumber:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        return self


class FreightMode(BaseModel):
    """Cost parameters of one freight mode."""

    model_config = ConfigDict(extra="forbid")

    base_usd_per_t: ProvenancedNumber
    usd_per_t_km: ProvenancedNumber


class TransportSpec(BaseModel):
    """The distance-based transport cost formula (``world.yaml`` ``transport``)."""

    model_config = ConfigDict(extra="forbid")

    formula: str
    default_mode: str
    distance: str = ""
    route_factor: ProvenancedNumber
    modes: dict[str, FreightMode]

    @model_validator(mode="after")
    def _default_mode(self) -> TransportSpec:
        if self.default_mode not in self.modes:
            raise ValueError(f"default_mode {self.default_mode!r} is not one of {sorted(self.modes)}")
        return self


class SectorSpec(BaseModel):
    """One end-use sector."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""


class WorldSpec(BaseModel):
    """The validated content of ``world.yaml``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    title: str = ""
    description: str = ""
    base_year: int = Field(ge=1900, le=2200)
    horizon: int = Field(ge=1900, le=2300)
    units: dict[str, str] = Field(default_factory=dict)
    sectors: list[SectorSpec] = Field(min_length=1)
    files: dict[str, str] = Field(default_factory=dict)
    trade_unmapped: dict[str, str] = Field(default_factory=dict)
    transport: TransportSpec

    @field_validator("files")
    @classmethod
    def _known_files(cls, files: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(files) - set(FILES))
        if unknown:
            raise ValueError(f"unknown table name(s) {unknown}; known: {sorted(FILES)}")
        return files

    @model_validator(mode="after")
    def _years(self) -> WorldSpec:
        if self.horizon < self.base_year:
            raise ValueError(f"horizon {self.horizon} is before base_year {self.base_year}")
        codes = [s.code for s in self.sectors]
        if len(set(codes)) != len(codes):
            raise ValueError(f"duplicate sector codes in {codes}")
        return self

    def filename(self, table: str) -> str:
        """File name of ``table`` in the world folder."""
        return self.files.get(table, FILES[table].filename)
