"""The calibration identity: with no policy, the base-year equilibrium is the observed base year."""

from __future__ import annotations

import numpy as np
import pytest

from critmin.data.calibrate import calibrate
from critmin.data.world import load_world
from critmin.market.build import MarketLayout, build_instances, read_outcome, topology_with_yields
from critmin.market.solvers import get_solver
from critmin.policy.effects import PeriodInputs

TOLERANCE = 0.005  # 0.5%, DESIGN §3


@pytest.fixture(scope="module")
def calibrated():
    world = load_world()
    return world, calibrate(world)


def _solve_base(cal, solver_name: str):
    layout = MarketLayout.for_mineral(cal)
    topology = topology_with_yields(layout, [cal])
    data = build_instances(layout, [cal], [PeriodInputs(demand_scale=cal.demand_index[0])], [cal.mineral])
    solution = get_solver(solver_name).solve(topology, data)
    return read_outcome(layout, solution, 0, cal.yields)


def _close(model: np.ndarray, observed: np.ndarray, scale: float) -> np.ndarray:
    """Relative gap, judged against the observed value (and a negligible floor for zeros)."""
    return np.abs(model - observed) / np.maximum(np.abs(observed), 1e-9 * scale)


@pytest.mark.parametrize("solver_name", ["engine"])
def test_base_year_reproduces_observations_for_every_mineral(calibrated, solver_name):
    world, cals = calibrated
    assert set(cals) == set(world.minerals)
    for mineral, cal in cals.items():
        out = _solve_base(cal, solver_name)
        scale = cal.quantity_scale
        produced = cal.base_production > 0
        gap = _close(out.production, cal.base_production, scale)
        assert gap[produced].max() <= TOLERANCE, f"{mineral}: output off by {gap[produced].max():.2%}"
        assert np.abs(out.production[~produced]).max(initial=0.0) <= 1e-6 * scale
        used = cal.base_consumption > 0
        gap = _close(out.consumption, cal.base_consumption, scale)
        assert gap[used].max() <= TOLERANCE, f"{mineral}: consumption off by {gap[used].max():.2%}"
        shipped = cal.base_flow > 1e-6 * scale
        gap = _close(out.flow, cal.base_flow, scale)
        assert gap[shipped].max() <= TOLERANCE, f"{mineral}: flows off by {gap[shipped].max():.2%}"
        assert np.abs(out.flow[cal.base_flow == 0]).max(initial=0.0) <= 1e-6 * scale
        # prices where the product is used (every observed market)
        active = cal.base_use() > 0
        gap = _close(out.price, cal.base_price, cal.price_scale)
        assert gap[active].max() <= TOLERANCE, f"{mineral}: prices off by {gap[active].max():.2%}"


def test_base_year_of_baseline_run_matches_the_data(calibrated):
    from critmin.results.dataset import to_dataset
    from critmin.simulate.run import run_scenario
    from critmin.simulate.scenario import Scenario

    world, cals = calibrated
    ds = to_dataset(run_scenario(Scenario(name="base-only", start=world.base_year, end=world.base_year)))
    for mineral, cal in cals.items():
        model = ds["production"].sel(mineral=mineral, period=world.base_year, stage=list(cal.stages)).values
        observed = cal.base_production
        produced = observed > 0
        assert np.allclose(model[produced], observed[produced], rtol=TOLERANCE), mineral


def test_use_balances_output_in_the_data(calibrated):
    _, cals = calibrated
    for mineral, cal in cals.items():
        out = cal.base_production.sum(axis=1)
        use = cal.base_use().sum(axis=1)
        assert np.allclose(out, use, rtol=1e-6), mineral
