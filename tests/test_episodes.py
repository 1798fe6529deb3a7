"""Backtests of the dynamics against two observed episodes (docs/episodes.md, validation/episodes.py).

Each test runs an episode scenario (two or three minerals, eight to twelve quarters, with the tuned
elasticities of validation/episodes/episodes.yaml) and checks the qualitative facts the model reproduces:
the price outside China rises relative to the price in China, its peak lies within a stated band of the
observed peak and comes within a stated number of quarters after the shock, and China's exports fall. The
bands are wide where docs/episodes.md documents a miss (gallium's first months: no inventories in the model);
a change that breaks the dynamics (a spike ten times larger, a peak in the wrong quarter, exports that do not
fall) fails them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "validation" / "episodes.py"


def _load() -> ModuleType:
    name = "critmin_validation_episodes"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


episodes = _load()


@pytest.fixture(scope="module")
def gage():
    return episodes.run_episode("gage_2023")


@pytest.fixture(scope="module")
def ree():
    return episodes.run_episode("ree_2025")


def _by_key(comparisons):
    return {c.key: c for c in comparisons}


def test_tuned_elasticities_lie_in_the_worlds_ranges():
    for name in episodes.EPISODE_NAMES:
        minerals = list(episodes.load_episode_scenario(name).minerals)
        table = episodes.tuning_table(episodes.episode_world(name), minerals)  # raises when out of range
        assert len(table) > 0
        assert ((table["tuned"] >= table["low"]) & (table["tuned"] <= table["high"])).all()


def test_calendar_mapping():
    import datetime as dt

    assert episodes.shift_date(dt.date(2023, 8, 1), 12) == dt.date(2024, 8, 1)
    assert episodes.quarter_of(dt.date(2024, 12, 3)) == "2024-Q4"
    assert episodes._comparison_quarter(dt.date(2023, 7, 3), dt.date(2023, 8, 1)) == "2023-Q2"


def test_preshock_world_sets_parity_prices():
    world = episodes.episode_world("gage_2023")
    price = world.mineral("gallium").price.sel(stage="mine")
    assert float(price.sel(region="EU")) / float(price.sel(region="CHN")) == pytest.approx(257.5 / 245)


# -- rare earths, April 2025 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["dy", "tb"])
def test_ree_outside_price_rises_relative_to_china(ree, key):
    c = _by_key(episodes.compare_prices("ree_2025", ree))[key]
    peak, _, _ = c.model_peak()
    assert c.before == pytest.approx(1.0, abs=0.02)  # 2024 parity: the market before the shock
    assert peak > 2.0 * c.before


@pytest.mark.parametrize("key", ["dy", "tb"])
def test_ree_peak_multiple_within_factor_two_of_observed(ree, key):
    # observed: Dy2O3 3.8x (May 2025), Tb4O7 3.6x (July 2025), Europe over China; model 5.9x and 4.2x
    c = _by_key(episodes.compare_prices("ree_2025", ree))[key]
    peak, _, _ = c.model_peak()
    observed, _, _ = c.observed_peak()
    assert 0.5 * observed <= peak <= 2.0 * observed


@pytest.mark.parametrize("key", ["dy", "tb"])
def test_ree_peak_comes_in_the_shock_quarter_or_the_next(ree, key):
    c = _by_key(episodes.compare_prices("ree_2025", ree))[key]
    _, _, after = c.model_peak()
    _, _, observed_after = c.observed_peak()
    assert 0 <= after <= 1
    assert abs(after - observed_after) <= 1


def test_ree_ndpr_stays_at_parity(ree):
    # NdPr oxide is not controlled: Europe ~5% below China (July 2025), at parity (September 2025)
    c = _by_key(episodes.compare_prices("ree_2025", ree))["ndpr"]
    assert np.all(np.abs(c.model.to_numpy() - 1.0) < 0.1)


def test_ree_china_exports_fall_then_magnets_recover(ree):
    exports = _by_key(episodes.compare_exports("ree_2025", ree))
    magnets = exports["magnets"].model
    assert 0.3 <= magnets["2025-Q2"] <= 0.7  # observed April-June 2025: 0.46 of January-March
    assert magnets["2025-Q3"] >= 0.9  # observed July-September: 1.15
    for key, observed in (("dy", 0.65), ("tb", 0.62)):  # full-year 2025 over 2024
        assert exports[key].extras["annual"][2025] == pytest.approx(observed, abs=0.1)


# -- gallium and germanium, August 2023 - 2025 ---------------------------------------------------------------
def test_gallium_outside_price_rises_relative_to_china(gage):
    c = _by_key(episodes.compare_prices("gage_2023", gage))["gallium"]
    peak, _, _ = c.model_peak()
    assert c.before == pytest.approx(257.5 / 245, rel=0.01)
    assert peak > 2.0 * c.before
    # after the first months the multiple settles: observed ~2x in 2024, ~3x after the ban on the US (2025)
    for quarter, observed in (("2024-Q3", 1.91), ("2025-Q2", 3.07)):
        assert 0.5 * observed <= c.model[quarter] <= 2.0 * observed


def test_gallium_peak_overshoots_within_the_documented_band(gage):
    # documented miss: no inventories in the model, so the near-embargo of August-December 2023 gives ~10x
    # the observed peak (2.0x in December 2023); the band guards against it getting worse (61x with the
    # central elasticities)
    c = _by_key(episodes.compare_prices("gage_2023", gage))["gallium"]
    peak, _, after = c.model_peak()
    observed, _, observed_after = c.observed_peak()
    assert observed <= peak <= 15.0 * observed
    assert 0 <= after <= 2
    assert after == observed_after


def test_gallium_and_germanium_exports_fall(gage):
    exports = _by_key(episodes.compare_exports("gage_2023", gage))
    for key in ("gallium", "germanium"):
        low, _, after = exports[key].model_trough()
        assert low <= 0.25  # observed: 0 in August 2023, 0.04-0.23 in October-November
        assert 0 <= after <= 1
    assert exports["gallium"].model["2024-Q2"] == pytest.approx(0.73, abs=0.15)  # observed 2024 average


def test_germanium_outside_price_rises(gage):
    c = _by_key(episodes.compare_prices("gage_2023", gage))["germanium"]
    prices = c.extras["prices"]
    assert prices.loc["2024-Q3", "outside"] > 2.0 * prices.loc["2023-Q2", "outside"]
    assert c.model["2024-Q3"] > 1.5


def test_germanium_china_price_stays_positive(gage):
    c = _by_key(episodes.compare_prices("gage_2023", gage))["germanium"]
    assert (c.extras["prices"]["china"] > 0).all()
