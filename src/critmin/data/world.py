"""Load a world: the base-year data of every mineral, validated, as labelled arrays.

A *world* is a folder holding ``world.yaml`` and the CSV tables declared in :mod:`critmin.data.schema`.
The package ships two: ``default`` (eleven minerals, base year 2024, every number sourced or labelled as an
assumption) and ``toy`` (one mineral, three regions, for tests and examples). A user's world in the same
format loads through the same function and the same validation::

    from critmin.data.world import load_world

    world = load_world()  # the embedded default world
    md = world.mineral("ndpr")
    md.production.sel(stage="refine")  # t/yr by region

Every problem in a world folder raises :class:`~critmin.core.errors.DataError` naming the file, the field
(column), the row (counting the header line as row 1) and the reason. Parsed worlds are cached per folder
(and per file modification times), so repeated loads are free.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pycountry
import pydantic
import xarray as xr
import yaml

from critmin.core.errors import DataError
from critmin.core.units import PRICE_UNIT, QUANTITY_UNIT
from critmin.core.yamlio import safe_load
from critmin.data.schema import (
    ANY_REGION,
    BASES,
    FILES,
    HORIZONS,
    REGION_KINDS,
    SIDES,
    FileSpec,
    WorldSpec,
)

__all__ = ["MineralData", "World", "default_world_path", "load_world", "world_path"]

#: Largest relative gap between world output and world use of a stage that still counts as balanced.
MASS_BALANCE_TOLERANCE = 1e-3
#: Shares in one group may exceed 1 by this much (rounding in the files).
SHARE_TOLERANCE = 1e-6
_BUNDLED = ("default", "toy")


def world_path(name: str) -> Path:
    """Folder of a world shipped with the package (``"default"`` or ``"toy"``)."""
    if name not in _BUNDLED:
        raise ValueError(f"no bundled world named {name!r}; bundled: {', '.join(_BUNDLED)}")
    return Path(str(resources.files("critmin.data").joinpath("worlds", name)))


def default_world_path() -> Path:
    """Folder of the embedded default world."""
    return world_path("default")


def load_world(path: str | Path | None = None) -> World:
    """Load and validate a world.

    Parameters
    ----------
    path
        A world folder (holding ``world.yaml``). ``None`` loads the embedded default world.

    Returns
    -------
    World
        The validated world. The same object is returned again while the folder's files are unchanged.

    Raises
    ------
    DataError
        If a file is missing or any value is invalid; the error names the file, the field, the row and the
        reason.
    """
    folder = default_world_path() if path is None else Path(path).expanduser()
    folder = folder.resolve()
    return _load_cached(str(folder), _signature(folder))


def _signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        entries = [(p.name, p.stat()) for p in folder.iterdir() if p.suffix in (".csv", ".yaml", ".yml")]
    except OSError:
        return ()
    return tuple(sorted((name, st.st_mtime_ns, st.st_size) for name, st in entries))


@lru_cache(maxsize=32)
def _load_cached(folder: str, signature: tuple[tuple[str, int, int], ...]) -> World:
    del signature  # part of the cache key only
    return _Loader(Path(folder)).load()


# ==========================================================================================================
# Runtime objects
# ==========================================================================================================


def _da(values: Any, coords: Mapping[str, Any], dims: tuple[str, ...], name: str, unit: str, desc: str) -> xr.DataArray:
    """A labelled array with ``unit`` and ``description`` attributes.

    ``coords`` maps each dimension to its labels. A ``_cache`` entry (a dict) keeps one template array per
    dimension tuple and labels (so one cache serves every mineral of a world); new arrays are shallow copies
    of it with new data, which is much cheaper than building coordinates afresh for each of the many small
    arrays of a world.
    """
    cache = coords.get("_cache")
    key = (dims, tuple(tuple(coords[d]) for d in dims))
    template = cache.get(key) if isinstance(cache, dict) else None
    if template is None:
        built = xr.Coordinates({d: pd.Index(list(coords[d]), dtype=object, name=d) for d in dims})
        template = xr.DataArray(np.zeros(tuple(len(coords[d]) for d in dims)), coords=built, dims=dims)
        if isinstance(cache, dict):
            cache[key] = template
    out = template.copy(deep=False, data=np.asarray(values, dtype=float))
    out.name = name
    out.attrs = {"unit": unit, "description": desc}
    return out


@dataclass(frozen=True)
class MineralData:
    """The base-year data of one mineral, as labelled arrays (built by :meth:`World.mineral`).

    Quantities are tonnes of contained element per year, prices USD per tonne of contained element. Every
    array carries ``attrs["unit"]`` and ``attrs["description"]``.

    Attributes
    ----------
    mineral, name, quantity_unit
        Code, display name and what a tonne of this mineral means (element content).
    stages
        The chain's stages in order (``mine`` first).
    yields
        Output per unit input of each stage after the first.
    production, capacity
        ``(stage, region)``, t/yr; 0 where a region has none. Capacity is at least production.
    consumption
        ``(stage, region, sector)``, t/yr; 0 where a sector does not consume at that stage.
    sector_stage
        The stage each sector consumes at.
    price
        ``(stage, region)``, USD/t: the base-year market price at each node.
    demand_index
        ``(year, region, sector)``: reference demand relative to the base year (1.0 in the base year).
    supply_elasticity, supply_elasticity_long_run
        ``(stage,)``, > 0. Ranges in ``supply_elasticity_range`` and ``supply_elasticity_long_run_range``
        ``(stage, bound)`` with ``bound`` in ``("low", "high")``; NaN where the file gives no range.
    demand_elasticity, demand_elasticity_long_run
        ``(sector,)``, < 0; ranges likewise (``(sector, bound)``).
    trade
        ``(stage, origin, destination)``, t/yr of observed base-year flows; NaN where not observed (an
        unobserved route is missing, not zero; domestic flows are never observed).
    trade_observed_stages
        Stages with at least one observed flow.
    transport_cost
        ``(stage, origin, destination)``, USD per tonne of *contained element*: the world's distance formula
        for the stage's freight mode times the gross tonnes shipped per tonne contained; 0 on the diagonal.
    """

    mineral: str
    name: str
    quantity_unit: str
    stages: tuple[str, ...]
    yields: dict[str, float]
    production: xr.DataArray
    capacity: xr.DataArray
    consumption: xr.DataArray
    sector_stage: dict[str, str]
    price: xr.DataArray
    demand_index: xr.DataArray
    supply_elasticity: xr.DataArray
    supply_elasticity_range: xr.DataArray
    supply_elasticity_long_run: xr.DataArray
    supply_elasticity_long_run_range: xr.DataArray
    demand_elasticity: xr.DataArray
    demand_elasticity_range: xr.DataArray
    demand_elasticity_long_run: xr.DataArray
    demand_elasticity_long_run_range: xr.DataArray
    trade: xr.DataArray
    trade_observed_stages: tuple[str, ...]
    transport_cost: xr.DataArray
    gross_per_contained: dict[str, float] = field(default_factory=dict)
    freight_mode: dict[str, str] = field(default_factory=dict)

    def use(self) -> xr.DataArray:
        """Base-year use at each node ``(stage, region)``: consumption plus input to the next stage, t/yr."""
        use = self.consumption.sum("sector")
        for i, s in enumerate(self.stages[1:], start=1):
            prev = self.stages[i - 1]
            use.loc[{"stage": prev}] = use.sel(stage=prev) + self.production.sel(stage=s) / self.yields[s]
        use.name = "use"
        use.attrs = {"unit": QUANTITY_UNIT, "description": "consumption plus input to the next stage"}
        return use


class World:
    """A validated world: regions, minerals, sectors and every mineral's base-year data.

    Build it with :func:`load_world`. The object is shared by every caller that loads the same folder, so
    treat it as read-only; table accessors return copies.
    """

    def __init__(
        self,
        *,
        path: Path,
        spec: WorldSpec,
        raw: dict[str, _Table],
        regions: tuple[str, ...],
        minerals: tuple[str, ...],
        stages: dict[str, tuple[str, ...]],
    ) -> None:
        self.path = path
        self.spec = spec
        self.name = spec.name
        self.base_year = int(spec.base_year)
        self.horizon = int(spec.horizon)
        self.regions = regions
        self.minerals = minerals
        self.sectors = tuple(s.code for s in spec.sectors)
        self._raw = raw
        self._frames: dict[str, pd.DataFrame] = {}
        self._stages = stages
        self._minerals_cache: dict[str, MineralData] = {}
        self._transport_cache: dict[str, xr.DataArray] = {}
        self._templates: dict[Any, xr.DataArray] = {}  # labelled templates shared by every mineral (see _da)

    def __repr__(self) -> str:
        return (
            f"World({self.name!r}, base_year={self.base_year}, horizon={self.horizon}, "
            f"{len(self.regions)} regions, minerals={list(self.minerals)})"
        )

    # ------------------------------------------------------------------------------------------ tables
    @property
    def region_table(self) -> pd.DataFrame:
        """Regions in model order: code, name, kind, members, lat, lon, location, inclusion, source, basis."""
        df = self._frame("regions").set_index("code").loc[list(self.regions)].reset_index()
        cols = ["code", "name", "kind", "members", "lat", "lon", "location", "inclusion", "source", "basis"]
        return df[[c for c in cols if c in df.columns]].copy()

    def table(self, name: str) -> pd.DataFrame:
        """A copy of one validated table (e.g. ``"shares"``, ``"trade"``, ``"wmd_check"``).

        Raises ``KeyError`` for a table the world does not ship.
        """
        if name not in self._raw:
            raise KeyError(f"world {self.name!r} has no table {name!r}; it has {sorted(self._raw)}")
        return self._frame(name).drop(columns="_row")

    def _frame(self, name: str) -> pd.DataFrame:
        """The validated table ``name`` as a DataFrame (built on first use; a ``_row`` column holds the
        record number in the file)."""
        if name not in self._frames:
            self._frames[name] = self._raw[name].frame()
        return self._frames[name]

    def has_table(self, name: str) -> bool:
        """Whether the world ships table ``name``."""
        return name in self._raw

    def stages_of(self, mineral: str) -> tuple[str, ...]:
        """The ordered stages of ``mineral``."""
        self._check_mineral(mineral)
        return self._stages[mineral]

    @cached_property
    def sources(self) -> pd.DataFrame:
        """Provenance of every number: file, mineral, key, field, value, source, basis, citation, note.

        ``source`` holds citation ids; ``citation`` the full citations from ``sources.csv`` where the world
        ships one. Numbers in ``world.yaml`` (the transport formula) are included.
        """
        cite: dict[str, str] = {}
        if "sources" in self._raw:
            ids = self._raw["sources"]
            cite = dict(zip(ids.get("id"), ids.get("citation"), strict=True))

        def citation(source: str) -> str:
            return " | ".join(cite.get(i.strip(), i.strip()) for i in source.split(";") if i.strip())

        records: list[tuple[str, str, str, str, float, str, str, str]] = []
        for name, table in self._raw.items():
            spec = FILES[name]
            if not spec.values:
                continue
            fname = self.spec.filename(name)
            key_cols = [k for k in spec.keys if k not in spec.values]
            n = len(table)
            minerals = table.cols["mineral"] if "mineral" in table.cols else [""] * n
            notes = table.cols["note"] if "note" in table.cols else [""] * n
            keys = [
                ", ".join(f"{c}={v}" for c, v in zip(key_cols, vals, strict=True) if v != "")
                for vals in zip(*(table.cols[c] for c in key_cols), strict=True)
            ]
            for col in spec.values:
                for i, value in enumerate(table.cols[col]):
                    if not math.isnan(value):
                        records.append(
                            (
                                fname,
                                minerals[i],
                                keys[i],
                                col,
                                value,
                                table.cols["source"][i],
                                table.cols["basis"][i],
                                notes[i],
                            )
                        )
        tr = self.spec.transport
        numbers = [("route_factor", "value", tr.route_factor)]
        for mode, fm in tr.modes.items():
            numbers.append((f"modes.{mode}", "base_usd_per_t", fm.base_usd_per_t))
            numbers.append((f"modes.{mode}", "usd_per_t_km", fm.usd_per_t_km))
        for key, fld, num in numbers:
            records.append(("world.yaml", "", f"transport.{key}", fld, num.value, num.source, num.basis, num.note))
        out = pd.DataFrame(records, columns=["file", "mineral", "key", "field", "value", "source", "basis", "note"])
        out["citation"] = [citation(s) for s in out["source"]]
        return out[["file", "mineral", "key", "field", "value", "source", "basis", "citation", "note"]]

    # ------------------------------------------------------------------------------------------ transport
    @cached_property
    def distance_km(self) -> xr.DataArray:
        """Great-circle distance between the regions' representative points, ``(origin, destination)``, km."""
        reg = self._frame("regions").set_index("code").loc[list(self.regions)]
        lat = np.radians(reg["lat"].to_numpy(dtype=float))
        lon = np.radians(reg["lon"].to_numpy(dtype=float))
        dlat = lat[None, :] - lat[:, None]
        dlon = lon[None, :] - lon[:, None]
        h = np.sin(dlat / 2) ** 2 + np.cos(lat[:, None]) * np.cos(lat[None, :]) * np.sin(dlon / 2) ** 2
        km = 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
        coords = {"origin": self.regions, "destination": self.regions}
        return _da(km, coords, ("origin", "destination"), "distance", "km", "great-circle distance")

    def _transport(self, mode: str) -> xr.DataArray:
        tr = self.spec.transport
        if mode not in tr.modes:
            raise ValueError(f"unknown freight mode {mode!r}; the world has {sorted(tr.modes)}")
        if mode not in self._transport_cache:
            m = tr.modes[mode]
            cost = m.base_usd_per_t.value + m.usd_per_t_km.value * tr.route_factor.value * self.distance_km.values
            np.fill_diagonal(cost, 0.0)
            da = _da(
                cost,
                {"origin": self.regions, "destination": self.regions},
                ("origin", "destination"),
                "transport_cost",
                PRICE_UNIT,
                f"distance-based transport cost ({mode}) per tonne shipped",
            )
            da.attrs.update(formula=tr.formula, mode=mode)
            self._transport_cache[mode] = da
        return self._transport_cache[mode]

    def transport_cost(self, mode: str | None = None) -> xr.DataArray:
        """Distance-based transport cost per tonne of shipped product, ``(origin, destination)``, USD/t.

        ``cost = base_usd_per_t + usd_per_t_km * route_factor * km`` for the freight ``mode`` (default: the
        world's ``default_mode``), 0 on the diagonal. For USD per tonne of contained element of a given
        stage use :attr:`MineralData.transport_cost`.
        """
        return self._transport(mode or self.spec.transport.default_mode).copy()

    # ------------------------------------------------------------------------------------------ minerals
    def _check_mineral(self, mineral: str) -> None:
        if mineral not in self.minerals:
            raise KeyError(f"unknown mineral {mineral!r}; world {self.name!r} has {list(self.minerals)}")

    def mineral(self, mineral: str) -> MineralData:
        """The base-year data of ``mineral`` as labelled arrays (built once, then cached)."""
        self._check_mineral(mineral)
        if mineral not in self._minerals_cache:
            self._minerals_cache[mineral] = self._build_mineral(mineral)
        return self._minerals_cache[mineral]

    @cached_property
    def _records(self) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """Rows of every table with a ``mineral`` column, as dicts, grouped by mineral."""
        out: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for name, table in self._raw.items():
            if "mineral" not in table.cols:
                continue
            names = list(table.cols)
            groups: dict[str, list[dict[str, Any]]] = {}
            for values in zip(*(table.cols[c] for c in names), strict=True):
                rec = dict(zip(names, values, strict=True))
                groups.setdefault(str(rec["mineral"]), []).append(rec)
            out[name] = groups
        return out

    def _rows(self, table: str, mineral: str) -> list[dict[str, Any]]:
        return self._records.get(table, {}).get(mineral, [])

    def _build_mineral(self, m: str) -> MineralData:
        stages = self._stages[m]
        regions, sectors = self.regions, self.sectors
        coords: dict[str, Any] = {
            "stage": stages,
            "region": regions,
            "sector": sectors,
            "origin": regions,
            "destination": regions,
            "bound": ("low", "high"),
            "_cache": self._templates,
        }
        si = {s: i for i, s in enumerate(stages)}
        ri = {r: i for i, r in enumerate(regions)}
        ki = {k: i for i, k in enumerate(sectors)}
        S, R, K = len(stages), len(regions), len(sectors)
        yields = {str(r["stage"]): float(r["yield"]) for r in self._rows("stages", m) if si[str(r["stage"])] > 0}
        minfo = self._rows("minerals", m)[0]

        prod = np.zeros((S, R))
        for r in self._rows("production", m):
            prod[si[r["stage"]], ri[r["region"]]] = r["quantity_t"]
        cap = np.zeros((S, R))
        for r in self._rows("capacity", m):
            cap[si[r["stage"]], ri[r["region"]]] = r["capacity_t"]
        cap = np.maximum(cap, prod)
        cons = np.zeros((S, R, K))
        for r in self._rows("consumption", m):
            cons[si[r["stage"]], ri[r["region"]], ki[r["sector"]]] = r["quantity_t"]
        production = _da(
            prod, coords, ("stage", "region"), "production", QUANTITY_UNIT, f"{m} base-year output of each stage"
        )
        capacity = _da(
            cap,
            coords,
            ("stage", "region"),
            "capacity",
            QUANTITY_UNIT,
            f"{m} base-year capacity (output) of each stage",
        )
        consumption = _da(
            cons,
            coords,
            ("stage", "region", "sector"),
            "consumption",
            QUANTITY_UNIT,
            f"{m} base-year consumption by stage, region and sector",
        )
        sector_stage = {str(r["sector"]): str(r["stage"]) for r in self._rows("sectors", m)}

        price = np.full((S, R), np.nan)
        rows = self._rows("prices", m)
        for r in rows:
            if r["region"] == ANY_REGION:
                price[si[r["stage"]], :] = r["price_usd_per_t"]
        for r in rows:
            if r["region"] != ANY_REGION:
                price[si[r["stage"]], ri[r["region"]]] = r["price_usd_per_t"]
        price_da = _da(
            price, coords, ("stage", "region"), "price", PRICE_UNIT, f"{m} base-year market price at each node"
        )

        # demand index: compound the sector growth rates from the base year to the horizon
        years = np.arange(self.base_year, self.horizon + 1)
        index = np.ones((len(years), K))
        periods = sorted(self._rows("demand_growth", m), key=lambda r: r["start_year"])
        for r in periods:
            k = ki[r["sector"]]
            start, end, g = int(r["start_year"]), int(r["end_year"]), float(r["annual_growth"])
            sel = (years > start) & (years <= end)
            index[sel, k] = index[years == start, k][0] * (1.0 + g) ** (years[sel] - start)
        coords["year"] = years
        demand_index = _da(
            np.broadcast_to(index[:, None, :], (len(years), R, K)).copy(),
            coords,
            ("year", "region", "sector"),
            "demand_index",
            "1",
            f"{m} reference demand relative to {self.base_year} (same path in every region)",
        )

        el = {(r["side"], r["horizon"], r["key"]): r for r in self._rows("elasticities", m)}

        def elastic(side: str, horizon: str, dim: str, keys: tuple[str, ...]) -> tuple[xr.DataArray, xr.DataArray]:
            val = np.array([float(el[(side, horizon, k)]["value"]) for k in keys])
            rng = np.array([[float(el[(side, horizon, k)][b]) for b in ("low", "high")] for k in keys])
            name = f"{side}_elasticity" + ("" if horizon == "short_run" else "_long_run")
            desc = f"{m} {horizon.replace('_', '-')} price elasticity of {side}"
            return (
                _da(val, coords, (dim,), name, "1", desc),
                _da(rng, coords, (dim, "bound"), f"{name}_range", "1", f"{desc}: low and high (NaN: none given)"),
            )

        s_sr, s_sr_rng = elastic("supply", "short_run", "stage", stages)
        s_lr, s_lr_rng = elastic("supply", "long_run", "stage", stages)
        d_sr, d_sr_rng = elastic("demand", "short_run", "sector", sectors)
        d_lr, d_lr_rng = elastic("demand", "long_run", "sector", sectors)

        trade = np.full((S, R, R), np.nan)
        observed_stages: set[str] = set()
        for r in self._rows("trade", m):
            trade[si[r["stage"]], ri[r["exporter"]], ri[r["importer"]]] = r["quantity_t"]
            observed_stages.add(str(r["stage"]))
        trade_da = _da(
            trade,
            coords,
            ("stage", "origin", "destination"),
            "trade",
            QUANTITY_UNIT,
            f"{m} observed base-year bilateral flows (NaN: not observed)",
        )
        observed = tuple(s for s in stages if s in observed_stages)

        fr = {str(r["stage"]): r for r in self._rows("freight", m)}
        gpc = {s: float(fr[s]["gross_per_contained"]) if s in fr else 1.0 for s in stages}
        modes = {s: str(fr[s]["mode"]) if s in fr else self.spec.transport.default_mode for s in stages}
        tc = np.stack([self._transport(modes[s]).values * gpc[s] for s in stages])
        transport = _da(
            tc,
            coords,
            ("stage", "origin", "destination"),
            "transport_cost",
            PRICE_UNIT,
            f"{m} distance-based transport cost per tonne of contained element",
        )
        transport.attrs.update(
            formula=self.spec.transport.formula,
            gross_per_contained={s: gpc[s] for s in stages},
            mode={s: modes[s] for s in stages},
        )
        return MineralData(
            mineral=m,
            name=str(minfo["name"]),
            quantity_unit=str(minfo["quantity_unit"]),
            stages=stages,
            yields=yields,
            production=production,
            capacity=capacity,
            consumption=consumption,
            sector_stage=sector_stage,
            price=price_da,
            demand_index=demand_index,
            supply_elasticity=s_sr,
            supply_elasticity_range=s_sr_rng,
            supply_elasticity_long_run=s_lr,
            supply_elasticity_long_run_range=s_lr_rng,
            demand_elasticity=d_sr,
            demand_elasticity_range=d_sr_rng,
            demand_elasticity_long_run=d_lr,
            demand_elasticity_long_run_range=d_lr_rng,
            trade=trade_da,
            trade_observed_stages=observed,
            transport_cost=transport,
            gross_per_contained=gpc,
            freight_mode=modes,
        )

    # ------------------------------------------------------------------------------------------ display
    def summary(self, mineral: str) -> dict[str, pd.DataFrame]:
        """Tables for display, one per stage: output, share of world, capacity, utilisation, use, price.

        Each table is indexed by region (model order, regions with nothing at that stage left out) and ends
        with a ``World`` row (totals; the price column there is the output-weighted mean).
        """
        md = self.mineral(mineral)
        use = md.use()
        cons = md.consumption.sum("sector")
        out: dict[str, pd.DataFrame] = {}
        for s in md.stages:
            prod = md.production.sel(stage=s).to_series()
            cap = md.capacity.sel(stage=s).to_series()
            c = cons.sel(stage=s).to_series()
            u = use.sel(stage=s).to_series()
            price = md.price.sel(stage=s).to_series()
            df = pd.DataFrame(
                {
                    "production_t": prod,
                    "share_of_world": prod / prod.sum() if prod.sum() > 0 else 0.0,
                    "capacity_t": cap,
                    "utilisation": (prod / cap.where(cap > 0)).fillna(0.0),
                    "consumption_t": c,
                    "use_t": u,
                    "price_usd_per_t": price,
                }
            )
            df = df[(df["production_t"] > 0) | (df["capacity_t"] > 0) | (df["use_t"] > 0)]
            total_p = float(prod.sum())
            world_row = pd.DataFrame(
                {
                    "production_t": [total_p],
                    "share_of_world": [1.0 if total_p > 0 else 0.0],
                    "capacity_t": [float(cap.sum())],
                    "utilisation": [total_p / float(cap.sum()) if cap.sum() > 0 else 0.0],
                    "consumption_t": [float(c.sum())],
                    "use_t": [float(u.sum())],
                    "price_usd_per_t": [float((price * prod).sum() / total_p) if total_p > 0 else float(price.mean())],
                },
                index=["World"],
            )
            df = pd.concat([df, world_row])
            df.index.name = "region"
            df.attrs = {"mineral": mineral, "stage": s, "unit": f"{QUANTITY_UNIT} and {PRICE_UNIT}"}
            out[s] = df
        return out


# ==========================================================================================================
# Loading and validation
# ==========================================================================================================


@dataclass
class _Table:
    """One table as read from CSV: columns as lists (text stripped, numbers as floats), record numbers."""

    name: str
    path: str
    cols: dict[str, list[Any]]
    rows: list[int]  # record number in the file, the header being row 1

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, col: str) -> list[Any]:
        return self.cols[col]

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.cols)
        df["_row"] = self.rows
        return df


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class _Loader:
    """Reads a world folder and checks every rule; one instance per load.

    The tables are small, so the checks run as plain Python loops over columns (faster than pandas
    operations at this size); the validated tables become DataFrames once, at the end.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.tables: dict[str, _Table] = {}

    # ------------------------------------------------------------------------------------------ helpers
    def fail(self, table: str, field: str, reason: str, row: int | None = None) -> DataError:
        return DataError(str(self.folder / self.spec.filename(table)), field, reason, row)

    def check(
        self,
        t: _Table,
        cols: str | tuple[str, ...],
        bad: Callable[..., bool],
        field: str,
        reason: str | Callable[..., str],
    ) -> None:
        """Raise for the first row where ``bad(*values)`` holds; ``reason`` may be a callable of the values."""
        names = (cols,) if isinstance(cols, str) else cols
        for i, values in enumerate(zip(*(t.cols[c] for c in names), strict=True)):
            if bad(*values):
                text = reason(*values) if callable(reason) else reason
                raise self.fail(t.name, field, text, t.rows[i])

    # ------------------------------------------------------------------------------------------ entry
    def load(self) -> World:
        if not self.folder.is_dir():
            raise DataError(str(self.folder), "path", "not a world folder (no such directory)")
        self.spec = self.read_spec()
        for name in FILES:
            table = self.read(name)
            if table is not None:
                self.tables[name] = table
        self.source_ids = set(self.tables["sources"].get("id")) if "sources" in self.tables else None
        for table in self.tables.values():
            self.check_provenance(table)
        self.check_regions()
        self.check_minerals_stages()
        self.check_sectors()
        self.check_quantities()
        self.check_prices()
        self.check_consumption()
        self.check_mass_balance()
        self.check_demand_growth()
        self.check_elasticities()
        self.check_optional()
        return World(
            path=self.folder,
            spec=self.spec,
            raw=self.tables,
            regions=self.regions,
            minerals=self.minerals,
            stages=self.stages,
        )

    def read_spec(self) -> WorldSpec:
        path = self.folder / "world.yaml"
        if not path.is_file():
            raise DataError(str(path), "file", "missing file: a world folder needs world.yaml")
        try:
            with open(path, encoding="utf-8") as fh:
                raw = safe_load(fh)
        except yaml.YAMLError as err:
            raise DataError(str(path), "file", f"not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise DataError(str(path), "file", "world.yaml must hold a mapping")
        try:
            return WorldSpec.model_validate(raw)
        except pydantic.ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise DataError(str(path), loc, first["msg"]) from err

    def read(self, name: str) -> _Table | None:
        spec: FileSpec = FILES[name]
        fname = self.spec.filename(name)
        path = self.folder / fname
        if not path.is_file():
            if spec.required or name in self.spec.files:
                raise DataError(str(path), "file", f"missing file: the world needs {fname} ({name} table)")
            return None
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                records = list(csv.reader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise DataError(str(path), "file", f"cannot read as CSV: {err}") from err
        if not records:
            raise DataError(str(path), "file", "empty file (no header)")
        header = [h.strip() for h in records[0]]
        for col in spec.columns:
            if col not in header:
                raise DataError(str(path), col, f"missing column {col!r}")
        body = [r for r in records[1:] if any(cell.strip() for cell in r)]
        rows = [i + 2 for i, r in enumerate(records[1:]) if any(cell.strip() for cell in r)]
        for r, n in zip(body, rows, strict=True):
            if len(r) != len(header):
                raise DataError(str(path), "file", f"{len(r)} fields where the header has {len(header)}", n)
        cols: dict[str, list[Any]] = {h: [r[j].strip() for r in body] for j, h in enumerate(header)}
        t = _Table(name, str(path), cols, rows)
        numeric = (*spec.numeric, *spec.optional_numeric)
        for col in (*spec.keys, *spec.text):
            if col in numeric or col in spec.optional_text:
                continue
            self.check(t, col, lambda v: v == "", col, "missing value")
        for col in spec.numeric:
            self.check(t, col, lambda v: v == "", col, "missing value (a number is required)")
        for col in numeric:
            self.check(t, col, lambda v: v != "" and _float(v) is None, col, lambda v: f"not a number: {v!r}")
            t.cols[col] = [math.nan if v == "" else float(v) for v in t.cols[col]]
        for col in spec.nonnegative:
            self.check(t, col, lambda v: v < 0, col, lambda v: f"negative value {v:g}")
        if "low" in t.cols and "high" in t.cols:
            self.check(
                t, ("low", "high"), lambda lo, hi: lo > hi, "low", lambda lo, hi: f"range low {lo:g} > high {hi:g}"
            )
        seen: set[tuple[Any, ...]] = set()
        for i, key in enumerate(zip(*(t.cols[k] for k in spec.keys), strict=True)):
            if key in seen:
                raise DataError(
                    str(path),
                    spec.keys[-1],
                    "duplicate key "
                    + ", ".join(
                        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in zip(spec.keys, key, strict=True)
                    ),
                    rows[i],
                )
            seen.add(key)
        return t

    def check_provenance(self, t: _Table) -> None:
        if not FILES[t.name].provenance:
            return
        self.check(t, "source", lambda v: v == "", "source", "missing source (a citation id or reference)")
        self.check(t, "basis", lambda v: v == "", "basis", f"missing basis (one of {', '.join(BASES)})")
        self.check(
            t, "basis", lambda v: v not in BASES, "basis", lambda v: f"basis {v!r} is not one of {', '.join(BASES)}"
        )
        if self.source_ids is not None:
            ids = self.source_ids

            def unknown(s: str) -> list[str]:
                return [i for i in (p.strip() for p in s.split(";")) if i and i not in ids]

            self.check(
                t,
                "source",
                lambda s: bool(unknown(s)),
                "source",
                lambda s: f"unknown source id {unknown(s)[0]!r} (not an id in sources.csv)",
            )

    # ------------------------------------------------------------------------------------------ regions
    def check_regions(self) -> None:
        t = self.tables["regions"]
        self.check(
            t,
            "kind",
            lambda k: k not in REGION_KINDS,
            "kind",
            lambda k: f"kind {k!r} is not one of {', '.join(REGION_KINDS)}",
        )
        self.check(
            t,
            "code",
            lambda c: not _CODE.fullmatch(c),
            "code",
            lambda c: f"region code {c!r} must be upper case letters/digits",
        )
        self.check(
            t,
            ("code", "kind"),
            lambda c, k: k == "country" and not _is_iso3(c),
            "code",
            lambda c, k: (
                f"unknown region code {c!r}: not an ISO 3166 alpha-3 code (pycountry); declare an "
                "aggregate with kind 'aggregate' or 'remainder'"
            ),
        )
        self.check(
            t,
            ("code", "kind"),
            lambda c, k: k != "country" and _is_iso3(c),
            "kind",
            lambda c, k: f"{c!r} is an ISO 3166 country code; an aggregate needs a code of its own",
        )
        self.check(
            t,
            ("kind", "members"),
            lambda k, m: k == "aggregate" and not m,
            "members",
            "an aggregate region lists its members (ISO 3166 alpha-3 codes)",
        )

        def bad_member(members: str) -> str | None:
            return next((c for c in members.split() if not _is_iso3(c)), None)

        self.check(
            t,
            ("kind", "members"),
            lambda k, m: k == "aggregate" and bad_member(m) is not None,
            "members",
            lambda k, m: f"member {bad_member(m)!r} is not an ISO 3166 alpha-3 code (pycountry)",
        )
        countries = {c for c, k in zip(t.get("code"), t.get("kind"), strict=True) if k == "country"}
        self.check(
            t,
            ("kind", "members"),
            lambda k, m: k == "aggregate" and bool(set(m.split()) & countries),
            "members",
            "a member of an aggregate is also a region of its own",
        )
        if sum(k == "remainder" for k in t.get("kind")) > 1:
            raise self.fail("regions", "kind", "more than one remainder region")
        self.check(t, "lat", lambda v: not -90 <= v <= 90, "lat", lambda v: f"latitude {v:g} out of range")
        self.check(t, "lon", lambda v: not -180 <= v <= 180, "lon", lambda v: f"longitude {v:g} out of range")
        codes, kinds = t.get("code"), t.get("kind")
        order = [c for c, k in zip(codes, kinds, strict=True) if k != "remainder"]
        order += [c for c, k in zip(codes, kinds, strict=True) if k == "remainder"]
        self.regions: tuple[str, ...] = tuple(order)
        self.region_set = set(order)

    def check_region_col(self, t: _Table, col: str, allow_any: bool = False) -> None:
        ok = self.region_set | ({ANY_REGION} if allow_any else set())

        def reason(code: str) -> str:
            if _is_iso3(code):
                return (
                    f"region {code!r} is an ISO 3166 code but not a region of this world (regions.csv); "
                    "use its aggregate (e.g. EU or ROW)"
                )
            return (
                f"unknown region code {code!r}: not ISO 3166 alpha-3 (pycountry) and not an aggregate "
                "declared in regions.csv"
            )

        self.check(t, col, lambda c: c not in ok, col, reason)

    # ------------------------------------------------------------------------------------------ minerals
    def check_minerals_stages(self) -> None:
        mins = self.tables["minerals"]
        self.check(
            mins,
            "mineral",
            lambda m: not _MINERAL.fullmatch(m),
            "mineral",
            lambda m: f"mineral code {m!r} must be lower case letters, digits or underscores",
        )
        self.minerals: tuple[str, ...] = tuple(mins.get("mineral"))
        st = self.tables["stages"]
        self.check_mineral_col(st)
        by: dict[str, list[tuple[float, str, float, int]]] = {m: [] for m in self.minerals}
        for m, s, o, y, row in zip(
            st.get("mineral"), st.get("stage"), st.get("order"), st.get("yield"), st.rows, strict=True
        ):
            by[m].append((o, s, y, row))
        stages: dict[str, tuple[str, ...]] = {}
        self.yields: dict[tuple[str, str], float] = {}
        for m in self.minerals:
            items = sorted(by[m])
            if not items:
                raise self.fail("stages", "mineral", f"mineral {m!r} has no stages")
            orders = [o for o, _s, _y, _r in items]
            if orders != [float(i) for i in range(1, len(items) + 1)]:
                raise self.fail(
                    "stages",
                    "order",
                    f"stages of {m!r} must be numbered 1..{len(items)}, got {[f'{o:g}' for o in orders]}",
                    items[0][3],
                )
            for o, s, y, row in items:
                if o > 1 and math.isnan(y):
                    raise self.fail(
                        "stages", "yield", f"stage {s!r} of {m!r} needs a yield (output per unit input)", row
                    )
                if o > 1 and y <= 0:
                    raise self.fail("stages", "yield", f"yield {y:g} must be > 0", row)
                self.yields[(m, s)] = y
            stages[m] = tuple(s for _o, s, _y, _r in items)
        self.stages = stages
        self.stage_pairs = {(m, s) for m, ss in stages.items() for s in ss}
        self.sector_codes = [s.code for s in self.spec.sectors]

    def check_mineral_col(self, t: _Table) -> None:
        known = set(self.minerals)
        self.check(
            t, "mineral", lambda m: m not in known, "mineral", lambda m: f"unknown mineral {m!r} (not in minerals.csv)"
        )

    def check_stage_col(self, t: _Table, col: str = "stage", where: Callable[..., bool] | None = None) -> None:
        self.check_mineral_col(t)
        pairs = self.stage_pairs
        cols = ("mineral", col, "side") if where else ("mineral", col)

        def bad(m: str, s: str, *rest: str) -> bool:
            return (where is None or where(*rest)) and (m, s) not in pairs

        self.check(
            t,
            cols,
            bad,
            col,
            lambda m, s, *rest: f"unknown stage {s!r} for mineral {m!r} (stages: {', '.join(self.stages.get(m, ()))})",
        )

    def check_sector_col(
        self, t: _Table, col: str = "sector", where: Callable[..., bool] | None = None, where_col: str = "side"
    ) -> None:
        known = set(self.sector_codes)
        cols = (col, where_col) if where else (col,)

        def bad(k: str, *rest: str) -> bool:
            return (where is None or where(*rest)) and k not in known

        self.check(
            t,
            cols,
            bad,
            col,
            lambda k, *rest: f"unknown sector {k!r} (world.yaml sectors: {', '.join(self.sector_codes)})",
        )

    def check_sectors(self) -> None:
        t = self.tables["sectors"]
        self.check_stage_col(t)
        self.check_sector_col(t)
        self.sector_stage = {
            (m, k): s for m, k, s in zip(t.get("mineral"), t.get("sector"), t.get("stage"), strict=True)
        }
        for m in self.minerals:
            for k in self.sector_codes:
                if (m, k) not in self.sector_stage:
                    raise self.fail(
                        "sectors",
                        "sector",
                        f"mineral {m!r} has no row for sector {k!r} (every sector needs the stage it consumes at)",
                    )

    # ------------------------------------------------------------------------------------------ quantities
    def check_quantities(self) -> None:
        for name in ("production", "capacity"):
            t = self.tables[name]
            self.check_stage_col(t)
            self.check_region_col(t, "region")
        prod, cap = self.tables["production"], self.tables["capacity"]
        capacity = {
            (m, s, r): (c, row)
            for m, s, r, c, row in zip(
                cap.get("mineral"), cap.get("stage"), cap.get("region"), cap.get("capacity_t"), cap.rows, strict=True
            )
        }
        for m, s, r, q in zip(
            prod.get("mineral"), prod.get("stage"), prod.get("region"), prod.get("quantity_t"), strict=True
        ):
            entry = capacity.get((m, s, r))
            if entry is None:
                if q > 0:
                    raise self.fail("capacity", "capacity_t", f"no capacity for {m}/{s} in {r}, which produces {q:g} t")
                continue
            c, row = entry
            if c < q * (1 - 1e-9):
                raise self.fail(
                    "capacity", "capacity_t", f"capacity {c:g} t is below production {q:g} t ({m}/{s} in {r})", row
                )
        self.production_total: dict[tuple[str, str], float] = {}
        for m, s, q in zip(prod.get("mineral"), prod.get("stage"), prod.get("quantity_t"), strict=True):
            self.production_total[(m, s)] = self.production_total.get((m, s), 0.0) + q

    def check_prices(self) -> None:
        t = self.tables["prices"]
        self.check_stage_col(t)
        self.check_region_col(t, "region", allow_any=True)
        self.check(t, "price_usd_per_t", lambda p: p <= 0, "price_usd_per_t", lambda p: f"price must be > 0, got {p:g}")
        have = set(zip(t.get("mineral"), t.get("stage"), t.get("region"), strict=True))
        for m, ss in self.stages.items():
            for s in ss:
                if (m, s, ANY_REGION) in have:
                    continue
                for r in self.regions:
                    if (m, s, r) not in have:
                        raise self.fail(
                            "prices",
                            "region",
                            f"no price for {m}/{s} in {r} (add a row for it or a '{ANY_REGION}' row for all regions)",
                        )

    def check_consumption(self) -> None:
        t = self.tables["consumption"]
        self.check_stage_col(t)
        self.check_region_col(t, "region")
        self.check_sector_col(t)
        ss = self.sector_stage
        self.check(
            t,
            ("mineral", "sector", "stage"),
            lambda m, k, s: ss[(m, k)] != s,
            "stage",
            lambda m, k, s: f"sector {k!r} of {m!r} consumes at stage {ss[(m, k)]!r} (sectors.csv), not {s!r}",
        )

    def check_mass_balance(self) -> None:
        t = self.tables["consumption"]
        cons: dict[tuple[str, str], float] = {}
        for m, s, q in zip(t.get("mineral"), t.get("stage"), t.get("quantity_t"), strict=True):
            cons[(m, s)] = cons.get((m, s), 0.0) + q
        prod = self.production_total
        for m, ss in self.stages.items():
            for i, s in enumerate(ss):
                out = prod.get((m, s), 0.0)
                c = cons.get((m, s), 0.0)
                nxt = prod.get((m, ss[i + 1]), 0.0) / self.yields[(m, ss[i + 1])] if i + 1 < len(ss) else 0.0
                use = c + nxt
                scale = max(out, use)
                if scale <= 0:
                    continue
                gap = (out - use) / scale
                if abs(gap) > MASS_BALANCE_TOLERANCE:
                    raise self.fail(
                        "consumption",
                        "quantity_t",
                        f"mass balance violated for {m}/{s}: world output {out:,.3f} t but world use {use:,.3f} t "
                        f"(consumption {c:,.3f} t + input to the next stage {nxt:,.3f} t), a gap of {gap:+.2%} "
                        f"(tolerance {MASS_BALANCE_TOLERANCE:.1%})",
                    )

    def check_demand_growth(self) -> None:
        t = self.tables["demand_growth"]
        self.check_mineral_col(t)
        self.check_sector_col(t)
        base, hor = self.spec.base_year, self.spec.horizon
        self.check(
            t, ("start_year", "end_year"), lambda a, b: a >= b, "end_year", lambda a, b: f"period {a:g}-{b:g} is empty"
        )
        self.check(
            t,
            ("start_year", "end_year"),
            lambda a, b: a % 1 != 0 or b % 1 != 0,
            "start_year",
            "years must be whole numbers",
        )
        self.check(
            t, "annual_growth", lambda g: g <= -1, "annual_growth", lambda g: f"annual growth {g:g} is not above -1"
        )
        periods: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        for m, k, a, b, row in zip(
            t.get("mineral"), t.get("sector"), t.get("start_year"), t.get("end_year"), t.rows, strict=True
        ):
            periods.setdefault((m, k), []).append((a, b, row))
        for m in self.minerals:
            for k in self.sector_codes:
                items = sorted(periods.get((m, k), []))
                if not items:
                    raise self.fail("demand_growth", "sector", f"no demand growth for {m}/{k} ({base}-{hor})")
                if items[0][0] != base or items[-1][1] != hor:
                    raise self.fail(
                        "demand_growth",
                        "start_year",
                        f"growth periods of {m}/{k} must run from the base "
                        f"year {base} to the horizon {hor}, got {items[0][0]:g}-{items[-1][1]:g}",
                        items[0][2],
                    )
                for (_a1, b1, _r1), (a2, _b2, r2) in itertools.pairwise(items):
                    if a2 != b1:
                        raise self.fail(
                            "demand_growth",
                            "start_year",
                            f"growth periods of {m}/{k} must be "
                            f"contiguous (a period ends {b1:g}, the next starts {a2:g})",
                            r2,
                        )

    def check_elasticities(self) -> None:
        t = self.tables["elasticities"]
        self.check_mineral_col(t)
        self.check(
            t, "side", lambda v: v not in SIDES, "side", lambda v: f"side {v!r} is not one of {', '.join(SIDES)}"
        )
        self.check(
            t,
            "horizon",
            lambda v: v not in HORIZONS,
            "horizon",
            lambda v: f"horizon {v!r} is not one of {', '.join(HORIZONS)}",
        )
        self.check_stage_col(t, "key", where=lambda side: side == "supply")
        self.check_sector_col(t, "key", where=lambda side: side == "demand")
        self.check(
            t,
            ("side", "value", "mineral", "key"),
            lambda side, v, m, k: side == "supply" and v <= 0,
            "value",
            lambda side, v, m, k: f"supply elasticity of {m}/{k} must be > 0, got {v:g}",
        )
        self.check(
            t,
            ("side", "value", "mineral", "key"),
            lambda side, v, m, k: side == "demand" and v >= 0,
            "value",
            lambda side, v, m, k: f"demand elasticity of {m}/{k} must be < 0, got {v:g}",
        )
        self.check(
            t,
            ("value", "low", "high"),
            lambda v, lo, hi: v < lo or v > hi,
            "value",
            lambda v, lo, hi: f"value {v:g} lies outside its range [{lo:g}, {hi:g}]",
        )
        have = set(zip(t.get("mineral"), t.get("side"), t.get("key"), t.get("horizon"), strict=True))
        for m in self.minerals:
            for s in self.stages[m]:
                for h in HORIZONS:
                    if (m, "supply", s, h) not in have:
                        raise self.fail("elasticities", "value", f"no {h} supply elasticity for {m}/{s}")
            for k in self.sector_codes:
                for h in HORIZONS:
                    if (m, "demand", k, h) not in have:
                        raise self.fail("elasticities", "value", f"no {h} demand elasticity for {m}/{k}")

    def check_optional(self) -> None:
        if "trade" in self.tables:
            t = self.tables["trade"]
            self.check_stage_col(t)
            self.check_region_col(t, "exporter")
            self.check_region_col(t, "importer")
            self.check(
                t,
                ("exporter", "importer"),
                lambda a, b: a == b,
                "importer",
                "exporter equals importer: domestic flows are not trade",
            )
        if "freight" in self.tables:
            t = self.tables["freight"]
            self.check_stage_col(t)
            modes = sorted(self.spec.transport.modes)
            self.check(
                t,
                "mode",
                lambda v: v not in modes,
                "mode",
                lambda v: f"freight mode {v!r} is not one of {', '.join(modes)} (world.yaml)",
            )
            self.check(t, "gross_per_contained", lambda v: v <= 0, "gross_per_contained", "must be > 0")
        if "shares" in self.tables:
            self.check_shares(self.tables["shares"])
        if "content_factors" in self.tables:
            t = self.tables["content_factors"]
            self.check_stage_col(t)
            self.check(t, "factor", lambda v: v <= 0, "factor", "must be > 0")
        if "wmd_check" in self.tables:
            t = self.tables["wmd_check"]
            self.check_mineral_col(t)
            self.check_region_col(t, "region")

    def check_shares(self, t: _Table) -> None:
        self.check_stage_col(t)
        self.check(t, "share", lambda v: v > 1 + SHARE_TOLERANCE, "share", lambda v: f"share {v:g} is above 1")
        regions, sectors = self.region_set, set(self.sector_codes)
        self.check(
            t,
            ("kind", "key"),
            lambda kind, key: kind.endswith("_region") and key not in regions,
            "key",
            lambda kind, key: f"unknown region code {key!r} (not a region of this world)",
        )
        self.check(
            t,
            ("kind", "key"),
            lambda kind, key: kind == "end_use" and key not in sectors,
            "key",
            lambda kind, key: f"unknown sector {key!r} (world.yaml sectors)",
        )
        sums: dict[tuple[str, str, str, str], tuple[float, int]] = {}
        for m, s, kind, group, v, row in zip(
            t.get("mineral"), t.get("stage"), t.get("kind"), t.get("group"), t.get("share"), t.rows, strict=True
        ):
            total, _ = sums.get((m, s, kind, group), (0.0, row))
            sums[(m, s, kind, group)] = (total + v, row)
        for (m, s, kind, group), (total, row) in sums.items():
            if total > 1 + SHARE_TOLERANCE:
                raise self.fail(
                    "shares",
                    "share",
                    f"shares of {m}/{s} ({kind}{', ' + group if group else ''}) sum to {total:.6g}, more than 1",
                    row,
                )


_CODE = re.compile(r"[A-Z][A-Z0-9_]*")
_MINERAL = re.compile(r"[a-z][a-z0-9_]*")


@lru_cache(maxsize=512)
def _is_iso3(code: str) -> bool:
    """Whether ``code`` is an ISO 3166-1 alpha-3 country code (per pycountry)."""
    return pycountry.countries.get(alpha_3=code) is not None
