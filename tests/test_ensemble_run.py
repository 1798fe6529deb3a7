"""Ensembles end to end: the same seed gives the same stored numbers on every executor and worker count, and a
killed ensemble resumes to exactly the draws of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from critmin.results.ensemble import run_ensemble
from critmin.results.store import Store

SCENARIO = {
    "name": "toy-ensemble",
    "world": "toy",
    "start": 2024,
    "end": 2027,
    "blocs": {"club": {"members": ["USA", "AUS"]}},
    "instruments": [
        {
            "kind": "export_control",
            "name": "ban",
            "mode": "ban",
            "exporter": "CHN",
            "targets": "club",
            "start": "2025-07-01",
            "leakage_share": 0.1,
        },
        {
            "kind": "reserve",
            "name": "vault",
            "owner": "USA",
            "stage": "refine",
            "initial_stock": 200,
            "release": {"rate": 400, "trigger_price": "40 USD/kg"},
        },
    ],
    "uncertainty": {
        "sampler": "lhs",
        "parameters": [
            {"path": "instruments.ban.enabled", "dist": "bernoulli", "p": 0.6},
            {"path": "instruments.ban.leakage_share", "dist": "uniform", "low": 0.0, "high": 0.3},
            {
                "path": "instruments.vault.release.trigger_price",
                "dist": "uniform",
                "low": "30 USD/kg",
                "high": "60 USD/kg",
            },
            {
                "path": "world.lithium.demand_elasticity.ev",
                "dist": "triangular",
                "low": -0.6,
                "mode": -0.3,
                "high": -0.1,
            },
            {"path": "world.*.demand_growth", "dist": "uniform", "low": 0.5, "high": 1.5},
        ],
    },
}


def _metrics(store: Path, run_id: str) -> pd.DataFrame:
    m = Store(store).load_metrics(run_id)
    return m.sort_values(["draw", "metric", "mineral", "region", "period"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scen") / "toy-ensemble.yaml"
    path.write_text(yaml.safe_dump(SCENARIO), encoding="utf-8")
    return path


def test_same_seed_same_results_on_every_executor(tmp_path, scenario_file):
    runs = {}
    for label, executor, workers in (("inline", "inline", 1), ("local2", "local", 2), ("dask2", "dask", 2)):
        store = tmp_path / f"{label}.duckdb"
        result = run_ensemble(
            scenario_file, draws=9, seed=3, executor=executor, workers=workers, store=store, chunk_size=3
        )
        assert sorted(result.draws["draw"]) == list(range(9))
        assert Store(store).get_run(result.run_id)["status"] == "complete"
        runs[label] = _metrics(store, result.run_id)
    pd.testing.assert_frame_equal(runs["inline"], runs["local2"])
    pd.testing.assert_frame_equal(runs["inline"], runs["dask2"])
    # and the draws really differ from each other
    peak = runs["inline"].query("metric == 'price' and region == 'USA'").groupby("draw")["value"].max()
    assert peak.nunique() > 1


def test_ensemble_returns_a_labelled_cube_and_table_of_draws(tmp_path, scenario_file):
    result = run_ensemble(scenario_file, draws=4, seed=1, executor="inline", store=tmp_path / "s.duckdb", chunk_size=2)
    assert result.cube["price"].dims[0] == "draw"
    assert list(result.cube["draw"].values) == [0, 1, 2, 3]
    assert "instruments.ban.enabled" in result.draws.columns


def test_killed_ensemble_resumes_to_the_uninterrupted_result(tmp_path, scenario_file):
    store = tmp_path / "killed.duckdb"
    env = {**os.environ, "CRITMIN_STORE": str(store)}
    cmd = [
        sys.executable,
        "-m",
        "critmin.cli",
        "ensemble",
        str(scenario_file),
        "--draws",
        "12",
        "--seed",
        "5",
        "--executor",
        "inline",
        "--chunk",
        "2",
        "--store",
        str(store),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    parts = Path(str(store) + ".parts")
    deadline = time.time() + 240
    while time.time() < deadline:
        files = list(parts.rglob("*.parquet")) if parts.exists() else []
        if len(files) >= 2 or proc.poll() is not None:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the ensemble finished before it could be killed: make it longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    runs = Store(store).list_runs()
    assert len(runs) == 1
    run_id = str(runs.iloc[0]["id"])
    assert runs.iloc[0]["status"] != "complete"
    done_before = Store(store).completed_draws(run_id)
    assert 0 < len(done_before) < 12
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "critmin.cli",
            "ensemble",
            "--resume",
            run_id,
            "--executor",
            "inline",
            "--store",
            str(store),
            "--region",
            "club",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    printed = [line for line in resumed.stdout.splitlines() if line.startswith("\u2502")]  # the risk table's rows
    assert printed and all(" club " in line for line in printed)  # --region selects what is printed
    assert "\u2026" not in resumed.stdout  # and nothing in it is cut short
    assert Store(store).get_run(run_id)["status"] == "complete"
    assert Store(store).completed_draws(run_id) == set(range(12))
    whole = tmp_path / "whole.duckdb"
    full = run_ensemble(scenario_file, draws=12, seed=5, executor="inline", store=whole, chunk_size=2)
    a = _metrics(store, run_id)
    b = _metrics(whole, full.run_id)
    assert a["draw"].nunique() == 12
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("what", ["code", "data"])
def test_a_run_computed_by_other_code_or_data_is_not_resumed(tmp_path, scenario_file, what):
    """Resuming mixes the stored draws with new ones: refused where the code or the world's data differ from
    what computed the stored draws (the code version carries a hash of the package's source)."""
    import duckdb

    from critmin.core.errors import CritminError
    from critmin.ensemble.runner import ChunkPayload
    from critmin.results import ensemble

    assert ensemble.code_version().startswith("critmin-") and "+" in ensemble.code_version()
    path = tmp_path / "s.duckdb"

    def stop(payloads: list[ChunkPayload], **kwargs: object) -> None:
        raise KeyboardInterrupt  # interrupted before any chunk: the run is left to resume

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ensemble, "execute", stop)
        with pytest.raises(KeyboardInterrupt):
            run_ensemble(scenario_file, draws=2, seed=1, executor="inline", store=path, chunk_size=1)
    run_id = Store(path).list_runs()["id"].iloc[0]
    con = duckdb.connect(str(path))
    con.execute(f"UPDATE runs SET {what}_version = 'an-older-version' WHERE run_id = ?", [run_id])
    con.close()
    with pytest.raises(CritminError, match=f"{what} version an-older-version.*start a new run"):
        run_ensemble(resume=run_id, executor="inline", store=path)
    assert Store(path).get_run(run_id)["status"] == "interrupted"  # left as it was, resumable by that version
