"""The default and toy worlds load, carry their sources, balance, and bad input is reported precisely."""

from __future__ import annotations

import csv
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pycountry
import pytest
import yaml

from critmin.core.errors import DataError
from critmin.data.crosscheck import FLAG_THRESHOLD, compare_mine_output, flagged, markdown_table
from critmin.data.schema import BASES
from critmin.data.world import World, load_world, world_path

MINERALS = (
    "ndpr",
    "dy",
    "tb",
    "lithium",
    "graphite",
    "cobalt",
    "nickel",
    "gallium",
    "germanium",
    "antimony",
    "tungsten",
)
SECTORS = ("defense", "ev", "wind", "electronics", "other")
CLUB = ("USA", "AUS", "JPN", "KOR", "SAU", "MYS", "THA")


@pytest.fixture(scope="module")
def world() -> World:
    return load_world()


# --------------------------------------------------------------------------------------------------------
# The default world
# --------------------------------------------------------------------------------------------------------


def test_default_world_loads(world: World) -> None:
    assert world.name == "default"
    assert world.base_year == 2024
    assert world.horizon == 2040
    assert world.minerals == MINERALS
    assert world.sectors == SECTORS
    assert world.regions[-1] == "ROW"
    assert 18 <= len(world.regions) <= 24
    assert load_world() is world  # cached per folder
    table = world.region_table
    assert list(table["code"]) == list(world.regions)
    assert {"code", "name", "kind", "members", "lat", "lon", "source", "basis"} <= set(table.columns)


def test_region_codes_come_from_pycountry(world: World) -> None:
    table = world.region_table
    for code, kind in zip(table["code"].tolist(), table["kind"].tolist(), strict=True):
        if kind == "country":
            assert pycountry.countries.get(alpha_3=str(code)) is not None, code
        else:
            assert code in ("EU", "ROW")
    members = str(table.loc[table["code"] == "EU", "members"].iloc[0]).split()
    assert len(members) == 27
    assert all(pycountry.countries.get(alpha_3=c) is not None for c in members)


def test_region_rule(world: World) -> None:
    """Every country region holds >= 5% of some stage of some mineral, or is a named club member."""
    share_regions: set[str] = set()
    for m in world.minerals:
        prod = world.mineral(m).production
        share = prod / prod.sum("region")
        share_regions |= {str(r) for r in share.region.values if float(share.sel(region=r).max()) >= 0.05}
    for code in world.regions:
        if code in ("EU", "ROW"):
            continue
        assert code in share_regions or code in CLUB, code
    assert set(CLUB) <= set(world.regions)


def test_mineral_arrays(world: World) -> None:
    for m in world.minerals:
        md = world.mineral(m)
        assert md.stages[0] == "mine" and md.stages[-1] in ("refine", "magnet")
        assert set(md.yields) == set(md.stages[1:])
        arrays = [
            md.production,
            md.capacity,
            md.consumption,
            md.price,
            md.demand_index,
            md.supply_elasticity,
            md.supply_elasticity_range,
            md.demand_elasticity,
            md.demand_elasticity_long_run,
            md.demand_elasticity_range,
            md.trade,
            md.transport_cost,
        ]
        for da in arrays:
            assert da.attrs.get("unit") and da.attrs.get("description"), (m, da.name)
        assert md.production.dims == ("stage", "region")
        assert md.consumption.dims == ("stage", "region", "sector")
        assert md.trade.dims == ("stage", "origin", "destination")
        assert md.demand_index.dims == ("year", "region", "sector")
        assert (md.capacity >= md.production).all()
        assert (md.production >= 0).all() and (md.consumption >= 0).all()
        assert np.isfinite(md.price.values).all() and (md.price > 0).all()
        assert (md.supply_elasticity > 0).all()
        assert (md.demand_elasticity < 0).all() and (md.demand_elasticity_long_run < 0).all()
        assert int(md.demand_index.year[0]) == world.base_year and int(md.demand_index.year[-1]) == world.horizon
        assert np.allclose(md.demand_index.sel(year=world.base_year), 1.0)
        assert set(md.sector_stage) == set(SECTORS)
        for k, s in md.sector_stage.items():
            other = [x for x in md.stages if x != s]
            assert float(md.consumption.sel(sector=k, stage=other).sum()) == 0.0
        # observed trade: NaN where not observed, never on the diagonal
        for s in md.stages:
            diag = np.diagonal(md.trade.sel(stage=s).values)
            assert np.isnan(diag).all()
        assert set(md.trade_observed_stages) <= set(md.stages)


def test_rare_earths_have_three_stages(world: World) -> None:
    for m in ("ndpr", "dy", "tb"):
        assert world.mineral(m).stages == ("mine", "refine", "magnet")
    for m in ("lithium", "graphite", "cobalt", "nickel", "gallium", "germanium", "antimony", "tungsten"):
        assert world.mineral(m).stages == ("mine", "refine")


def test_mass_balance(world: World) -> None:
    for m in world.minerals:
        md = world.mineral(m)
        for i, s in enumerate(md.stages):
            out = float(md.production.sel(stage=s).sum())
            use = float(md.consumption.sel(stage=s).sum())
            if i + 1 < len(md.stages):
                nxt = md.stages[i + 1]
                use += float(md.production.sel(stage=nxt).sum()) / md.yields[nxt]
            assert out == pytest.approx(use, rel=1e-9), (m, s)


def test_observed_trade_is_feasible(world: World) -> None:
    """No region exports more than it produces or imports more than it uses at a stage."""
    assert world.mineral("lithium").trade_observed_stages == ("refine",)
    for m in world.minerals:
        md = world.mineral(m)
        use = md.use()
        for s in md.trade_observed_stages:
            flows = md.trade.sel(stage=s).fillna(0.0)
            exports = flows.sum("destination")
            imports = flows.sum("origin")
            assert (exports <= md.production.sel(stage=s).rename(region="origin") * (1 + 1e-9) + 1e-6).all(), m
            assert (imports <= use.sel(stage=s).rename(region="destination") * (1 + 1e-9) + 1e-6).all(), m


def test_every_number_has_a_source_and_basis(world: World) -> None:
    src = world.sources
    assert len(src) > 1000
    assert (src["source"].str.len() > 0).all()
    assert src["basis"].isin(BASES).all()
    ids = set(world.table("sources")["id"])
    for s in src["source"].unique():
        assert all(i in ids for i in s.split(";")), s
    assert src["citation"].str.contains("CEPII BACI \\(HS92, version 202401b\\), Etalab Open License 2.0").any()
    for name in world.spec.files:
        df = world.table(name)
        assert (df["source"] != "").all() and df["basis"].isin(BASES).all(), name


def test_assumed_parameters_carry_ranges(world: World) -> None:
    for name in ("elasticities", "demand_growth"):
        df = world.table(name)
        assumed = df[df["basis"] == "assumption"]
        assert assumed["low"].notna().all() and assumed["high"].notna().all(), name
    stages = world.table("stages")
    later = stages[stages["order"] > 1]
    assert later["low"].notna().all() and later["high"].notna().all()


def test_trade_rows_cite_cepii(world: World) -> None:
    trade = world.table("trade")
    assert (trade["source"].str.contains("CEPII-BACI")).all()
    assert (trade["year"] == 2024).all()
    assert (trade["quantity_t"] <= trade["observed_t"] * (1 + 1e-9)).all()
    assert set(zip(trade["mineral"], trade["stage"], strict=True)) == {
        ("lithium", "refine"),
        ("graphite", "mine"),
        ("nickel", "mine"),
        ("cobalt", "mine"),
        ("tungsten", "mine"),
    }


def test_transport_cost(world: World) -> None:
    tc = world.transport_cost()
    assert tc.dims == ("origin", "destination")
    assert np.allclose(np.diagonal(tc.values), 0.0)
    assert np.allclose(tc.values, tc.values.T)
    assert tc.attrs["unit"] == "USD/t" and "formula" in tc.attrs
    assert float(tc.sel(origin="CHN", destination="EU")) > float(tc.sel(origin="CHN", destination="KOR"))
    md = world.mineral("nickel")
    mine = md.transport_cost.sel(stage="mine")
    bulk = world.transport_cost("bulk")
    assert np.allclose(mine.values, bulk.values * md.gross_per_contained["mine"])
    with pytest.raises(ValueError, match="freight mode"):
        world.transport_cost("air")


def test_summary(world: World) -> None:
    tables = world.summary("ndpr")
    assert list(tables) == ["mine", "refine", "magnet"]
    refine = tables["refine"]
    assert refine.index[-1] == "World"
    assert refine.loc["CHN", "share_of_world"] == pytest.approx(0.91)
    assert refine.drop(index="World")["share_of_world"].sum() == pytest.approx(1.0)
    assert {"production_t", "share_of_world", "capacity_t", "price_usd_per_t"} <= set(refine.columns)


def test_wmd_crosscheck(world: World) -> None:
    df = compare_mine_output(world)
    assert {"mineral", "region", "model_t", "wmd_t", "relative_difference", "flag"} <= set(df.columns)
    assert set(df["mineral"]) == set(MINERALS)
    bad = flagged(world)
    assert len(bad) > 0
    assert (bad["relative_difference"].abs() > FLAG_THRESHOLD).all()
    # the germanium series is taken from WMD itself
    ge = df[df["mineral"] == "germanium"]
    assert not ge["flag"].any()
    assert "| mineral |" in markdown_table(bad)


def test_toy_world_loads() -> None:
    toy = load_world(world_path("toy"))
    assert toy.minerals == ("lithium",)
    assert toy.regions == ("AUS", "CHN", "USA")
    md = toy.mineral("lithium")
    assert md.trade_observed_stages == ("mine", "refine")
    assert float(md.trade.sel(stage="mine", origin="AUS", destination="CHN")) == 70000.0
    assert math.isnan(float(md.trade.sel(stage="refine", origin="AUS", destination="USA")))
    assert float(md.price.sel(stage="refine", region="USA")) == 72000.0
    assert float(md.price.sel(stage="refine", region="AUS")) == 70000.0
    assert (toy.sources["basis"] == "assumption").all()
    with pytest.raises(DataError, match="wmd_check"):
        compare_mine_output(toy)


def test_user_world_in_the_same_format(tmp_path: Path) -> None:
    copy = tmp_path / "mine"
    shutil.copytree(world_path("default"), copy)
    user = load_world(copy)
    assert user is not load_world()
    assert user.regions == load_world().regions
    a = user.mineral("cobalt").production
    b = load_world().mineral("cobalt").production
    assert np.array_equal(a.values, b.values)


def test_shipped_files_reproduce_from_sources(tmp_path: Path) -> None:
    """The default world is the output of the build script (skipped where the source tables are absent)."""
    candidates = [
        Path(os.environ.get("CRITMIN_SOURCES", "")),
        Path(__file__).resolve().parents[2] / "shared" / "data" / "sources",
        Path(__file__).resolve().parents[1] / "shared" / "data" / "sources",
    ]
    sources = next((p for p in candidates if str(p) and (p / "baci_trade.csv").is_file()), None)
    if sources is None:
        pytest.skip("shared source tables not available")
    from critmin.data.build_default import build

    build(sources, tmp_path)
    shipped = world_path("default")
    for csv_file in sorted(shipped.glob("*.csv")):
        built = pd.read_csv(tmp_path / csv_file.name)
        have = pd.read_csv(csv_file)
        pd.testing.assert_frame_equal(built, have, check_exact=False, rtol=1e-9)


# --------------------------------------------------------------------------------------------------------
# Bad input: copy the toy world, corrupt one thing, expect a DataError naming file, field and reason
# --------------------------------------------------------------------------------------------------------


def _edit(path: Path, change: Callable[[list[dict[str, str]]], list[dict[str, str]] | None]) -> None:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    result = change(rows)
    rows = rows if result is None else result
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _set(file: str, row: int, column: str, value: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        def change(rows: list[dict[str, str]]) -> None:
            rows[row][column] = value

        _edit(folder / file, change)

    return apply


def _duplicate(file: str, row: int) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        _edit(folder / file, lambda rows: [*rows, dict(rows[row])])

    return apply


def _delete(file: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        (folder / file).unlink()

    return apply


def _yaml(key: str, value: object) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / "world.yaml"
        data = yaml.safe_load(path.read_text())
        data[key] = value
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    return apply


def _scale_consumption(factor: float) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        def change(rows: list[dict[str, str]]) -> None:
            for r in rows:
                r["quantity_t"] = str(float(r["quantity_t"]) * factor)

        _edit(folder / "consumption.csv", change)

    return apply


# (id, corruption, file, field, reason fragment, row) -- rows count the header as row 1
BAD_CASES = [
    (
        "unknown-region",
        _set("production.csv", 0, "region", "XYZ"),
        "production.csv",
        "region",
        "not ISO 3166 alpha-3",
        2,
    ),
    (
        "iso-but-not-a-region",
        _set("consumption.csv", 1, "region", "DEU"),
        "consumption.csv",
        "region",
        "not a region of this world",
        3,
    ),
    (
        "invalid-iso-in-regions",
        _set("regions.csv", 2, "code", "XYZ"),
        "regions.csv",
        "code",
        "not an ISO 3166 alpha-3 code",
        4,
    ),
    (
        "unknown-mineral",
        _set("production.csv", 1, "mineral", "unobtanium"),
        "production.csv",
        "mineral",
        "unknown mineral 'unobtanium'",
        3,
    ),
    ("unknown-stage", _set("capacity.csv", 0, "stage", "smelt"), "capacity.csv", "stage", "unknown stage 'smelt'", 2),
    (
        "unknown-sector",
        _set("consumption.csv", 0, "sector", "space"),
        "consumption.csv",
        "sector",
        "unknown sector 'space'",
        2,
    ),
    (
        "sector-at-wrong-stage",
        _set("consumption.csv", 0, "stage", "mine"),
        "consumption.csv",
        "stage",
        "consumes at stage 'refine'",
        2,
    ),
    (
        "negative-production",
        _set("production.csv", 2, "quantity_t", "-5"),
        "production.csv",
        "quantity_t",
        "negative value",
        4,
    ),
    (
        "negative-capacity",
        _set("capacity.csv", 0, "capacity_t", "-1"),
        "capacity.csv",
        "capacity_t",
        "negative value",
        2,
    ),
    (
        "capacity-below-production",
        _set("capacity.csv", 0, "capacity_t", "50000"),
        "capacity.csv",
        "capacity_t",
        "below production",
        2,
    ),
    ("missing-source", _set("prices.csv", 1, "source", ""), "prices.csv", "source", "missing source", 3),
    ("missing-basis", _set("production.csv", 0, "basis", ""), "production.csv", "basis", "missing basis", 2),
    (
        "invalid-basis",
        _set("elasticities.csv", 0, "basis", "guess"),
        "elasticities.csv",
        "basis",
        "'guess' is not one of",
        2,
    ),
    (
        "unknown-source-id",
        _set("trade.csv", 0, "source", "TOY;NOPE"),
        "trade.csv",
        "source",
        "unknown source id 'NOPE'",
        2,
    ),
    ("shares-above-one", _set("shares.csv", 1, "share", "0.2"), "shares.csv", "share", "sum to 1.1", None),
    ("mass-balance", _scale_consumption(1.01), "consumption.csv", "quantity_t", "mass balance violated", None),
    ("duplicate-key", _duplicate("production.csv", 0), "production.csv", "region", "duplicate key", 6),
    ("missing-file", _delete("prices.csv"), "prices.csv", "file", "missing file", None),
    ("missing-world-yaml", _delete("world.yaml"), "world.yaml", "file", "missing file", None),
    (
        "non-numeric",
        _set("production.csv", 1, "quantity_t", "lots"),
        "production.csv",
        "quantity_t",
        "not a number: 'lots'",
        3,
    ),
    (
        "missing-number",
        _set("prices.csv", 0, "price_usd_per_t", ""),
        "prices.csv",
        "price_usd_per_t",
        "missing value",
        2,
    ),
    (
        "supply-elasticity-sign",
        _set("elasticities.csv", 0, "value", "-0.2"),
        "elasticities.csv",
        "value",
        "must be > 0",
        2,
    ),
    (
        "demand-elasticity-sign",
        _set("elasticities.csv", 4, "value", "0.1"),
        "elasticities.csv",
        "value",
        "must be < 0",
        6,
    ),
    (
        "growth-gap",
        _set("demand_growth.csv", 1, "end_year", "2029"),
        "demand_growth.csv",
        "start_year",
        "from the base year",
        3,
    ),
    ("horizon-before-base", _yaml("horizon", 2000), "world.yaml", "(top level)", "before base_year", None),
    ("trade-to-itself", _set("trade.csv", 0, "importer", "AUS"), "trade.csv", "importer", "domestic flows", 2),
    ("yield-not-positive", _set("stages.csv", 1, "yield", "0"), "stages.csv", "yield", "must be > 0", 3),
    (
        "price-missing-for-region",
        _set("prices.csv", 0, "region", "AUS"),
        "prices.csv",
        "region",
        "no price for lithium/mine in USA",
        None,
    ),
]


@pytest.mark.parametrize(
    ("corrupt", "file", "field", "reason", "row"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_input_raises_data_error(
    tmp_path: Path, corrupt: Callable[[Path], None], file: str, field: str, reason: str, row: int | None
) -> None:
    folder = tmp_path / "toy"
    shutil.copytree(world_path("toy"), folder)
    corrupt(folder)
    with pytest.raises(DataError) as info:
        load_world(folder)
    err = info.value
    assert Path(err.file).name == file
    if field == "world.yaml":
        assert "horizon" in err.field or err.field == "world.yaml"
    else:
        assert err.field == field
    assert reason in err.reason, err.reason
    if row is not None:
        assert err.row == row
    assert file in str(err) and err.reason in str(err)


def test_a_fixed_world_loads_again(tmp_path: Path) -> None:
    """A corrupted copy that is repaired loads (the cache follows file changes)."""
    folder = tmp_path / "toy"
    shutil.copytree(world_path("toy"), folder)
    _set("production.csv", 0, "quantity_t", "-1")(folder)
    with pytest.raises(DataError):
        load_world(folder)
    _set("production.csv", 0, "quantity_t", "80000")(folder)
    assert load_world(folder).minerals == ("lithium",)
