"""Every built-in scenario reproduces its stored reference results (regenerate with
``python scripts/regenerate_references.py`` after a deliberate change, and review the diff)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from critmin.simulate.scenario import builtin_names

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from regenerate_references import REFERENCE_DIR, reference_table  # noqa: E402


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_scenario_matches_stored_reference(name):
    path = REFERENCE_DIR / f"{name}.csv"
    assert path.exists(), f"no stored reference for {name}: run scripts/regenerate_references.py {name}"
    stored = pd.read_csv(path, keep_default_na=False, dtype={"period": str})
    fresh = reference_table(name)
    keys = ["variable", "mineral", "stage", "region", "partner", "sector", "period"]
    stored = stored.astype({k: str for k in keys}).set_index(keys)["value"].astype(float)
    fresh = fresh.astype({k: str for k in keys}).set_index(keys)["value"].astype(float)
    missing = stored.index.difference(fresh.index)
    extra = fresh.index.difference(stored.index)
    assert missing.empty and extra.empty, f"{name}: rows differ (missing {list(missing[:3])}, new {list(extra[:3])})"
    a, b = stored.sort_index(), fresh.sort_index()
    scale = np.maximum(np.abs(a.values), 1e-6 * np.abs(a.values).max())
    worst = np.abs(a.values - b.values) / scale
    i = int(np.argmax(worst))
    assert worst[i] <= 1e-5, f"{name}: {a.index[i]} stored {a.values[i]:.9g}, now {b.values[i]:.9g}"


def test_run_is_the_same_on_one_thread_and_on_two():
    """A run solves the minerals of each period together (on the engine's threads when it has several):
    every number is the same, bit for bit, as when they are solved one after the other on one thread."""
    import numba

    from critmin.results.dataset import to_dataset
    from critmin.simulate.run import run_scenario
    from critmin.simulate.scenario import load_scenario

    spec = load_scenario("club-vs-ban")
    before = numba.get_num_threads()
    found = {}
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            found[threads] = to_dataset(run_scenario(spec)).drop_vars("solve_time", errors="ignore")
    finally:
        numba.set_num_threads(before)
    one, two = found.values()
    for name in one.data_vars:
        np.testing.assert_array_equal(one[name].values, two[name].values, err_msg=name)
