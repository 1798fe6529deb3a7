"""`critmin run` options: the long table as CSV (optionally compressed) or Parquet by its name; the solver."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from critmin.cli import app
from critmin.core.errors import DataError
from critmin.results.dataset import LONG_COLUMNS, export_format, export_long, to_dataset, to_long
from critmin.simulate.run import run_scenario
from critmin.simulate.scenario import scenario_from_dict


@pytest.fixture(scope="module")
def ds():
    return to_dataset(run_scenario(scenario_from_dict({"name": "toy-export", "world": "toy", "end": 2026})))


@pytest.mark.parametrize(
    "name, fmt",
    [("r.csv", "csv"), ("r.CSV", "csv"), ("r.csv.gz", "csv"), ("r.csv.zip", "csv"), ("r.parquet", "parquet")],
)
def test_the_format_follows_the_name(tmp_path: Path, name: str, fmt: str) -> None:
    assert export_format(tmp_path / name) == fmt


@pytest.mark.parametrize("name", ["r.xlsx", "r", "r.gz", "r.parquet.gz", "r.json"])
def test_a_name_with_no_known_format_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataError, match="--export"):
        export_format(tmp_path / name)


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        export_format(tmp_path / "no" / "r.csv")


@pytest.mark.parametrize("name", ["r.csv", "r.csv.gz", "r.parquet"])
def test_each_format_reads_back_as_the_long_table(ds, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    rows = export_long(ds, path)
    back = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path, keep_default_na=False)
    expected = to_long(ds)
    assert rows == len(expected) == len(back)
    assert list(back.columns) == LONG_COLUMNS
    assert back["value"].astype(float).tolist() == pytest.approx(expected["value"].tolist())
    assert not list(tmp_path.glob("*.partial"))


def test_the_run_command_refuses_an_unwritable_export_before_running(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "baseline", "--export", str(tmp_path / "no" / "r.csv")])
    assert result.exit_code == 2
    assert "does not exist" in " ".join(result.output.split())
    assert "periods x" not in result.output  # nothing was run


def test_compare_refuses_an_unwritable_export_before_running(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["compare", "baseline", "club-2026", "--export", str(tmp_path / "r.xlsx")])
    assert result.exit_code == 2
    assert ".parquet" in " ".join(result.output.split())


def test_an_unknown_solver_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["run", "baseline", "--solver", "foo"])
    assert result.exit_code == 2 and "--solver must be engine or highs" in " ".join(result.output.split())


@pytest.mark.parametrize(
    "args, words",
    [
        (["schema", "-o", "{tmp}/no/schema.json"], "cannot write"),
        (["report", "baseline", "-o", "{tmp}/no/report.html"], "does not exist"),
    ],
)
def test_an_output_in_a_missing_folder_is_a_clear_error(tmp_path: Path, args: list[str], words: str) -> None:
    result = CliRunner().invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2 and words in " ".join(result.output.split())
    assert "running" not in result.output  # the report's check comes before any run


def test_the_run_headline_says_which_stages_each_column_covers() -> None:
    """Output and price are the last stage's; end use and shortfall cover every stage's uses (gallium is bought
    both as primary metal, at the mine stage, and high-purity, at the refine stage): the table names which."""
    from critmin.results.dataset import summary_table

    data = to_dataset(run_scenario(scenario_from_dict({"name": "headline", "minerals": ["gallium"], "end": 2025})))
    table = summary_table(data).set_index("period")
    ga = data.sel(mineral="gallium", period=2024)
    assert table.loc[2024, "stage"] == "refine"
    assert table.loc[2024, "output_t"] == pytest.approx(float(ga["production"].sel(stage="refine").sum()))
    assert table.loc[2024, "end_use_t"] == pytest.approx(float(ga["consumption"].sum()))
    assert table.loc[2024, "end_use_t"] > 2 * table.loc[2024, "output_t"]  # 848 t of uses, 320 t high-purity
    result = CliRunner().invoke(app, ["run", "baseline"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "end use and shortfall over every stage's uses" in " ".join(result.output.split())


def test_compare_runs_over_what_the_scenarios_share(tmp_path: Path) -> None:
    """A scenario over fewer periods (or minerals) than the reference is compared over what both have, and
    the command says what it left out (it used to stop with 'baseline and run differ in labels')."""
    import yaml

    short = tmp_path / "short.yaml"
    short.write_text(yaml.safe_dump({"name": "toy-short", "world": "toy", "end": 2025}), encoding="utf-8")
    full = tmp_path / "full.yaml"
    full.write_text(yaml.safe_dump({"name": "toy-full", "world": "toy", "end": 2027}), encoding="utf-8")
    result = CliRunner().invoke(app, ["compare", str(full), str(short)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Compared over what every run has: lithium, 2024-2025 (left out: toy-full's periods 2026-2027)" in text
    assert "shortfall_peak" in text
    wrong = CliRunner().invoke(app, ["compare", str(full), str(short), "-m", "gallium"])
    assert wrong.exit_code == 2 and "not in every run; they share lithium" in " ".join(wrong.output.split())


def test_an_ensemble_of_a_scenario_without_uncertain_inputs_is_refused(tmp_path: Path) -> None:
    """Every draw would be the same: a clear error before anything is stored, not N identical runs."""
    store = tmp_path / "s.duckdb"
    result = CliRunner().invoke(app, ["ensemble", "baseline", "--draws", "3", "--store", str(store)])
    assert result.exit_code == 2
    assert "has no uncertain inputs" in " ".join(result.output.split())
    assert not store.exists() or "baseline" not in CliRunner().invoke(app, ["runs", "--store", str(store)]).output


def test_the_run_command_summarises_quarterly_periods(tmp_path: Path) -> None:
    """Quarterly labels ("2025-Q1") in the headline table: the summary used to read every period as a year
    and stop with a traceback after the run, before writing the export."""
    target = tmp_path / "q.csv"
    example = Path(__file__).resolve().parents[1] / "examples" / "quarterly.yaml"
    result = CliRunner().invoke(app, ["run", str(example), "--export", str(target)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "2025-Q1" in result.output and target.exists()


def test_a_report_with_a_supplier_the_world_lacks_is_a_clear_error(tmp_path: Path) -> None:
    """--supplier XXX used to fall back silently to the world's first region (the map then showed dependence
    on another country under the user's choice)."""
    import yaml

    scenario = tmp_path / "toy.yaml"
    scenario.write_text(yaml.safe_dump({"name": "toy-report", "world": "toy", "end": 2025}), encoding="utf-8")
    out = tmp_path / "r.html"
    args = ["report", str(scenario), "-o", str(out), "--store", str(tmp_path / "s.duckdb")]
    bad = CliRunner().invoke(app, [*args, "--supplier", "XXX"])
    assert bad.exit_code == 2 and "supplier 'XXX' is not a region of" in " ".join(bad.output.split())
    assert not out.exists()
    good = CliRunner().invoke(app, [*args, "--supplier", "AUS"])
    assert good.exit_code == 0, good.output
    assert out.exists()
