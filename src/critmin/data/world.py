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

from collections.abc import Mapping
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
    return xr.DataArray(
        values, coords={d: list(coords[d]) for d in dims}, dims=dims, name=name,
        attrs={"unit": unit, "description": desc},
    )


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
        tables: dict[str, pd.DataFrame],
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
        self._tables = tables
        self._stages = stages
        self._minerals_cache: dict[str, MineralData] = {}
        self._transport_cache: dict[str, xr.DataArray] = {}

    def __repr__(self) -> str:
        return (
            f"World({self.name!r}, base_year={self.base_year}, horizon={self.horizon}, "
            f"{len(self.regions)} regions, minerals={list(self.minerals)})"
        )

    # ------------------------------------------------------------------------------------------ tables
    @property
    def region_table(self) -> pd.DataFrame:
        """Regions in model order: code, name, kind, members, lat, lon, location, inclusion, source, basis."""
        df = self._tables["regions"].set_index("code").loc[list(self.regions)].reset_index()
        cols = ["code", "name", "kind", "members", "lat", "lon", "location", "inclusion", "source", "basis"]
        return df[[c for c in cols if c in df.columns]].copy()

    def table(self, name: str) -> pd.DataFrame:
        """A copy of one validated table (e.g. ``"shares"``, ``"trade"``, ``"wmd_check"``).

        Raises ``KeyError`` for a table the world does not ship.
        """
        if name not in self._tables:
            raise KeyError(f"world {self.name!r} has no table {name!r}; it has {sorted(self._tables)}")
        return self._tables[name].drop(columns="_row").copy()

    def has_table(self, name: str) -> bool:
        """Whether the world ships table ``name``."""
        return name in self._tables

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
        frames = []
        for name, df in self._tables.items():
            spec = FILES[name]
            if not spec.values:
                continue
            key_cols = [k for k in spec.keys if k not in spec.values]
            key = df[key_cols].astype(str).apply(
                lambda r, cols=key_cols: ", ".join(f"{c}={v}" for c, v in zip(cols, r, strict=True) if v), axis=1
            ) if len(df) else pd.Series(dtype=str)
            for col in spec.values:
                part = pd.DataFrame(
                    {
                        "file": self.spec.filename(name),
                        "mineral": df["mineral"] if "mineral" in df else "",
                        "key": key,
                        "field": col,
                        "value": df[col],
                        "source": df["source"],
                        "basis": df["basis"],
                        "note": df["note"] if "note" in df else "",
                    }
                )
                frames.append(part[part["value"].notna()])
        rows = []
        tr = self.spec.transport
        rows.append(("route_factor", "value", tr.route_factor))
        for mode, fm in tr.modes.items():
            rows.append((f"modes.{mode}", "base_usd_per_t", fm.base_usd_per_t))
            rows.append((f"modes.{mode}", "usd_per_t_km", fm.usd_per_t_km))
        frames.append(
            pd.DataFrame(
                {
                    "file": "world.yaml",
                    "mineral": "",
                    "key": [f"transport.{k}" for k, _f, _p in rows],
                    "field": [f for _k, f, _p in rows],
                    "value": [p.value for _k, _f, p in rows],
                    "source": [p.source for _k, _f, p in rows],
                    "basis": [p.basis for _k, _f, p in rows],
                    "note": [p.note for _k, _f, p in rows],
                }
            )
        )
        out = pd.concat(frames, ignore_index=True)
        if "sources" in self._tables:
            cite = dict(zip(self._tables["sources"]["id"], self._tables["sources"]["citation"], strict=True))
            out["citation"] = out["source"].map(
                lambda s: " | ".join(cite.get(i.strip(), i.strip()) for i in str(s).split(";") if i.strip())
            )
        else:
            out["citation"] = out["source"]
        return out[["file", "mineral", "key", "field", "value", "source", "basis", "citation", "note"]]

    # ------------------------------------------------------------------------------------------ transport
    @cached_property
    def distance_km(self) -> xr.DataArray:
        """Great-circle distance between the regions' representative points, ``(origin, destination)``, km."""
        reg = self._tables["regions"].set_index("code").loc[list(self.regions)]
        lat = np.radians(reg["lat"].to_numpy(dtype=float))
        lon = np.radians(reg["lon"].to_numpy(dtype=float))
        dlat = lat[None, :] - lat[:, None]
        dlon = lon[None, :] - lon[:, None]
        h = np.sin(dlat / 2) ** 2 + np.cos(lat[:, None]) * np.cos(lat[None, :]) * np.sin(dlon / 2) ** 2
        km = 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
        coords = {"origin": self.regions, "destination": self.regions}
        return _da(km, coords, ("origin", "destination"), "distance", "km", "great-circle distance")

    def transport_cost(self, mode: str | None = None) -> xr.DataArray:
        """Distance-based transport cost per tonne of shipped product, ``(origin, destination)``, USD/t.

        ``cost = base_usd_per_t + usd_per_t_km * route_factor * km`` for the freight ``mode`` (default: the
        world's ``default_mode``), 0 on the diagonal. For USD per tonne of contained element of a given
        stage use :attr:`MineralData.transport_cost`.
        """
        tr = self.spec.transport
        mode = mode or tr.default_mode
        if mode not in tr.modes:
            raise ValueError(f"unknown freight mode {mode!r}; the world has {sorted(tr.modes)}")
        if mode not in self._transport_cache:
            m = tr.modes[mode]
            km = self.distance_km.values
            cost = m.base_usd_per_t.value + m.usd_per_t_km.value * tr.route_factor.value * km
            np.fill_diagonal(cost, 0.0)
            da = _da(cost, {"origin": self.regions, "destination": self.regions}, ("origin", "destination"),
                     "transport_cost", PRICE_UNIT, f"distance-based transport cost ({mode}) per tonne shipped")
            da.attrs.update(formula=tr.formula, mode=mode)
            self._transport_cache[mode] = da
        return self._transport_cache[mode].copy()

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

    def _rows(self, table: str, mineral: str) -> pd.DataFrame:
        df = self._tables.get(table)
        if df is None:
            return pd.DataFrame()
        return df[df["mineral"] == mineral]

    def _build_mineral(self, m: str) -> MineralData:  # noqa: C901 - straight-line assembly
        stages = self._stages[m]
        regions, sectors = self.regions, self.sectors
        coords: dict[str, Any] = {"stage": stages, "region": regions, "sector": sectors,
                                  "origin": regions, "destination": regions, "bound": ("low", "high")}
        si = {s: i for i, s in enumerate(stages)}
        ri = {r: i for i, r in enumerate(regions)}
        ki = {k: i for i, k in enumerate(sectors)}
        st = self._rows("stages", m)
        yields = {str(r.stage): float(r["yield"]) for _, r in st.iterrows() if si[str(r.stage)] > 0}
        minfo = self._tables["minerals"].set_index("mineral").loc[m]

        def grid(table: str, col: str, dims: tuple[str, ...], fill: float = 0.0) -> np.ndarray:
            arr = np.full(tuple(len(coords[d]) for d in dims), fill)
            df = self._rows(table, m)
            if len(df):
                lookup = {"stage": si, "region": ri, "sector": ki}
                idx = tuple(df[d].map(lookup[d]).to_numpy(dtype=int) for d in dims)
                arr[idx] = df[col].to_numpy(dtype=float)
            return arr

        production = _da(grid("production", "quantity_t", ("stage", "region")), coords, ("stage", "region"),
                         "production", QUANTITY_UNIT, f"{m} base-year output of each stage")
        capacity = _da(grid("capacity", "capacity_t", ("stage", "region")), coords, ("stage", "region"),
                       "capacity", QUANTITY_UNIT, f"{m} base-year capacity (output) of each stage")
        capacity = capacity.where(capacity >= production, production)
        consumption = _da(grid("consumption", "quantity_t", ("stage", "region", "sector")), coords,
                          ("stage", "region", "sector"), "consumption", QUANTITY_UNIT,
                          f"{m} base-year consumption by stage, region and sector")
        sector_stage = {str(r.sector): str(r.stage) for r in self._rows("sectors", m).itertuples()}

        price = np.full((len(stages), len(regions)), np.nan)
        pr = self._rows("prices", m)
        for r in pr[pr["region"] == ANY_REGION].itertuples():
            price[si[str(r.stage)], :] = float(r.price_usd_per_t)
        for r in pr[pr["region"] != ANY_REGION].itertuples():
            price[si[str(r.stage)], ri[str(r.region)]] = float(r.price_usd_per_t)
        price_da = _da(price, coords, ("stage", "region"), "price", PRICE_UNIT,
                       f"{m} base-year market price at each node")

        # demand index: compound the sector growth rates from the base year to the horizon
        years = np.arange(self.base_year, self.horizon + 1)
        index = np.ones((len(years), len(sectors)))
        dg = self._rows("demand_growth", m)
        for k in sectors:
            level = np.ones(len(years))
            for r in dg[dg["sector"] == k].sort_values("start_year").itertuples():
                start, end, g = int(r.start_year), int(r.end_year), float(r.annual_growth)
                sel = (years > start) & (years <= end)
                level[sel] = level[years == start][0] * (1.0 + g) ** (years[sel] - start)
            index[:, ki[k]] = level
        demand_index = xr.DataArray(
            np.broadcast_to(index[:, None, :], (len(years), len(regions), len(sectors))).copy(),
            coords={"year": years, "region": list(regions), "sector": list(sectors)},
            dims=("year", "region", "sector"), name="demand_index",
            attrs={"unit": "1", "description": f"{m} reference demand relative to {self.base_year} (same path "
                   f"in every region)"},
        )

        el = self._rows("elasticities", m)

        def elastic(side: str, horizon: str, dim: str, keys: tuple[str, ...]) -> tuple[xr.DataArray, xr.DataArray]:
            sub = el[(el["side"] == side) & (el["horizon"] == horizon)].set_index("key")
            val = np.array([float(sub.at[k, "value"]) if k in sub.index else np.nan for k in keys])
            rng = np.array([[float(sub.at[k, b]) if k in sub.index else np.nan for b in ("low", "high")]
                            for k in keys])
            name = f"{side}_elasticity" + ("" if horizon == "short_run" else "_long_run")
            desc = f"{m} {horizon.replace('_', '-')} price elasticity of {side}"
            return (_da(val, coords, (dim,), name, "1", desc),
                    _da(rng, coords, (dim, "bound"), f"{name}_range", "1", f"{desc}: low and high"))

        s_sr, s_sr_rng = elastic("supply", "short_run", "stage", stages)
        s_lr, s_lr_rng = elastic("supply", "long_run", "stage", stages)
        d_sr, d_sr_rng = elastic("demand", "short_run", "sector", sectors)
        d_lr, d_lr_rng = elastic("demand", "long_run", "sector", sectors)

        trade = np.full((len(stages), len(regions), len(regions)), np.nan)
        tr = self._rows("trade", m)
        if len(tr):
            trade[tr["stage"].map(si).to_numpy(dtype=int), tr["exporter"].map(ri).to_numpy(dtype=int),
                  tr["importer"].map(ri).to_numpy(dtype=int)] = tr["quantity_t"].to_numpy(dtype=float)
        trade_da = _da(trade, coords, ("stage", "origin", "destination"), "trade", QUANTITY_UNIT,
                       f"{m} observed base-year bilateral flows (NaN: not observed)")
        observed = tuple(s for s in stages if len(tr) and (tr["stage"] == s).any())

        fr = self._rows("freight", m).set_index("stage") if "freight" in self._tables else pd.DataFrame()
        gpc = {s: float(fr.at[s, "gross_per_contained"]) if s in fr.index else 1.0 for s in stages}
        modes = {s: str(fr.at[s, "mode"]) if s in fr.index else self.spec.transport.default_mode for s in stages}
        tc = np.stack([self.transport_cost(modes[s]).values * gpc[s] for s in stages])
        transport = _da(tc, coords, ("stage", "origin", "destination"), "transport_cost", PRICE_UNIT,
                        f"{m} distance-based transport cost per tonne of contained element")
        transport.attrs.update(formula=self.spec.transport.formula,
                               gross_per_contained={s: gpc[s] for s in stages},
                               mode={s: modes[s] for s in stages})
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
                    "price_usd_per_t": [float((price * prod).sum() / total_p) if total_p > 0
                                        else float(price.mean())],
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


class _Loader:
    """Reads a world folder and checks every rule; one instance per load."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.tables: dict[str, pd.DataFrame] = {}

    # ------------------------------------------------------------------------------------------ helpers
    def file(self, table: str) -> str:
        return str(self.folder / self.spec.filename(table))

    def fail(self, table: str, field: str, reason: str, row: int | None = None) -> DataError:
        return DataError(self.file(table), field, reason, row)

    def first_bad(self, table: str, df: pd.DataFrame, mask: Any, field: str, reason: Any) -> None:
        """Raise for the first row where ``mask`` holds; ``reason`` may be a callable of the row."""
        m = np.asarray(mask, dtype=bool)
        if m.any():
            row = df.iloc[int(np.argmax(m))]
            text = reason(row) if callable(reason) else reason
            raise self.fail(table, field, text, int(row["_row"]))

    # ------------------------------------------------------------------------------------------ entry
    def load(self) -> World:
        if not self.folder.is_dir():
            raise DataError(str(self.folder), "path", "not a world folder (no such directory)")
        self.spec = self.read_spec()
        for name in FILES:
            df = self.read(name)
            if df is not None:
                self.tables[name] = df
        self.source_ids = set(self.tables["sources"]["id"]) if "sources" in self.tables else None
        for name, df in self.tables.items():
            self.check_provenance(name, df)
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
        return World(path=self.folder, spec=self.spec, tables=self.tables, regions=self.regions,
                     minerals=self.minerals, stages=self.stages)

    def read_spec(self) -> WorldSpec:
        path = self.folder / "world.yaml"
        if not path.is_file():
            raise DataError(str(path), "file", "missing file: a world folder needs world.yaml")
        try:
            with open(path, encoding="utf-8") as fh:
                raw = yaml.safe_load(fh)
        except yaml.YAMLError as err:
            raise DataError(str(path), "file", f"not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise DataError(str(path), "file", "world.yaml must hold a mapping")
        try:
            return WorldSpec.model_validate(raw)
        except pydantic.ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "world.yaml"
            raise DataError(str(path), loc, first["msg"]) from err

    def read(self, name: str) -> pd.DataFrame | None:
        spec = FILES[name]
        fname = self.spec.filename(name)
        path = self.folder / fname
        if not path.is_file():
            if spec.required or name in self.spec.files:
                raise DataError(str(path), "file", f"missing file: the world needs {fname} ({name} table)")
            return None
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise DataError(str(path), "file", f"cannot read as CSV: {err}") from err
        df.columns = [str(c).strip() for c in df.columns]
        for col in spec.columns:
            if col not in df.columns:
                raise DataError(str(path), col, f"missing column {col!r}")
        df = df.copy()
        for col in df.columns:
            df[col] = df[col].astype(str).str.strip()
        df["_row"] = np.arange(len(df)) + 2
        numeric = set(spec.numeric) | set(spec.optional_numeric)
        for col in (*spec.keys, *spec.text):
            if col in numeric or col in spec.optional_text:
                continue
            self.first_bad(name, df, df[col] == "", col, "missing value")
        for col in spec.numeric:
            self.first_bad(name, df, df[col] == "", col, "missing value (a number is required)")
        for col in (*spec.numeric, *spec.optional_numeric):
            given = df[col] != ""
            values = pd.to_numeric(df[col].where(given, None), errors="coerce")
            self.first_bad(name, df, given & (values.isna() | ~np.isfinite(values.fillna(0.0))), col,
                           lambda r, c=col: f"not a number: {r[c]!r}")
            df[col] = values.astype(float)
        for col in spec.nonnegative:
            self.first_bad(name, df, df[col] < 0, col, lambda r, c=col: f"negative value {r[c]:g}")
        if "low" in df.columns and "high" in df.columns:
            self.first_bad(name, df, df["low"] > df["high"], "low",
                           lambda r: f"range low {r['low']:g} > high {r['high']:g}")
        dup = df.duplicated(list(spec.keys), keep="first")
        self.first_bad(name, df, dup, spec.keys[-1],
                       lambda r: "duplicate key " + ", ".join(f"{k}={r[k]}" for k in spec.keys))
        return df

    def check_provenance(self, name: str, df: pd.DataFrame) -> None:
        if not FILES[name].provenance:
            return
        self.first_bad(name, df, df["source"] == "", "source", "missing source (a citation id or reference)")
        self.first_bad(name, df, df["basis"] == "", "basis", f"missing basis (one of {', '.join(BASES)})")
        self.first_bad(name, df, ~df["basis"].isin(BASES), "basis",
                       lambda r: f"basis {r['basis']!r} is not one of {', '.join(BASES)}")
        if self.source_ids is not None:
            ids = self.source_ids

            def unknown(s: str) -> list[str]:
                return [i for i in (p.strip() for p in s.split(";")) if i and i not in ids]

            bad = df["source"].map(lambda s: bool(unknown(s)))
            self.first_bad(name, df, bad, "source",
                           lambda r: f"unknown source id {unknown(r['source'])[0]!r} (not an id in sources.csv)")

    # ------------------------------------------------------------------------------------------ regions
    def check_regions(self) -> None:
        df = self.tables["regions"]
        t = "regions"
        self.first_bad(t, df, ~df["kind"].isin(REGION_KINDS), "kind",
                       lambda r: f"kind {r['kind']!r} is not one of {', '.join(REGION_KINDS)}")
        is_country = df["kind"] == "country"
        valid = df["code"].map(lambda c: pycountry.countries.get(alpha_3=c) is not None)
        self.first_bad(t, df, is_country & ~valid, "code",
                       lambda r: f"unknown region code {r['code']!r}: not an ISO 3166 alpha-3 code (pycountry); "
                       "declare aggregates with kind 'aggregate' or 'remainder'")
        self.first_bad(t, df, ~is_country & valid, "kind",
                       lambda r: f"{r['code']!r} is an ISO 3166 country code; an aggregate needs its own code")
        self.first_bad(t, df, ~df["code"].str.fullmatch(r"[A-Z][A-Z0-9_]*"), "code",
                       lambda r: f"region code {r['code']!r} must be upper case letters/digits")
        agg = df["kind"] == "aggregate"
        self.first_bad(t, df, agg & (df["members"] == ""), "members", "an aggregate region lists its members")

        def bad_member(members: str) -> str | None:
            for code in members.split():
                if pycountry.countries.get(alpha_3=code) is None:
                    return code
            return None

        self.first_bad(t, df, agg & df["members"].map(lambda s: bad_member(s) is not None), "members",
                       lambda r: f"member {bad_member(r['members'])!r} is not an ISO 3166 alpha-3 code (pycountry)")
        country_codes = set(df.loc[is_country, "code"])
        self.first_bad(t, df, agg & df["members"].map(lambda s: bool(set(s.split()) & country_codes)), "members",
                       "a member of an aggregate is also a region of its own")
        self.first_bad(t, df, (df["kind"] == "remainder").cumsum() > 1, "kind", "more than one remainder region")
        self.first_bad(t, df, ~df["lat"].between(-90, 90), "lat", lambda r: f"latitude {r['lat']:g} out of range")
        self.first_bad(t, df, ~df["lon"].between(-180, 180), "lon",
                       lambda r: f"longitude {r['lon']:g} out of range")
        order = list(df.loc[df["kind"] != "remainder", "code"]) + list(df.loc[df["kind"] == "remainder", "code"])
        self.regions: tuple[str, ...] = tuple(order)
        self.region_set = set(order)

    def check_region_col(self, table: str, df: pd.DataFrame, col: str, allow_any: bool = False) -> None:
        ok = df[col].isin(self.region_set) | (df[col] == ANY_REGION if allow_any else False)

        def reason(r: pd.Series) -> str:
            code = r[col]
            if pycountry.countries.get(alpha_3=code) is not None:
                return (f"region {code!r} is an ISO 3166 code but not a region of this world (regions.csv); "
                        "use its aggregate (e.g. EU or ROW)")
            return (f"unknown region code {code!r}: not ISO 3166 alpha-3 (pycountry) and not an aggregate "
                    "declared in regions.csv")

        self.first_bad(table, df, ~ok, col, reason)

    # ------------------------------------------------------------------------------------------ minerals
    def check_minerals_stages(self) -> None:
        mins = self.tables["minerals"]
        self.first_bad("minerals", mins, ~mins["mineral"].str.fullmatch(r"[a-z][a-z0-9_]*"), "mineral",
                       lambda r: f"mineral code {r['mineral']!r} must be lower case letters/digits/underscores")
        self.minerals: tuple[str, ...] = tuple(mins["mineral"])
        st = self.tables["stages"]
        self.check_mineral_col("stages", st)
        stages: dict[str, tuple[str, ...]] = {}
        for m in self.minerals:
            sub = st[st["mineral"] == m].sort_values("order")
            if sub.empty:
                raise self.fail("stages", "mineral", f"mineral {m!r} has no stages")
            orders = sub["order"].to_numpy()
            if not np.array_equal(orders, np.arange(1, len(sub) + 1)):
                row = int(sub["_row"].iloc[0])
                raise self.fail("stages", "order", f"stages of {m!r} must be numbered 1..{len(sub)}, got "
                                f"{[int(o) if float(o).is_integer() else o for o in orders]}", row)
            later = sub[sub["order"] > 1]
            self.first_bad("stages", later, later["yield"].isna(), "yield",
                           lambda r: f"stage {r['stage']!r} of {r['mineral']!r} needs a yield (output per unit input)")
            self.first_bad("stages", later, later["yield"] <= 0, "yield",
                           lambda r: f"yield {r['yield']:g} must be > 0")
            stages[m] = tuple(sub["stage"])
        self.stages = stages
        self.stage_pairs = {(m, s) for m, ss in stages.items() for s in ss}

    def check_mineral_col(self, table: str, df: pd.DataFrame) -> None:
        self.first_bad(table, df, ~df["mineral"].isin(self.minerals), "mineral",
                       lambda r: f"unknown mineral {r['mineral']!r} (not in minerals.csv)")

    def check_stage_col(self, table: str, df: pd.DataFrame, col: str = "stage") -> None:
        self.check_mineral_col(table, df)
        pairs = pd.Series(list(zip(df["mineral"], df[col], strict=True)), index=df.index)
        self.first_bad(table, df, ~pairs.isin(self.stage_pairs), col,
                       lambda r: f"unknown stage {r[col]!r} for mineral {r['mineral']!r} (stages: "
                       f"{', '.join(self.stages.get(r['mineral'], ()))})")

    def check_sector_col(self, table: str, df: pd.DataFrame, col: str = "sector") -> None:
        sectors = [s.code for s in self.spec.sectors]
        self.first_bad(table, df, ~df[col].isin(sectors), col,
                       lambda r: f"unknown sector {r[col]!r} (world.yaml sectors: {', '.join(sectors)})")

    def check_sectors(self) -> None:
        df = self.tables["sectors"]
        self.check_stage_col("sectors", df)
        self.check_sector_col("sectors", df)
        have = set(zip(df["mineral"], df["sector"], strict=True))
        for m in self.minerals:
            for s in self.spec.sectors:
                if (m, s.code) not in have:
                    raise self.fail("sectors", "sector", f"mineral {m!r} has no row for sector {s.code!r} (every "
                                    "sector needs the stage it consumes at)")
        self.sector_stage = {(m, k): s for m, k, s in zip(df["mineral"], df["sector"], df["stage"], strict=True)}

    # ------------------------------------------------------------------------------------------ quantities
    def check_quantities(self) -> None:
        for table in ("production", "capacity"):
            df = self.tables[table]
            self.check_stage_col(table, df)
            self.check_region_col(table, df, "region")
        prod, cap = self.tables["production"], self.tables["capacity"]
        merged = prod.merge(cap[["mineral", "stage", "region", "capacity_t", "_row"]], how="left",
                            on=["mineral", "stage", "region"], suffixes=("", "_cap"))
        missing = (merged["quantity_t"] > 0) & merged["capacity_t"].isna()
        if missing.any():
            r = merged[missing].iloc[0]
            raise self.fail("capacity", "capacity_t", f"no capacity for {r['mineral']}/{r['stage']} in "
                            f"{r['region']}, which produces {r['quantity_t']:g} t")
        short = merged["capacity_t"] < merged["quantity_t"] * (1 - 1e-9)
        if short.any():
            r = merged[short].iloc[0]
            raise self.fail("capacity", "capacity_t", f"capacity {r['capacity_t']:g} t is below production "
                            f"{r['quantity_t']:g} t ({r['mineral']}/{r['stage']} in {r['region']})",
                            int(r["_row_cap"]))

    def check_prices(self) -> None:
        df = self.tables["prices"]
        self.check_stage_col("prices", df)
        self.check_region_col("prices", df, "region", allow_any=True)
        self.first_bad("prices", df, df["price_usd_per_t"] <= 0, "price_usd_per_t",
                       lambda r: f"price must be > 0, got {r['price_usd_per_t']:g}")
        covered = {(m, s) for m, s, r in zip(df["mineral"], df["stage"], df["region"], strict=True)
                   if r == ANY_REGION}
        have = set(zip(df["mineral"], df["stage"], df["region"], strict=True))
        for m, ss in self.stages.items():
            for s in ss:
                if (m, s) in covered:
                    continue
                for r in self.regions:
                    if (m, s, r) not in have:
                        raise self.fail("prices", "region", f"no price for {m}/{s} in {r} (add a row for it or a "
                                        f"'{ANY_REGION}' row for all regions)")

    def check_consumption(self) -> None:
        df = self.tables["consumption"]
        self.check_stage_col("consumption", df)
        self.check_region_col("consumption", df, "region")
        self.check_sector_col("consumption", df)
        expected = pd.Series([self.sector_stage.get((m, k), "") for m, k in zip(df["mineral"], df["sector"],
                                                                                strict=True)], index=df.index)
        self.first_bad("consumption", df, expected != df["stage"], "stage",
                       lambda r: f"sector {r['sector']!r} of {r['mineral']!r} consumes at stage "
                       f"{self.sector_stage.get((r['mineral'], r['sector']))!r} (sectors.csv), not {r['stage']!r}")

    def check_mass_balance(self) -> None:
        prod = self.tables["production"].groupby(["mineral", "stage"])["quantity_t"].sum()
        cons = self.tables["consumption"].groupby(["mineral", "stage"])["quantity_t"].sum()
        yields = self.tables["stages"].set_index(["mineral", "stage"])["yield"]
        for m, ss in self.stages.items():
            for i, s in enumerate(ss):
                out = float(prod.get((m, s), 0.0))
                c = float(cons.get((m, s), 0.0))
                nxt = float(prod.get((m, ss[i + 1]), 0.0)) / float(yields[(m, ss[i + 1])]) if i + 1 < len(ss) else 0.0
                use = c + nxt
                scale = max(out, use)
                if scale <= 0:
                    continue
                gap = (out - use) / scale
                if abs(gap) > MASS_BALANCE_TOLERANCE:
                    raise self.fail(
                        "consumption", "quantity_t",
                        f"mass balance violated for {m}/{s}: world output {out:,.3f} t but world use {use:,.3f} t "
                        f"(consumption {c:,.3f} t + input to the next stage {nxt:,.3f} t), a gap of {gap:+.2%} "
                        f"(tolerance {MASS_BALANCE_TOLERANCE:.1%})",
                    )

    def check_demand_growth(self) -> None:
        df = self.tables["demand_growth"]
        t = "demand_growth"
        self.check_mineral_col(t, df)
        self.check_sector_col(t, df)
        base, hor = self.spec.base_year, self.spec.horizon
        self.first_bad(t, df, df["start_year"] >= df["end_year"], "end_year",
                       lambda r: f"period {r['start_year']:g}-{r['end_year']:g} is empty")
        self.first_bad(t, df, df["annual_growth"] <= -1, "annual_growth",
                       lambda r: f"annual growth {r['annual_growth']:g} is not above -1")
        self.first_bad(t, df, (df["start_year"] % 1 != 0) | (df["end_year"] % 1 != 0), "start_year",
                       "years must be whole numbers")
        for m in self.minerals:
            for s in self.spec.sectors:
                sub = df[(df["mineral"] == m) & (df["sector"] == s.code)].sort_values("start_year")
                if sub.empty:
                    raise self.fail(t, "sector", f"no demand growth for {m}/{s.code} ({base}-{hor})")
                starts, ends = sub["start_year"].to_numpy(), sub["end_year"].to_numpy()
                row = int(sub["_row"].iloc[0])
                if starts[0] != base or ends[-1] != hor:
                    raise self.fail(t, "start_year", f"growth periods of {m}/{s.code} must run from the base year "
                                    f"{base} to the horizon {hor}, got {starts[0]:g}-{ends[-1]:g}", row)
                if not np.array_equal(starts[1:], ends[:-1]):
                    raise self.fail(t, "start_year", f"growth periods of {m}/{s.code} must be contiguous", row)

    def check_elasticities(self) -> None:
        df = self.tables["elasticities"]
        t = "elasticities"
        self.check_mineral_col(t, df)
        self.first_bad(t, df, ~df["side"].isin(SIDES), "side",
                       lambda r: f"side {r['side']!r} is not one of {', '.join(SIDES)}")
        self.first_bad(t, df, ~df["horizon"].isin(HORIZONS), "horizon",
                       lambda r: f"horizon {r['horizon']!r} is not one of {', '.join(HORIZONS)}")
        supply = df[df["side"] == "supply"]
        self.check_stage_col(t, supply, "key")
        demand = df[df["side"] == "demand"]
        self.check_sector_col(t, demand, "key")
        self.first_bad(t, supply, supply["value"] <= 0, "value",
                       lambda r: f"supply elasticity of {r['mineral']}/{r['key']} must be > 0, got {r['value']:g}")
        self.first_bad(t, demand, demand["value"] >= 0, "value",
                       lambda r: f"demand elasticity of {r['mineral']}/{r['key']} must be < 0, got {r['value']:g}")
        outside = (df["value"] < df["low"]) | (df["value"] > df["high"])
        self.first_bad(t, df, outside, "value",
                       lambda r: f"value {r['value']:g} lies outside its range [{r['low']:g}, {r['high']:g}]")
        have = set(zip(df["mineral"], df["side"], df["key"], df["horizon"], strict=True))
        for m in self.minerals:
            for s in self.stages[m]:
                for h in HORIZONS:
                    if (m, "supply", s, h) not in have:
                        raise self.fail(t, "value", f"no {h} supply elasticity for {m}/{s}")
            for k in self.spec.sectors:
                for h in HORIZONS:
                    if (m, "demand", k.code, h) not in have:
                        raise self.fail(t, "value", f"no {h} demand elasticity for {m}/{k.code}")

    def check_optional(self) -> None:
        if "trade" in self.tables:
            df = self.tables["trade"]
            self.check_stage_col("trade", df)
            self.check_region_col("trade", df, "exporter")
            self.check_region_col("trade", df, "importer")
            self.first_bad("trade", df, df["exporter"] == df["importer"], "importer",
                           "exporter equals importer: domestic flows are not trade")
        if "freight" in self.tables:
            df = self.tables["freight"]
            self.check_stage_col("freight", df)
            modes = sorted(self.spec.transport.modes)
            self.first_bad("freight", df, ~df["mode"].isin(modes), "mode",
                           lambda r: f"freight mode {r['mode']!r} is not one of {', '.join(modes)} (world.yaml)")
            self.first_bad("freight", df, df["gross_per_contained"] <= 0, "gross_per_contained", "must be > 0")
        if "shares" in self.tables:
            self.check_shares(self.tables["shares"])
        if "content_factors" in self.tables:
            df = self.tables["content_factors"]
            self.check_stage_col("content_factors", df)
            self.first_bad("content_factors", df, df["factor"] <= 0, "factor", "must be > 0")
        if "wmd_check" in self.tables:
            df = self.tables["wmd_check"]
            self.check_mineral_col("wmd_check", df)
            self.check_region_col("wmd_check", df, "region")

    def check_shares(self, df: pd.DataFrame) -> None:
        t = "shares"
        self.check_stage_col(t, df)
        self.first_bad(t, df, df["share"] > 1 + SHARE_TOLERANCE, "share",
                       lambda r: f"share {r['share']:g} is above 1")
        regional = df["kind"].str.endswith("_region")
        self.check_region_col(t, df[regional], "key")
        end_use = df["kind"] == "end_use"
        self.check_sector_col(t, df[end_use], "key")
        sums = df.groupby(["mineral", "stage", "kind", "group"])["share"].sum()
        over = sums[sums > 1 + SHARE_TOLERANCE]
        if len(over):
            (m, s, kind, group), total = next(iter(over.items()))
            sub = df[(df["mineral"] == m) & (df["stage"] == s) & (df["kind"] == kind) & (df["group"] == group)]
            raise self.fail(t, "share", f"shares of {m}/{s} ({kind}{', ' + group if group else ''}) sum to "
                            f"{total:.6g}, more than 1", int(sub["_row"].iloc[-1]))
