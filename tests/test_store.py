"""The results store: round trips, atomic chunks, resume rules, exports and the store's commands."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import typer
import xarray as xr
from rich.console import Console
from typer.testing import CliRunner

from critmin import cli_store
from critmin.cli_store import register
from critmin.core.errors import CritminError
from critmin.results.store import EXPORT_COLUMNS, SCHEMA_VERSION, Store, default_store_path

MINERALS = ["ndpr", "lithium"]
STAGES = ["mine", "refine", "magnet"]
REGIONS = ["AUS", "CHN", "USA"]
PERIODS = [2024, 2025, 2026]
N_DRAWS = 6
CHUNKS = {0: [0, 1, 2], 1: [3, 4, 5]}


def make_cube(draws: list[int]) -> xr.Dataset:
    """A small cube with the features a run's cube has: absent stages (NaN), sparse flows, ints, booleans."""
    rng = np.random.default_rng(sum(draws) + 1)
    D = len(draws)
    price = rng.uniform(1.0, 100.0, (D, 2, 3, 3, 3))
    price[:, 1, 2] = np.nan  # lithium has no magnet stage
    price[0, 0, 0, 0, 0] = np.nan  # a value missing in one draw only
    flow = rng.uniform(0.0, 5.0, (D, 2, 3, 3, 3, 3))
    flow[flow < 3.0] = 0.0
    flow[:, 1, 2] = np.nan
    iterations = rng.integers(1, 20, (D, 2, 3))
    member = np.zeros((D, 2, 3, 3), dtype=bool)
    member[:, 0, [0, 2]] = True
    member[:, 1, 1] = True
    ds = xr.Dataset(
        {
            "price": (("draw", "mineral", "stage", "region", "period"), price),
            "flow": (("draw", "mineral", "stage", "region", "partner", "period"), flow),
            "iterations": (("draw", "mineral", "period"), iterations),
            "bloc_member": (("draw", "bloc", "region", "period"), member),
        },
        coords={
            "draw": draws,
            "mineral": MINERALS,
            "stage": STAGES,
            "region": REGIONS,
            "partner": REGIONS,
            "period": PERIODS,
            "bloc": ["club", "china"],
        },
        attrs={"scenario": "test", "solver": "engine"},
    )
    ds["price"].attrs.update(unit="USD/t", description="market price")
    ds["flow"].attrs.update(unit="t/yr", description="shipments")
    ds["iterations"].attrs.update(unit="1")
    ds["bloc_member"].attrs.update(unit="1")
    return ds


def make_metrics(draws: list[int]) -> pd.DataFrame:
    rows = []
    for d in draws:
        for p in PERIODS:
            rows.append(("shortfall_share", "ndpr", "club", p, 0.02 * d + 0.01 * (p - 2024), "1"))
            rows.append(("price", "ndpr", "club", p, 1000.0 + 10 * d + p - 2024, "USD/t"))
            rows.append(("fiscal_cost", "all", "club", p, 1e8 * (d + 1), "USD"))
        rows.append(("recovery_periods", "ndpr", "world", None, float("nan") if d == 0 else float(d), "periods"))
    table = pd.DataFrame(rows, columns=["metric", "mineral", "region", "period", "value", "unit"])
    table.insert(0, "draw", np.repeat(draws, 3 * len(PERIODS) + 1))
    return table


def make_draws() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "draw": range(N_DRAWS),
            "world.ndpr.demand_growth": np.linspace(0.8, 1.3, N_DRAWS),
            "instruments.china-ban.enabled": [True, False, True, True, False, True],
            "instruments.china-ban.start": [dt.date(2026, 1 + d, 1) for d in range(N_DRAWS)],
            "instruments.vault.owner": ["USA", "EU", "USA", "JPN", "EU", "USA"],
            "instruments.china-ban.months": [6, 12, 18, 6, 12, 18],
            "dynamics.half_life": [1.0, None, 2.0, 3.0, 4.0, 5.0],
        }
    )


def new_run(store: Store, n_draws: int = N_DRAWS) -> str:
    return store.create_run(
        scenario_name="club-vs-ban",
        scenario_hash="abc123",
        scenario_yaml="name: club-vs-ban\n",
        data_version="default-1",
        code_version="critmin-0.1.0",
        seed=7,
        n_draws=n_draws,
        sampler="lhs",
        chunk_size=3,
    )


def full_run(store: Store) -> str:
    with store:  # one connection for the whole run
        run_id = new_run(store)
        store.add_draws(run_id, make_draws())
        for chunk in (1, 0):  # out of order, as workers finish
            draws = CHUNKS[chunk]
            assert store.write_chunk(run_id, chunk, draws, make_cube(draws), make_metrics(draws))
        store.finish_run(run_id, "complete", 2.5)
    return run_id


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store.duckdb")


def test_default_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CRITMIN_STORE", str(tmp_path / "x.duckdb"))
    assert default_store_path() == tmp_path / "x.duckdb"
    assert Store().path == tmp_path / "x.duckdb"
    monkeypatch.delenv("CRITMIN_STORE")
    assert default_store_path() == Path.home() / ".critmin" / "store.duckdb"


def test_round_trip_of_a_run(store):
    run_id = full_run(store)
    assert run_id.startswith("r-") and len(run_id) == len("r-20261126-0459-ab12cd")

    runs = store.list_runs()
    assert list(runs.columns) == [
        "id",
        "kind",
        "scenario",
        "hash",
        "data_version",
        "code_version",
        "seed",
        "sampler",
        "draws",
        "done",
        "created",
        "finished",
        "status",
        "wall_time_s",
    ]
    row = runs.iloc[0]
    assert (row["id"], row["scenario"], row["status"], row["draws"], row["done"]) == (
        run_id,
        "club-vs-ban",
        "complete",
        N_DRAWS,
        N_DRAWS,
    )
    assert row["wall_time_s"] == pytest.approx(2.5)

    info = store.get_run(run_id)
    assert info["id"] == info["run_id"] == run_id
    assert info["scenario_yaml"] == "name: club-vs-ban\n"
    assert (info["seed"], info["n_draws"], info["chunk_size"], info["chunks"], info["done"]) == (7, 6, 3, 2, 6)
    assert info["draw_paths"] == list(make_draws().columns[1:])
    assert store.completed_draws(run_id) == set(range(N_DRAWS))


def test_draws_come_back_with_their_types(store):
    run_id = full_run(store)
    back = store.load_draws(run_id)
    expected = make_draws()
    assert list(back.columns) == list(expected.columns)
    assert back["draw"].tolist() == list(range(N_DRAWS))
    np.testing.assert_array_equal(back["world.ndpr.demand_growth"], expected["world.ndpr.demand_growth"])
    assert back["instruments.china-ban.enabled"].dtype == bool
    assert back["instruments.china-ban.enabled"].tolist() == expected["instruments.china-ban.enabled"].tolist()
    assert back["instruments.china-ban.start"].tolist() == expected["instruments.china-ban.start"].tolist()
    assert back["instruments.vault.owner"].tolist() == expected["instruments.vault.owner"].tolist()
    assert back["instruments.china-ban.months"].dtype == np.int64
    assert back["instruments.china-ban.months"].tolist() == [6, 12, 18, 6, 12, 18]
    half_life = back["dynamics.half_life"]
    assert np.isnan(half_life[1]) and half_life[[0, 2, 3, 4, 5]].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_metrics_come_back_in_order(store):
    run_id = full_run(store)
    back = store.load_metrics(run_id)
    expected = make_metrics(list(range(N_DRAWS)))
    assert list(back.columns) == list(expected.columns)
    assert back["draw"].tolist() == expected["draw"].tolist()
    for col in ("metric", "mineral", "region", "unit"):
        assert back[col].astype(str).tolist() == expected[col].astype(str).tolist()
    assert str(back["period"].dtype) == "Int64"  # years, some rows without a period
    assert back["period"].isna().tolist() == expected["period"].isna().tolist()
    assert back["period"].dropna().tolist() == expected["period"].dropna().astype(int).tolist()
    np.testing.assert_array_equal(back["value"].to_numpy(), expected["value"].to_numpy())


def test_period_labels_that_are_not_years_stay_text(store):
    run_id = new_run(store, n_draws=1)
    metrics = pd.DataFrame(
        {
            "draw": [0, 0],
            "metric": ["price", "price"],
            "mineral": ["dy", "dy"],
            "region": ["club", "club"],
            "period": ["2026-Q1", "2026-Q2"],
            "value": [1.0, 2.0],
            "unit": ["USD/t", "USD/t"],
        }
    )
    store.write_chunk(run_id, 0, [0], make_cube([0]), metrics)
    assert store.load_metrics(run_id)["period"].astype(str).tolist() == ["2026-Q1", "2026-Q2"]


def test_cube_round_trip_keeps_missing_zero_and_types(store):
    run_id = full_run(store)
    back = store.load_cube(run_id)
    expected = xr.concat([make_cube(CHUNKS[0]), make_cube(CHUNKS[1])], dim="draw")
    assert back["draw"].values.tolist() == list(range(N_DRAWS))
    assert set(back.data_vars) == set(expected.data_vars)
    for name in expected.data_vars:
        want, got = expected[name], back[name]
        assert got.dims == want.dims
        assert got.dtype == want.dtype
        assert got.attrs == want.attrs
        if want.dtype.kind == "f":
            assert (np.isnan(got.values) == np.isnan(want.values)).all(), name
            assert ((got.values == 0) == (want.values == 0)).all(), name
            np.testing.assert_allclose(got.values, want.values, rtol=1e-6)  # stored as float32
        else:
            np.testing.assert_array_equal(got.values, want.values)
    for dim in ("mineral", "stage", "region", "partner", "period", "bloc"):
        assert back[dim].values.tolist() == expected[dim].values.tolist()
    assert back["period"].dtype == expected["period"].dtype
    assert back.attrs == expected.attrs
    only_price = store.load_cube(run_id, variables=["price"])
    assert list(only_price.data_vars) == ["price"]


def test_chunk_files_are_tidy_parquet_beside_the_database(store):
    run_id = full_run(store)
    files = sorted((store.parts / run_id).glob("*.parquet"))
    assert [f.name for f in files] == ["chunk-00000.parquet", "chunk-00001.parquet"]
    assert store.cube_files(run_id) == files
    table = duckdb.sql(f"SELECT * FROM read_parquet({[str(f) for f in files]})").df()
    assert list(table.columns) == ["variable", *EXPORT_COLUMNS[1:7], "bloc", "draw", "value", "unit"]
    price = table[(table["variable"] == "price") & (table["draw"] == 4)]
    cube = make_cube(CHUNKS[1]).sel(draw=4)
    expected = cube["price"].sel(mineral="ndpr", stage="mine", region="CHN", period=2025).item()
    hit = price[(price["mineral"] == "ndpr") & (price["stage"] == "mine") & (price["region"] == "CHN")]
    assert hit[hit["period"] == "2025"]["value"].item() == pytest.approx(expected, rel=1e-6)


def test_duplicate_chunk_writes_do_not_duplicate_draws(store):
    run_id = new_run(store)
    draws = CHUNKS[0]
    assert store.write_chunk(run_id, 0, draws, make_cube(draws), make_metrics(draws)) is True
    assert store.write_chunk(run_id, 0, draws, make_cube(draws), make_metrics(draws)) is False
    assert len(store.load_metrics(run_id)) == len(make_metrics(draws))
    with pytest.raises(CritminError, match="repeats draws already stored"):
        store.write_chunk(run_id, 5, [2, 3], make_cube([2, 3]), make_metrics([2, 3]))
    with pytest.raises(CritminError, match="already complete with other draws"):
        store.write_chunk(run_id, 0, [3, 4], make_cube([3, 4]), make_metrics([3, 4]))
    assert store.completed_draws(run_id) == {0, 1, 2}
    assert store.get_run(run_id)["chunks"] == 1


def test_complete_needs_every_draw(store):
    run_id = new_run(store)
    store.write_chunk(run_id, 0, CHUNKS[0], make_cube(CHUNKS[0]), make_metrics(CHUNKS[0]))
    with pytest.raises(CritminError, match="3 of 6 draws missing"):
        store.finish_run(run_id, "complete", 1.0)
    assert store.get_run(run_id)["status"] == "running"
    assert store.list_runs()["status"].tolist() == ["running"]
    store.finish_run(run_id, "interrupted", 1.0)
    assert store.get_run(run_id)["status"] == "interrupted"


def test_complete_needs_the_cube_files(store):
    run_id = new_run(store, n_draws=3)
    store.write_chunk(run_id, 0, CHUNKS[0], make_cube(CHUNKS[0]), make_metrics(CHUNKS[0]))
    (store.parts / run_id / "chunk-00000.parquet").unlink()
    with pytest.raises(CritminError, match="cube files missing"):
        store.finish_run(run_id, "complete", 1.0)


def test_a_failure_inside_the_transaction_leaves_nothing_that_counts(store, monkeypatch):
    run_id = new_run(store)
    store.write_chunk(run_id, 0, CHUNKS[0], make_cube(CHUNKS[0]), make_metrics(CHUNKS[0]))

    def crash(*args, **kwargs):
        raise RuntimeError("disk gone")

    # The metrics of chunk 1 are inserted, then the transaction fails before its chunks row.
    monkeypatch.setattr(Store, "_insert_chunk_row", crash)
    with pytest.raises(RuntimeError, match="disk gone"):
        store.write_chunk(run_id, 1, CHUNKS[1], make_cube(CHUNKS[1]), make_metrics(CHUNKS[1]))
    monkeypatch.undo()

    assert (store.parts / run_id / "chunk-00001.parquet").exists()  # a stray file, ignored
    assert [f.name for f in store.cube_files(run_id)] == ["chunk-00000.parquet"]
    assert store.completed_draws(run_id) == {0, 1, 2}
    assert set(store.load_metrics(run_id)["draw"]) == {0, 1, 2}
    assert store.load_cube(run_id)["draw"].values.tolist() == [0, 1, 2]
    with pytest.raises(CritminError, match="cannot be marked complete"):
        store.finish_run(run_id, "complete", 1.0)
    assert store.list_runs()["status"].tolist() == ["running"]

    assert store.write_chunk(run_id, 1, CHUNKS[1], make_cube(CHUNKS[1]), make_metrics(CHUNKS[1]))
    store.finish_run(run_id, "complete", 1.0)
    assert store.completed_draws(run_id) == set(range(N_DRAWS))
    assert len(store.load_metrics(run_id)) == len(make_metrics(list(range(N_DRAWS))))


def test_a_failure_while_writing_the_parquet_leaves_no_file(store, monkeypatch):
    run_id = new_run(store)
    import pyarrow.parquet as pq

    def broken(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="no space"):
        store.write_chunk(run_id, 0, CHUNKS[0], make_cube(CHUNKS[0]), make_metrics(CHUNKS[0]))
    monkeypatch.undo()
    assert list((store.parts / run_id).iterdir()) == []
    assert store.completed_draws(run_id) == set()


KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from test_store import CHUNKS, make_cube, make_metrics
    from critmin.results.store import Store

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    # _commit_chunk: the Parquet file is renamed into place, the transaction not begun;
    # _insert_chunk_row: the metrics are inserted, the transaction is open.
    setattr(Store, sys.argv[3], killed)
    draws = CHUNKS[1]
    Store(sys.argv[1]).write_chunk(sys.argv[2], 1, draws, make_cube(draws), make_metrics(draws))
    """
)


@pytest.mark.parametrize("where", ["_commit_chunk", "_insert_chunk_row"])
def test_a_killed_writer_leaves_nothing_that_counts(store, tmp_path, where):
    run_id = new_run(store)
    store.add_draws(run_id, make_draws())
    store.write_chunk(run_id, 0, CHUNKS[0], make_cube(CHUNKS[0]), make_metrics(CHUNKS[0]))
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER.format(tests=str(Path(__file__).parent)))
    done = subprocess.run(
        [sys.executable, str(script), str(store.path), run_id, where], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -9, done.stderr  # SIGKILL, mid-write

    assert (store.parts / run_id / "chunk-00001.parquet").exists()
    assert store.completed_draws(run_id) == {0, 1, 2}
    assert set(store.load_metrics(run_id)["draw"]) == {0, 1, 2}
    assert store.get_run(run_id)["status"] == "running"
    with pytest.raises(CritminError, match="cannot be marked complete"):
        store.finish_run(run_id, "complete", 1.0)
    missing = set(range(N_DRAWS)) - store.completed_draws(run_id)
    assert missing == set(CHUNKS[1])

    assert store.write_chunk(run_id, 1, CHUNKS[1], make_cube(CHUNKS[1]), make_metrics(CHUNKS[1]))
    store.finish_run(run_id, "complete", 1.0)
    assert store.load_cube(run_id)["draw"].values.tolist() == list(range(N_DRAWS))
    assert store.load_metrics(run_id)["draw"].nunique() == N_DRAWS


def test_a_resumed_run_is_running_again_and_adds_its_time(store):
    run_id = new_run(store)
    store.write_chunk(run_id, 0, CHUNKS[0], make_cube(CHUNKS[0]), make_metrics(CHUNKS[0]))
    store.finish_run(run_id, "interrupted", 10.0)
    store.write_chunk(run_id, 1, CHUNKS[1], make_cube(CHUNKS[1]), make_metrics(CHUNKS[1]))
    assert store.get_run(run_id)["status"] == "running"
    store.finish_run(run_id, "complete", 5.0)
    info = store.get_run(run_id)
    assert info["status"] == "complete" and info["wall_time_s"] == pytest.approx(15.0)
    with pytest.raises(CritminError, match="complete"):
        store.write_chunk(run_id, 2, [0], make_cube([0]), make_metrics([0]))
    with pytest.raises(CritminError, match="already complete"):
        store.finish_run(run_id, "failed", 1.0)
    with pytest.raises(CritminError, match="cannot be resumed"):
        store.reopen_run(run_id)


def test_reopen_sets_an_interrupted_run_running(store):
    run_id = new_run(store)
    store.finish_run(run_id, "failed", 1.0)
    store.reopen_run(run_id)
    assert store.get_run(run_id)["status"] == "running"


def test_chunks_are_checked_before_anything_is_written(store):
    run_id = new_run(store)
    with pytest.raises(CritminError, match="differ from its draws"):
        store.write_chunk(run_id, 0, [0, 1], make_cube([0, 1, 2]), make_metrics([0, 1]))
    with pytest.raises(CritminError, match=r"outside 0\.\.5"):
        store.write_chunk(run_id, 0, [6], make_cube([6]), make_metrics([6]))
    with pytest.raises(CritminError, match="unexpected bloc"):
        store.write_chunk(run_id, 0, [0], make_cube([0]), make_metrics([0]).assign(bloc="x"))
    with pytest.raises(CritminError, match="missing unit"):
        store.write_chunk(run_id, 0, [0], make_cube([0]), make_metrics([0]).drop(columns="unit"))
    with pytest.raises(CritminError, match="outside the chunk"):
        store.write_chunk(run_id, 0, [0], make_cube([0]), make_metrics([0, 1]))
    doubled = pd.concat([make_metrics([0]), make_metrics([0]).iloc[:1]])
    with pytest.raises(CritminError, match="repeat a row"):
        store.write_chunk(run_id, 0, [0], make_cube([0]), doubled)
    with pytest.raises(CritminError, match="no 'draw' dimension"):
        store.write_chunk(run_id, 0, [0], make_cube([0]).isel(draw=0), make_metrics([0]))
    text = make_cube([0]).assign(label=("draw", np.array(["a"])))
    with pytest.raises(CritminError, match="numbers only"):
        store.write_chunk(run_id, 0, [0], text, make_metrics([0]))
    assert store.completed_draws(run_id) == set()
    assert not (store.parts / run_id).exists()


def test_a_variable_without_draw_is_stored_for_every_draw(store):
    run_id = new_run(store, n_draws=2)
    cube = make_cube([0, 1]).assign(capacity=(("mineral", "region"), np.arange(6.0).reshape(2, 3)))
    store.write_chunk(run_id, 0, [0, 1], cube, make_metrics([0, 1]))
    back = store.load_cube(run_id)["capacity"]
    assert back.dims == ("draw", "mineral", "region")
    np.testing.assert_array_equal(back.sel(draw=1).values, np.arange(6.0).reshape(2, 3))


def test_draws_are_written_once_and_whole(store):
    run_id = new_run(store)
    with pytest.raises(CritminError, match=r"draws 0\.\.5 once each"):
        store.add_draws(run_id, make_draws().iloc[:4])
    with pytest.raises(CritminError, match="'draw' column first"):
        store.add_draws(run_id, make_draws().drop(columns="draw"))
    store.add_draws(run_id, make_draws())
    with pytest.raises(CritminError, match="already written"):
        store.add_draws(run_id, make_draws())
    empty_run = new_run(store, n_draws=3)
    assert store.load_draws(empty_run).columns.tolist() == ["draw"]
    store.add_draws(empty_run, pd.DataFrame({"draw": [2, 0, 1]}))
    assert store.load_draws(empty_run)["draw"].tolist() == [0, 1, 2]


def test_run_ids_resolve_by_unique_prefix(store):
    first, second = new_run(store), new_run(store)
    assert store.get_run(first)["id"] == first
    assert store.resolve(first[:-1]) == first or store.resolve(second[:-1]) == second
    with pytest.raises(CritminError, match="ambiguous"):
        store.get_run("r-")
    with pytest.raises(CritminError, match="no run 'r-nope'"):
        store.load_metrics("r-nope")
    for method in (store.get_run, store.load_draws, store.load_metrics, store.load_cube, store.completed_draws):
        with pytest.raises(CritminError, match="no run"):
            method("r-19990101-0000-000000")
    with pytest.raises(CritminError, match="no run"):
        store.finish_run(first[:-1], "failed", 1.0)  # writes need the full id


def test_an_empty_store_is_not_created_by_reading(tmp_path):
    store = Store(tmp_path / "sub" / "new.duckdb")
    assert store.list_runs().empty
    with pytest.raises(CritminError, match="empty"):
        store.get_run("r-1")
    assert not store.path.exists()


def test_a_store_of_another_schema_version_is_refused(store):
    new_run(store)
    with duckdb.connect(str(store.path)) as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(CritminError, match=f"schema version 99; this critmin reads version {SCHEMA_VERSION}"):
        store.list_runs()


def test_a_foreign_duckdb_file_is_refused(tmp_path):
    path = tmp_path / "other.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(CritminError, match="not a critmin store"):
        Store(path).list_runs()


def test_other_processes_use_the_store_in_turn(store, tmp_path):
    run_id = full_run(store)
    reader = tmp_path / "reader.py"
    reader.write_text(
        "import sys\nfrom critmin.results.store import Store\n"
        "s = Store(sys.argv[1], lock_timeout_s=float(sys.argv[2]))\n"
        "print(s.get_run(sys.argv[3])['status'])\n"
    )
    args = [sys.executable, str(reader), str(store.path)]
    done = subprocess.run([*args, "30", run_id], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "complete", done.stderr
    with store:  # holds the file: another process waits, then gives up with a readable error
        held = subprocess.run([*args, "0.3", run_id], capture_output=True, text=True, timeout=120)
    assert held.returncode != 0 and "cannot open the store" in held.stderr


def test_export_parquet(store, tmp_path):
    run_id = full_run(store)
    target = tmp_path / "out"
    counts = store.export(run_id[:12], "parquet", target)
    assert sorted(p.name for p in target.iterdir()) == [
        "cube.parquet",
        "draws.parquet",
        "metrics.parquet",
        "risk.parquet",
        "run.json",
    ]
    info = json.loads((target / "run.json").read_text())
    assert info["id"] == run_id and info["status"] == "complete" and info["export"]["rows"] == counts
    draws = pd.read_parquet(target / "draws.parquet")
    assert draws["instruments.china-ban.start"].tolist() == make_draws()["instruments.china-ban.start"].tolist()
    metrics = pd.read_parquet(target / "metrics.parquet")
    assert len(metrics) == counts["metrics"] == len(make_metrics(list(range(N_DRAWS))))
    cube = pd.read_parquet(target / "cube.parquet")
    assert list(cube.columns) == EXPORT_COLUMNS
    assert len(cube) == counts["cube"] == _expected_export_rows()
    member = cube[cube["variable"] == "bloc_member"]
    assert set(member["partner"]) == {"club", "china"}  # the bloc goes to partner, as in `critmin run --export`
    assert not (cube["value"].isna()).any()
    assert not ((cube["variable"] == "flow") & (cube["value"] == 0)).any()
    assert ((cube["variable"] == "iterations") | (cube["value"] != 0)).any()


def _expected_export_rows() -> int:
    cube = xr.concat([make_cube(CHUNKS[0]), make_cube(CHUNKS[1])], dim="draw")
    rows = 0
    for name in cube.data_vars:
        values = cube[name].values.astype(float)
        keep = ~np.isnan(values)
        if name == "flow":
            keep &= values != 0
        rows += int(keep.sum())
    return rows


def test_export_csv(store, tmp_path):
    run_id = full_run(store)
    target = tmp_path / "csv"
    counts = store.export(run_id, "csv", target)
    cube = pd.read_csv(target / "cube.csv")
    assert list(cube.columns) == EXPORT_COLUMNS
    assert len(cube) == counts["cube"] == _expected_export_rows()
    one = cube[
        (cube["variable"] == "price")
        & (cube["mineral"] == "lithium")
        & (cube["stage"] == "refine")
        & (cube["region"] == "USA")
        & (cube["period"] == 2026)
        & (cube["draw"] == 5)
    ]
    expected = make_cube(CHUNKS[1])["price"].sel(draw=5, mineral="lithium", stage="refine", region="USA", period=2026)
    assert one["value"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert one["unit"].item() == "USD/t"
    assert pd.read_csv(target / "draws.csv")["instruments.vault.owner"].tolist() == list(
        make_draws()["instruments.vault.owner"]
    )
    risk = pd.read_csv(target / "risk.csv")
    assert {"metric", "mean", "p5", "p50", "p95", "cvar", "driver"} <= set(risk.columns)
    with pytest.raises(CritminError, match="not an empty folder"):
        store.export(run_id, "csv", target)
    with pytest.raises(CritminError, match="unknown export format"):
        store.export(run_id, "xlsx", tmp_path / "x")  # type: ignore[arg-type]


def test_export_of_an_incomplete_run_says_so(store, tmp_path):
    run_id = new_run(store)
    store.write_chunk(run_id, 0, CHUNKS[0], make_cube(CHUNKS[0]), make_metrics(CHUNKS[0]))
    store.export(run_id, "csv", tmp_path / "partial")
    info = json.loads((tmp_path / "partial" / "run.json").read_text())
    assert (info["status"], info["done"], info["n_draws"]) == ("running", 3, 6)


# -- commands ----------------------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch) -> typer.Typer:
    # what a pipe or a CI log gets: not a terminal, 80 columns by default (tables must still be whole)
    monkeypatch.setattr(cli_store, "console", Console(width=80))
    app = typer.Typer()
    register(app)
    return app


def test_runs_command_lists_runs(store, cli):
    run_id = full_run(store)
    result = CliRunner().invoke(cli, ["runs", "--store", str(store.path)])
    assert result.exit_code == 0, result.output
    assert run_id in result.output and "complete" in result.output and "6/6" in result.output
    assert "\u2026" not in result.output


def test_show_command_prints_metadata_and_risk(store, cli):
    run_id = full_run(store)
    result = CliRunner().invoke(cli, ["show", run_id[:14], "--store", str(store.path)])
    assert result.exit_code == 0, result.output
    assert "club-vs-ban" in result.output and "6 of 6" in result.output
    assert "peak shortfall_share [1]" in result.output and "total fiscal_cost [USD]" in result.output
    assert "peak recovery_periods [periods]" in result.output  # units are text, not rich markup
    assert "CVaR95" in result.output and "P(>0.1)" in result.output
    assert "\u2026" not in result.output  # no cell cut short with an ellipsis


def test_show_names_what_a_selection_misses(store, cli):
    """-m / -r naming nothing stored (an ensemble stores the world, blocs and a few regions) is a clear error
    listing what the run has, not "no metrics match the selection"."""
    run_id = full_run(store)
    result = CliRunner().invoke(cli, ["show", run_id, "-m", "unobtainium", "-r", "JPN", "--store", str(store.path)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "--mineral unobtainium: not in run" in text and "--region JPN: not in run" in text
    assert "whose stored regions and blocs are" in text


def test_export_command_and_errors(store, cli, tmp_path):
    run_id = full_run(store)
    runner = CliRunner()
    out = tmp_path / "exported"
    result = runner.invoke(cli, ["export", run_id, "--format", "csv", "-o", str(out), "--store", str(store.path)])
    assert result.exit_code == 0, result.output
    assert (out / "cube.csv").exists()
    bad = runner.invoke(cli, ["export", run_id, "--format", "xml", "-o", str(out), "--store", str(store.path)])
    assert bad.exit_code == 2 and "parquet or csv" in bad.output
    missing = runner.invoke(cli, ["show", "r-nope", "--store", str(store.path)])
    assert missing.exit_code == 2 and "no run 'r-nope'" in missing.output


def test_runs_command_flags_a_run_whose_process_is_gone(store, cli):
    run_id = new_run(store)
    with duckdb.connect(str(store.path)) as con:
        con.execute("UPDATE runs SET pid = 999999999 WHERE run_id = ?", [run_id])
    result = CliRunner().invoke(cli, ["runs", "--store", str(store.path)])
    assert result.exit_code == 0 and "process is gone" in result.output


def test_export_folds_other_dimensions_into_the_variable_name(store, tmp_path):
    run_id = new_run(store, n_draws=2)
    cube = make_cube([0, 1]).assign(
        surplus_change=(("draw", "component", "region"), np.arange(12.0).reshape(2, 2, 3) + 1),
        dependence=(("draw", "supplier", "region"), np.full((2, 1, 3), 0.5)),
    )
    cube = cube.assign_coords(component=["consumer", "producer"], supplier=["CHN"])
    store.write_chunk(run_id, 0, [0, 1], cube, make_metrics([0, 1]))
    back = store.load_cube(run_id)
    np.testing.assert_array_equal(back["surplus_change"].values, cube["surplus_change"].values)
    store.export(run_id, "csv", tmp_path / "folded")
    table = pd.read_csv(tmp_path / "folded" / "cube.csv")
    names = set(table["variable"])
    assert {"surplus_change.consumer", "surplus_change.producer", "dependence"} <= names
    assert set(table.loc[table["variable"] == "dependence", "partner"]) == {"CHN"}
    consumer = table[(table["variable"] == "surplus_change.consumer") & (table["draw"] == 1)]
    assert consumer.sort_values("region")["value"].tolist() == [7.0, 8.0, 9.0]
