"""Regenerate the stored reference results of every built-in scenario (tests/reference/*.csv).

Run after a deliberate change of the model or data, review the diff, and commit it:

    .venv/bin/python scripts/regenerate_references.py            # all built-in scenarios
    .venv/bin/python scripts/regenerate_references.py baseline   # some of them

The test ``tests/test_reference_results.py`` re-runs each scenario and compares with these files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "tests" / "reference"
#: What is kept: prices and output by stage and region, use by region, and the money the instruments move.
VARIABLES = ("price", "production", "consumption", "fiscal_cost", "levy_revenue", "tariff_revenue", "reserve_stock")


def reference_table(name: str) -> pd.DataFrame:
    from critmin.results.dataset import to_dataset, to_long
    from critmin.simulate.run import run_scenario
    from critmin.simulate.scenario import load_scenario

    ds = to_dataset(run_scenario(load_scenario(name)))
    ds["consumption"] = ds["consumption"].sum("sector", min_count=1)
    ds["consumption"].attrs["unit"] = "t/yr"
    present = [v for v in VARIABLES if v in ds]
    table = to_long(ds, present)
    table = table[table["value"].abs() > 1e-9]
    return table.sort_values(["variable", "mineral", "stage", "region", "period"]).reset_index(drop=True)


def main(names: list[str]) -> None:
    from critmin.simulate.scenario import builtin_names

    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    for name in names or builtin_names():
        table = reference_table(name)
        path = REFERENCE_DIR / f"{name}.csv"
        table.to_csv(path, index=False, float_format="%.9g")
        print(f"wrote {len(table):,} rows to {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
