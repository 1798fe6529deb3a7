"""Ensembles: samplers, draw application, reproducibility across executors, and the stored results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from critmin.core.errors import ScenarioError
from critmin.ensemble.draws import apply_draw
from critmin.ensemble.sampling import draw_table, uniforms
from critmin.simulate.scenario import scenario_from_dict
from critmin.simulate.uncertainty import Uncertainty


def _unc(*params, sampler="lhs", correlations=()):
    return Uncertainty.model_validate(
        {"sampler": sampler, "parameters": list(params), "correlations": [list(c) for c in correlations]}
    )


@pytest.mark.parametrize("sampler", ["lhs", "mc"])
def test_distributions_have_their_moments(sampler):
    n = 4000
    unc = _unc(
        {"path": "a", "dist": "uniform", "low": 2, "high": 6},
        {"path": "b", "dist": "triangular", "low": 0, "mode": 1, "high": 4},
        {"path": "c", "dist": "normal", "mean": 5, "sd": 2},
        {"path": "d", "dist": "lognormal", "mean": 0, "sd": 0.5},
        {"path": "e", "dist": "beta", "a": 2, "b": 5},
        {"path": "f", "dist": "bernoulli", "p": 0.3},
        {"path": "g", "dist": "choice", "values": ["x", "y", "z"], "weights": [0.5, 0.3, 0.2]},
        sampler=sampler,
    )
    t = draw_table(unc, n, seed=11)
    tol = 0.05
    assert t["a"].mean() == pytest.approx(4.0, rel=tol)
    assert t["b"].mean() == pytest.approx(5 / 3, rel=tol)
    assert t["c"].mean() == pytest.approx(5.0, rel=tol) and t["c"].std() == pytest.approx(2.0, rel=tol)
    assert t["d"].mean() == pytest.approx(np.exp(0.125), rel=tol)
    assert t["e"].mean() == pytest.approx(2 / 7, rel=tol)
    assert t["f"].mean() == pytest.approx(0.3, abs=0.03)
    freq = t["g"].value_counts(normalize=True)
    assert freq["x"] == pytest.approx(0.5, abs=0.03) and freq["z"] == pytest.approx(0.2, abs=0.03)
    # Kolmogorov-Smirnov against the exact law
    assert stats.kstest(t["a"], stats.uniform(loc=2, scale=4).cdf).pvalue > 0.01
    assert stats.kstest(t["c"], stats.norm(loc=5, scale=2).cdf).pvalue > 0.01


def test_latin_hypercube_is_stratified():
    n = 50
    u = uniforms(
        _unc({"path": "a", "dist": "uniform", "low": 0, "high": 1}, {"path": "b", "dist": "bernoulli", "p": 0.5}), n, 3
    )
    for j in range(2):
        strata = np.floor(u[:, j] * n).astype(int)
        assert sorted(strata) == list(range(n))


def test_same_seed_same_table_and_mc_draws_do_not_depend_on_n():
    unc = _unc({"path": "a", "dist": "normal", "mean": 0, "sd": 1}, sampler="mc")
    a = draw_table(unc, 20, seed=5)
    b = draw_table(unc, 20, seed=5)
    pd.testing.assert_frame_equal(a, b)
    longer = draw_table(unc, 40, seed=5)
    np.testing.assert_array_equal(longer["a"].values[:20], a["a"].values)
    assert not np.allclose(draw_table(unc, 20, seed=6)["a"].values, a["a"].values)


def test_rank_correlation_is_imposed():
    unc = _unc(
        {"path": "a", "dist": "uniform", "low": 0, "high": 1},
        {"path": "b", "dist": "lognormal", "mean": 0, "sd": 1},
        correlations=[("a", "b", -0.7)],
    )
    t = draw_table(unc, 3000, seed=1)
    rho = stats.spearmanr(t["a"], t["b"])[0]
    assert rho == pytest.approx(-0.7, abs=0.05)


def test_dates_and_units_are_drawn():
    unc = _unc(
        {"path": "start", "dist": "uniform", "low": "2026-11-10", "high": "2027-11-10"},
        {"path": "floor", "dist": "uniform", "low": "90 USD/kg", "high": "130 USD/kg"},
    )
    t = draw_table(unc, 100, seed=2)
    import datetime as dt

    assert all(dt.date(2026, 11, 10) <= d <= dt.date(2027, 11, 10) for d in t["start"])
    assert all(s.endswith("USD/kg") for s in t["floor"])


def _scenario():
    return scenario_from_dict(
        {
            "name": "toy-ens",
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
                {"kind": "cfd", "name": "floor", "floor": "20 USD/kg", "eligible": "AUS", "stage": "mine"},
            ],
            "uncertainty": {
                "parameters": [
                    {"path": "instruments.ban.enabled", "dist": "bernoulli", "p": 0.5},
                    {"path": "instruments.ban.leakage_share", "dist": "uniform", "low": 0.0, "high": 0.3},
                    {"path": "instruments.floor.floor", "dist": "uniform", "low": "10 USD/kg", "high": "30 USD/kg"},
                    {"path": "world.lithium.demand_elasticity.ev", "dist": "uniform", "low": -0.6, "high": -0.1},
                    {"path": "world.*.demand_growth", "dist": "uniform", "low": 0.5, "high": 1.5},
                    {"path": "dynamics.demand_half_life", "dist": "uniform", "low": 2, "high": 5},
                ]
            },
        }
    )


def test_apply_draw_sets_fields_and_world_overrides():
    spec = _scenario()
    row = {
        "instruments.ban.enabled": False,
        "instruments.ban.leakage_share": 0.2,
        "instruments.floor.floor": "25 USD/kg",
        "world.lithium.demand_elasticity.ev": -0.3,
        "world.*.demand_growth": 1.2,
        "dynamics.demand_half_life": 4.0,
    }
    drawn, over = apply_draw(spec, row, ["lithium"])
    assert drawn.instruments[0].enabled is False
    assert drawn.instruments[0].leakage_share == 0.2
    assert drawn.instruments[1].floor == pytest.approx(25_000.0)
    assert drawn.dynamics.demand_half_life == 4.0
    assert over.demand_elasticity == {"lithium": {"ev": -0.3}}
    assert over.demand_growth == {"lithium": 1.2}


@pytest.mark.parametrize(
    "path",
    ["instruments.nope.enabled", "instruments.ban.no_such_field", "world.lithium.colour", "budget.x", "dynamics.zz"],
)
def test_bad_paths_raise_scenario_errors(path):
    with pytest.raises(ScenarioError) as err:
        apply_draw(_scenario(), {path: 1.0}, ["lithium"])
    assert path.split(".")[0] in str(err.value) or "uncertainty" in str(err.value)


def test_an_unknown_instrument_in_a_path_says_what_the_scenario_has():
    with pytest.raises(ScenarioError, match="no instrument named 'nope'; named: ban"):
        apply_draw(_scenario(), {"instruments.nope.enabled": 1.0}, ["lithium"])
    bare = scenario_from_dict({"name": "bare", "world": "toy"})
    with pytest.raises(ScenarioError, match="no instrument named 'nope'; the scenario has no instruments"):
        apply_draw(bare, {"instruments.nope.enabled": 1.0}, ["lithium"])
    with pytest.raises(ScenarioError, match=r"index 3 is out of range \(the scenario has 0 instruments\)"):
        apply_draw(bare, {"instruments.3.enabled": 1.0}, ["lithium"])


def test_invalid_drawn_value_names_the_field():
    with pytest.raises(ScenarioError, match="leakage_share"):
        apply_draw(_scenario(), {"instruments.ban.leakage_share": 1.5}, ["lithium"])


def test_elasticity_draw_keeps_the_base_year_point():
    from critmin.data.calibrate import calibrate, with_parameters
    from critmin.simulate.run import resolve_world

    cal = calibrate(resolve_world("toy"))["lithium"]
    new = with_parameters(cal, demand_elasticity={"ev": -0.9}, supply_elasticity={"mine": 0.9})
    k = cal.sectors.index("ev")
    s = cal.sector_stage[k]
    c0 = cal.base_consumption[:, k]
    has = c0 > 0
    np.testing.assert_allclose((new.demand_intercept[:, k] - new.demand_slope[:, k] * c0)[has], cal.base_price[s][has])
    q0 = cal.base_production[0]
    np.testing.assert_allclose(
        (new.supply_intercept[0] + new.supply_slope[0] * q0)[q0 > 0],
        (cal.supply_intercept[0] + cal.supply_slope[0] * q0)[q0 > 0],
    )
    assert not np.allclose(new.demand_slope[:, k][has], cal.demand_slope[:, k][has])


def test_a_batch_of_draws_gives_each_draw_what_it_gives_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Draws solved together (batched solves, instruments applied to the whole batch, repeated instances
    solved once) get exactly the numbers each gets when run alone: club-vs-ban to 2029 (the ban's onset and
    end, licensing, the reserve's release, floors and levies), four draws of its uncertainty block. Exactly
    with each instance solved from its own start; with shared starts (the default) to the solver's
    tolerance."""
    from critmin.data.calibrate import calibrate
    from critmin.market.engine import BatchedNewtonSolver
    from critmin.results.dataset import to_dataset
    from critmin.simulate import run as run_module
    from critmin.simulate.run import _periods, resolve_world, run_batch, run_calibrated
    from critmin.simulate.scenario import load_scenario

    base = load_scenario("club-vs-ban").model_copy(update={"end": 2029})
    world = resolve_world(base.world)
    cals = calibrate(world)
    names = list(world.minerals)
    table = draw_table(base.uncertainty, 4, seed=11)
    scenarios, draw_cals = [], []
    for row in table.drop(columns="draw").to_dict("records"):
        spec, over = apply_draw(base, row, names)
        scenarios.append(spec)
        draw_cals.append(over.apply({m: cals[m] for m in names}))
    periods = _periods(base, world)
    shared = run_batch(scenarios, draw_cals, periods, world_name=world.name, draws=[0, 1, 2, 3])
    with monkeypatch.context() as m:
        m.setattr(run_module, "get_solver", lambda name: BatchedNewtonSolver(share_starts=False))
        together = run_batch(scenarios, draw_cals, periods, world_name=world.name, draws=[0, 1, 2, 3])
        alone = [
            run_calibrated(spec, c, periods, world_name=world.name)
            for spec, c in zip(scenarios, draw_cals, strict=True)
        ]
    for one, record, near in zip(alone, together, shared, strict=True):
        a, b, c = to_dataset(one), to_dataset(record), to_dataset(near)
        for name in a.data_vars:
            np.testing.assert_array_equal(b[name].values, a[name].values, err_msg=name)
        # quantities and money within the tolerance of each mineral's scale
        for name in a.data_vars:
            if name in ("price", "producer_price") or a[name].dtype.kind not in "fi":
                continue
            if name in ("iterations", "residual", "fixed_point_rounds", "levy_iterations", "levy_residual"):
                continue
            x, y = a[name], c[name]
            others = [d for d in x.dims if d != "mineral"]
            scale = np.abs(x).max(dim=others) if others else np.abs(x)
            worst = float((np.abs(y - x) / (scale + 1e-300)).max())
            assert worst <= 1e-7, (name, worst)
        # prices wherever a node produces, uses or trades more than rounding (elsewhere the equilibrium leaves
        # them open: docs/engine.md, canonical prices)
        size = np.abs(a["production"]).max(dim=["stage", "region", "period"])
        activity = np.maximum(
            np.maximum(a["production"], a["consumption"].sum("sector")), np.maximum(a["imports"], a["exports"])
        )
        busy = activity > 1e-6 * size
        gap = np.abs(c["price"] - a["price"]) / np.abs(a["price"])
        # (a node that uses 1e-4 of the mineral's output, graphite refine THA 2028, moves by 1.4e-6: its share of
        # the 1e-9 tolerance on quantities, times the slope of its demand)
        assert float(gap.where(busy).max()) <= 1e-5
    # the chunk's metrics table is the draws' tables one after the other
    from critmin.ensemble.outputs import chunk_metrics, draw_metrics

    one_by_one = pd.concat([draw_metrics(r, d) for r, d in zip(together, [5, 6, 7, 8], strict=True)], ignore_index=True)
    pd.testing.assert_frame_equal(chunk_metrics(together, [5, 6, 7, 8]), one_by_one, check_exact=True)


def test_an_unknown_name_in_a_world_path_is_a_clear_error():
    from critmin.data.calibrate import calibrate, with_parameters
    from critmin.simulate.run import resolve_world

    cal = calibrate(resolve_world("toy"))["lithium"]
    for changes, words in [
        ({"demand_elasticity": {"nosector": -0.3}}, "no sector 'nosector'"),
        ({"supply_elasticity": {"smelt": 0.5}}, "no stage 'smelt'"),
        ({"capacity": {("mine", "XXX"): 1.2}}, "no region 'XXX'"),
        ({"demand_elasticity": {"ev": 0.2}}, "must be < 0"),
    ]:
        with pytest.raises(ValueError, match=words):
            with_parameters(cal, **changes)


@pytest.mark.parametrize(
    "param, field, words",
    [
        (
            {"path": "instruments.ban.leakage_shar", "dist": "uniform", "low": 0, "high": 0.3},
            "uncertainty: instruments.ban.leakage_shar",
            "no field 'leakage_shar'",
        ),
        (
            {"path": "world.lithium.demand_elasticity.nosector", "dist": "uniform", "low": -0.5, "high": -0.1},
            "uncertainty: world.lithium",
            "no sector 'nosector'",
        ),
        (
            # above 1 in a tenth of the draws (stratified: 3 or 4 of 40): every draw is checked, not one
            {"path": "instruments.ban.leakage_share", "dist": "uniform", "low": 0.5, "high": 1.05},
            "uncertainty: instruments.ban.leakage_share",
            "a drawn value is invalid",
        ),
    ],
)
def test_an_ensemble_whose_draws_do_not_apply_stores_nothing(tmp_path, param, field, words):
    from critmin.results.ensemble import run_ensemble
    from critmin.results.store import Store

    data = _scenario().model_dump(mode="json")
    data["uncertainty"] = {"parameters": [param]}
    spec = scenario_from_dict(data)
    store = Store(tmp_path / "s.duckdb")
    with pytest.raises(ScenarioError) as err:
        run_ensemble(spec, draws=40, store=store, executor="inline")
    assert err.value.field == field and words in err.value.reason
    assert err.value.file == f"scenario {spec.name}"
    assert store.list_runs().empty


def test_an_unreachable_scheduler_is_a_clear_error_and_the_run_can_be_resumed(tmp_path):
    import dask
    import distributed  # noqa: F401  # its config defaults first: the block below restores them on exit

    from critmin.core.errors import CritminError
    from critmin.results.ensemble import run_ensemble
    from critmin.results.store import Store

    store = Store(tmp_path / "s.duckdb")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), pytest.raises(CritminError) as err:
        run_ensemble(_scenario(), draws=2, store=store, scheduler="tcp://127.0.0.1:9", load=False)
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in str(err.value)
    run_id = err.value.run_id  # type: ignore[attr-defined]
    assert store.get_run(run_id)["status"] == "failed"
    done = run_ensemble(resume=run_id, store=store, executor="inline", load=False)
    assert done.run_id == run_id and store.get_run(run_id)["status"] == "complete"


def test_a_bad_chunk_size_stores_nothing(tmp_path):
    from critmin.core.errors import CritminError
    from critmin.results.ensemble import run_ensemble
    from critmin.results.store import Store

    store = Store(tmp_path / "s.duckdb")
    with pytest.raises(CritminError, match="chunk size must be at least 1"):
        run_ensemble(_scenario(), draws=2, store=store, chunk_size=0, executor="inline")
    assert store.list_runs().empty


@pytest.mark.parametrize("workers", [0, -1])
def test_fewer_than_one_worker_is_refused_before_anything_is_stored(tmp_path, workers):
    from critmin.core.errors import CritminError
    from critmin.results.ensemble import run_ensemble
    from critmin.results.store import Store

    store = Store(tmp_path / "s.duckdb")
    with pytest.raises(CritminError, match="workers must be at least 1"):
        run_ensemble(_scenario(), draws=2, store=store, workers=workers, executor="local")
    assert store.list_runs().empty


def test_rank_correlation_with_fewer_draws_than_inputs():
    # 8 draws of 10 inputs: the scores cannot fill 10 independent columns, so only the correlated pair is
    # reordered (this raised "Matrix is not positive definite" before)
    params = [{"path": f"p{i}", "dist": "uniform", "low": 0, "high": 1} for i in range(10)]
    plain = draw_table(_unc(*params), 8, seed=3)
    t = draw_table(_unc(*params, correlations=[("p0", "p1", 0.9)]), 8, seed=3)
    assert stats.spearmanr(t["p0"], t["p1"])[0] > 0.6
    for i in range(2, 10):
        assert t[f"p{i}"].tolist() == plain[f"p{i}"].tolist()  # the others as sampled
    assert sorted(t["p0"]) == sorted(plain["p0"])  # a reordering: the Latin hypercube's strata kept
    # more correlated inputs than draws: nothing to reorder them with, the draws stay as sampled
    many = [(f"p{i}", f"p{i + 1}", 0.3) for i in range(9)]
    assert draw_table(_unc(*params, correlations=many), 8, seed=3).equals(plain)
