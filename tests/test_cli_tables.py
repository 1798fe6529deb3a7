"""Command-line tables: no number is cut, whatever the width of the console."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from rich.console import Console

from critmin.cli_tables import frame_table, print_table

ELLIPSIS = "\u2026"


def wide_frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "outcome": [f"peak shortfall_share of sector {i} [1]" for i in range(4)],
            **{f"quantile {q}": rng.normal(1e6, 3e5, 4) for q in ("P5", "P25", "P50", "P75", "P95")},
            "driver": ["instruments.cn-ban-on-club.leakage_share (-0.69)"] * 4,
        }
    )


def printed(console: Console, df: pd.DataFrame) -> str:
    print_table(console, frame_table(df, "a wide table", floatfmt="{:,.6g}"))
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_a_console_that_is_not_a_terminal_gets_the_natural_width():
    df = wide_frame()
    out = printed(Console(file=io.StringIO(), width=80), df)
    body = [line for line in out.splitlines() if line.startswith("\u2502")]  # the rows' lines
    assert len(body) == len(df)  # one line per row: nothing wrapped
    assert ELLIPSIS not in out
    for value in df["quantile P50"]:
        assert f"{value:,.6g}" in out
    assert df["driver"][0] in out


def test_a_narrow_terminal_wraps_text_but_keeps_every_number_whole():
    df = wide_frame()
    out = printed(Console(file=io.StringIO(), width=60, force_terminal=True, color_system=None), df)
    assert ELLIPSIS not in out
    for column in [c for c in df.columns if c.startswith("quantile")]:
        for value in df[column]:
            assert f"{value:,.6g}" in out
    assert max(len(line) for line in out.splitlines()) > 60  # wider than the terminal where it must be


def test_a_table_that_fits_is_printed_as_usual():
    df = pd.DataFrame({"mineral": ["ndpr", "dy"], "price": [142.4, 378.4]})
    out = printed(Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None), df)
    assert "142.4" in out and "378.4" in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_labels_are_text_not_markup():
    df = pd.DataFrame({"outcome": ["peak price [USD/t]", "total fiscal_cost [bold]"], "value": [1.0, 2.0]})
    out = printed(Console(file=io.StringIO(), width=80), df)
    assert "[USD/t]" in out and "[bold]" in out


def test_compare_shows_differences_within_the_solvers_tolerance_as_zero() -> None:
    from critmin.cli import with_differences

    table = pd.DataFrame(
        {"a": [0.4146, 1.0e12, 5.0, float("nan"), 0.0], "b": [0.4146 - 1.1e-16, 1.0e12 + 3.0, 5.1, 1.0, 0.0]}
    )
    out = with_differences(table, ["a", "b"])
    diff = out["b - a"].tolist()
    assert diff[0] == 0.0 and diff[1] == 0.0  # rounding, and 3e-12 relative
    assert abs(diff[2] - 0.1) < 1e-12 and pd.isna(diff[3]) and diff[4] == 0.0


def test_the_reports_differences_within_the_solvers_tolerance_are_zero() -> None:
    from critmin.report.html import fmt_diff

    assert fmt_diff(0.4146, 0.4146 - 1.1e-16, "1") == "+0.0 pp"
    assert fmt_diff(0.25, 0.2, "1") == "-5.0 pp"
    assert fmt_diff(2.0e9, 2.0e9 + 1e-3, "USD") == "+0.0 M USD"
    assert fmt_diff(None, 1.0, "1") == "–"


def test_the_outcomes_of_one_draw_are_shown_as_values() -> None:
    from critmin.cli_store import risk_view
    from critmin.results.risk import risk_table

    draws = pd.DataFrame({"draw": [0]})
    metrics = pd.DataFrame(
        {
            "draw": [0, 0],
            "metric": ["price", "price"],
            "mineral": ["ndpr", "ndpr"],
            "region": ["world", "world"],
            "period": [2024, 2025],
            "value": [100.0, 250.0],
            "unit": ["USD/t", "USD/t"],
        }
    )
    console = Console(file=io.StringIO(), width=200)
    print_table(console, risk_view(risk_table(draws, metrics)))
    text = console.file.getvalue()
    assert "Outcomes of the run" in text and "value" in text and "250" in text
    assert "P50" not in text and "driver" not in text
