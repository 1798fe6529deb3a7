"""Every instrument on a market small enough to solve by hand (see ``tiny_market``)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from critmin.core.arrays import stack_rows
from critmin.data.calibrate import calibrate
from critmin.market.build import MarketLayout, build_instances
from critmin.policy.base import Ledger, MineralContext, PeriodContext, full_inputs, full_inputs_batch
from critmin.policy.blocs import Bloc
from critmin.policy.controls import ExportControl, controller_content
from critmin.policy.effects import MineralOutcome, PeriodInputs, SegmentSpec, whole_batch_field
from critmin.results.dataset import to_dataset
from critmin.simulate.run import resolve_world, run_calibrated
from critmin.simulate.scenario import scenario_from_dict
from tiny_market import free_trade_prices, two_region_market

T = 4.0


def run(instruments: list[dict], *, years: tuple[int, ...] = (2024,), blocs: dict | None = None, **market):
    cal = two_region_market(t=T, **market)
    spec = scenario_from_dict(
        {
            "name": "tiny",
            "world": "toy",
            "instruments": instruments,
            "blocs": blocs or {},
            "dynamics": {"long_run_demand": False},
        }
    )
    return to_dataset(run_calibrated(spec, {"tiny": cal}, years))


def price(ds, region: str, year: int = 2024) -> float:
    return float(ds["price"].sel(mineral="tiny", stage="refine", region=region, period=year))


def flow(ds, origin: str, dest: str, year: int = 2024) -> float:
    return float(ds["flow"].sel(mineral="tiny", stage="refine", region=origin, partner=dest, period=year))


def test_free_trade_matches_hand_solution():
    ds = run([])
    p_a, p_b = free_trade_prices(T)
    assert price(ds, "AAA") == pytest.approx(p_a, abs=1e-3)
    assert price(ds, "BBB") == pytest.approx(p_b, abs=1e-3)
    assert flow(ds, "AAA", "BBB") == pytest.approx(15 - T, abs=1e-3)


def test_ban_gives_autarky_prices():
    ds = run([{"kind": "export_control", "mode": "ban", "exporter": "AAA", "targets": "BBB"}])
    assert price(ds, "AAA") == pytest.approx(55.0, abs=1e-3)
    assert price(ds, "BBB") == pytest.approx(70.0, abs=1e-3)
    assert flow(ds, "AAA", "BBB") == pytest.approx(0.0, abs=1e-9)


def test_ban_for_half_a_year_removes_half_the_flow():
    ds = run([{"kind": "export_control", "mode": "ban", "exporter": "AAA", "targets": "BBB", "start": "2024-07-02"}])
    # the reference flow is the base-year flow (15 - T); half of it stays allowed and binds
    assert flow(ds, "AAA", "BBB") == pytest.approx((15 - T) * 0.5, rel=1e-2)


def test_binding_quota_earns_rent_equal_to_price_gap():
    ds = run([{"kind": "export_control", "mode": "quota", "exporter": "AAA", "targets": "BBB", "quota": 5}])
    # A exports 5: (p_A - 10) - (100 - p_A) = 5 -> p_A = 57.5; B imports 5 -> p_B = 67.5
    assert price(ds, "AAA") == pytest.approx(57.5, abs=1e-3)
    assert price(ds, "BBB") == pytest.approx(67.5, abs=1e-3)
    rent_per_t = price(ds, "BBB") - price(ds, "AAA") - T
    assert float(ds["quota_rent"].sel(mineral="tiny", region="AAA", period=2024)) == pytest.approx(
        rent_per_t * 5, rel=1e-4
    )


def test_quota_as_share_of_base_exports():
    ds = run([{"kind": "export_control", "mode": "quota", "exporter": "AAA", "targets": "BBB", "quota_share": 0.5}])
    assert flow(ds, "AAA", "BBB") == pytest.approx(0.5 * (15 - T), rel=1e-6)


def test_licensing_approves_a_share_and_adds_a_cost():
    ds = run(
        [
            {
                "kind": "export_control",
                "mode": "licensing",
                "exporter": "AAA",
                "targets": "BBB",
                "approval_share": 0.25,
                "cost": 1.0,
            }
        ]
    )
    assert flow(ds, "AAA", "BBB") == pytest.approx(0.25 * (15 - T), rel=1e-6)


def test_leakage_lets_a_share_through_at_a_markup():
    ds = run(
        [
            {
                "kind": "export_control",
                "mode": "ban",
                "exporter": "AAA",
                "targets": "BBB",
                "leakage_share": 0.2,
                "leakage_markup": 0.05,
            }
        ]
    )
    assert flow(ds, "AAA", "BBB") == pytest.approx(0.2 * (15 - T), rel=1e-6)


def test_per_unit_tariff_acts_like_transport_cost_and_raises_revenue():
    tau = 2.0
    ds = run([{"kind": "tariff", "importer": "BBB", "exporter": "AAA", "per_unit": tau}])
    p_a, p_b = free_trade_prices(T + tau)
    assert price(ds, "AAA") == pytest.approx(p_a, abs=1e-3)
    assert price(ds, "BBB") == pytest.approx(p_b, abs=1e-3)
    revenue = float(ds["tariff_revenue"].sel(mineral="tiny", region="BBB", period=2024))
    assert revenue == pytest.approx(tau * flow(ds, "AAA", "BBB"), rel=1e-9)


def test_preferential_rate_inside_a_bloc():
    ds = run(
        [
            {
                "kind": "tariff",
                "importer": "all",
                "exporter": "all",
                "per_unit": 50.0,
                "preferential_bloc": "club",
                "preferential_per_unit": 0.0,
            }
        ],
        blocs={"club": {"members": ["AAA", "BBB"]}},
    )
    _p_a, p_b = free_trade_prices(T)
    assert price(ds, "BBB") == pytest.approx(p_b, abs=1e-3)


def test_export_subsidy_is_a_fiscal_cost():
    ds = run([{"kind": "export_tax", "exporter": "AAA", "importer": "BBB", "per_unit": -1.0}])
    p_a, _ = free_trade_prices(T - 1.0)
    assert price(ds, "AAA") == pytest.approx(p_a, abs=1e-3)
    assert float(ds["fiscal_cost"].sel(mineral="tiny", region="AAA", period=2024)) == pytest.approx(
        flow(ds, "AAA", "BBB"), rel=1e-9
    )


def test_cfd_floor_costs_gap_times_volume_and_raises_output_to_q_of_floor():
    floor = 70.0
    ds = run([{"kind": "cfd", "floor": floor, "eligible": "AAA"}])
    output = float(ds["production"].sel(mineral="tiny", stage="refine", region="AAA", period=2024))
    assert output == pytest.approx(floor - 10.0, rel=1e-9)  # q(F) on mc = 10 + q
    # A sells 60 whatever the price: 60 + (p_B - 40) = (100 - p_A) + (100 - p_B), p_B = p_A + T
    assert price(ds, "AAA") == pytest.approx((180 - 2 * T) / 3, abs=1e-3)
    producer = float(ds["producer_price"].sel(mineral="tiny", stage="refine", region="AAA", period=2024))
    payment = float(ds["fiscal_cost"].sel(mineral="tiny", region="AAA", period=2024))
    assert payment == pytest.approx((floor - producer) * output, rel=1e-9)


def test_cfd_floor_below_market_costs_nothing():
    ds = run([{"kind": "cfd", "floor": 30.0, "eligible": "AAA"}])
    assert "fiscal_cost" not in ds or float(ds["fiscal_cost"].sum()) == 0.0


def test_cfd_budget_cap_limits_payments():
    ds = run([{"kind": "cfd", "floor": 70.0, "eligible": "AAA", "budget": 100.0}])
    assert float(ds["fiscal_cost"].sum()) == pytest.approx(100.0, rel=1e-6)


def test_reference_price_keeps_non_member_imports_out_below_floor():
    floor = 66.0
    ds = run(
        [{"kind": "reference_price", "floor": floor, "bloc": "club", "stages": ["refine"]}],
        blocs={"club": {"members": ["BBB"]}},
    )
    # imports enter only at F: p_B = 66, imports = (100 - 66) - (66 - 40) = 8, p_A = 59, levy = 66 - 59 - T
    assert price(ds, "BBB") == pytest.approx(floor, abs=1e-3)
    assert flow(ds, "AAA", "BBB") == pytest.approx(8.0, abs=1e-3)
    assert price(ds, "AAA") == pytest.approx(59.0, abs=1e-3)
    levy = float(ds["levy_revenue"].sel(mineral="tiny", region="BBB", period=2024))
    assert levy == pytest.approx((floor - 59.0 - T) * 8.0, rel=1e-3)
    assert float(ds["levy_residual"].sel(mineral="tiny", period=2024)) <= 1e-6
    # Aitken-relaxed steps settle this levy in 3 solves (plain steps, damped after 5 rounds, took 33)
    assert 2 <= int(ds["fixed_point_rounds"].sel(mineral="tiny", period=2024)) <= 5


def test_offtake_volume_holds_while_market_price_moves():
    years = (2024, 2025)
    ds = run(
        [
            {"kind": "offtake", "buyer": "BBB", "seller": "AAA", "stage": "refine", "volume": 20, "contract_price": 65},
            {"kind": "demand_surge", "regions": "AAA", "factor": 1.5, "start": 2025},
        ],
        years=years,
    )
    assert flow(ds, "AAA", "BBB", 2024) == pytest.approx(20.0, rel=1e-9)
    assert flow(ds, "AAA", "BBB", 2025) == pytest.approx(20.0, rel=1e-9)
    assert price(ds, "AAA", 2025) > price(ds, "AAA", 2024) + 1.0
    transfer = float(ds["offtake_transfer"].sel(mineral="tiny", region="BBB", partner="AAA", period=2024))
    assert transfer == pytest.approx((65 - price(ds, "BBB", 2024)) * 20.0, rel=1e-6)


def test_reserve_release_caps_price_at_trigger_until_stock_runs_out():
    years = (2024, 2025, 2026)
    ds = run(
        [
            {"kind": "export_control", "mode": "ban", "exporter": "AAA", "targets": "BBB"},
            {
                "kind": "reserve",
                "owner": "BBB",
                "stage": "refine",
                "initial_stock": 25,
                "release": {"rate": 30, "trigger_price": 60},
            },
        ],
        years=years,
    )
    # year 1: up to min(rate, stock) = 25 t is offered over the 2% band above the trigger, R = 25 (p - 60) / 1.2,
    # and autarky in B gives p = 70 - R/2; so p = (70 + 60 k) / (1 + k) with k = 25 / 2.4
    k = 25 / 2.4
    p1 = (70 + 60 * k) / (1 + k)
    assert 60.0 <= price(ds, "BBB", 2024) <= 61.2
    assert price(ds, "BBB", 2024) == pytest.approx(p1, abs=1e-3)
    stock = ds["reserve_stock"].sel(mineral="tiny", stage="refine", region="BBB")
    assert float(stock.sel(period=2024)) == pytest.approx(25 - 2 * (70 - p1), abs=1e-3)
    # year 2: the rest is released, not enough to hold the trigger
    assert price(ds, "BBB", 2025) > 61.2
    assert float(stock.sel(period=2025)) == pytest.approx(0.0, abs=1e-9)
    # year 3: nothing left: autarky
    assert price(ds, "BBB", 2026) == pytest.approx(70.0, abs=1e-3)


def test_reserve_buys_below_trigger_up_to_target_and_budget():
    years = (2024, 2025)
    ds = run(
        [
            {
                "kind": "reserve",
                "owner": "AAA",
                "stage": "refine",
                "target_tonnes": 15,
                "buy": {"rate": 10, "trigger_price": 80},
            }
        ],
        years=years,
    )
    stock = ds["reserve_stock"].sel(mineral="tiny", stage="refine", region="AAA")
    assert float(stock.sel(period=2024)) == pytest.approx(10.0, rel=1e-6)
    assert float(stock.sel(period=2025)) == pytest.approx(15.0, rel=1e-6)
    spent = float(ds["reserve_spent"].sel(mineral="tiny", region="AAA").sum())
    expected = 10 * price(ds, "AAA", 2024) + 5 * price(ds, "AAA", 2025)
    assert spent == pytest.approx(expected, rel=1e-6)


def test_project_starts_after_incentive_price_and_delivers_after_lead_time():
    years = tuple(range(2024, 2030))
    ds = run(
        [
            {"kind": "export_control", "mode": "ban", "exporter": "AAA", "targets": "BBB"},
            {
                "kind": "projects",
                "projects": [
                    {
                        "name": "new-mine",
                        "mineral": "tiny",
                        "region": "BBB",
                        "stage": "refine",
                        "capacity": 10,
                        "incentive_price": 68,
                        "unit_cost": 20,
                        "lead_time": 2,
                        "ramp_up": 0,
                    }
                ],
            },
        ],
        years=years,
    )
    started = ds["projects_started"].sel(mineral="tiny", stage="refine", region="BBB")
    # expectations: 64.5 (base) -> 67.25 after 2024 -> 68.625 after 2025: the project starts in 2026
    assert [int(started.sel(period=y)) for y in years] == [0, 0, 1, 0, 0, 0]
    output = ds["project_output"].sel(mineral="tiny", stage="refine", region="BBB")
    assert all(float(output.sel(period=y)) == 0.0 for y in (2024, 2025, 2026, 2027))
    assert float(output.sel(period=2028)) == pytest.approx(10.0, rel=1e-6)
    assert price(ds, "BBB", 2028) < 70.0


def test_permitting_reform_shortens_lead_time():
    years = tuple(range(2024, 2030))
    project = {
        "name": "p",
        "mineral": "tiny",
        "region": "BBB",
        "stage": "refine",
        "capacity": 10,
        "unit_cost": 20,
        "joint": True,
        "start_date": "2024-01-01",
        "lead_time": 4,
        "ramp_up": 0,
    }
    ds = run(
        [
            {"kind": "projects", "projects": [project]},
            {"kind": "permitting_reform", "regions": "BBB", "lead_time_factor": 0.5},
        ],
        years=years,
    )
    output = ds["project_output"].sel(mineral="tiny", stage="refine", region="BBB")
    assert float(output.sel(period=2025)) == 0.0
    assert float(output.sel(period=2026)) > 0.0


def test_outage_removes_capacity_share():
    ds = run([{"kind": "outage", "regions": "AAA", "share": 0.5}], capacity=(40.0, np.inf))
    out = float(ds["production"].sel(mineral="tiny", stage="refine", region="AAA", period=2024))
    assert out == pytest.approx(20.0, rel=1e-9)


def test_logistics_spike_widens_price_gap():
    ds = run([{"kind": "logistics", "origins": "AAA", "destinations": "BBB", "per_unit": 3.0}])
    p_a, p_b = free_trade_prices(T + 3.0)
    assert price(ds, "BBB") - price(ds, "AAA") == pytest.approx(p_b - p_a, abs=1e-3)


def test_hoarding_buys_for_the_exporter():
    ds = run([{"kind": "hoarding", "region": "AAA", "stages": ["refine"], "rate": 5}])
    stock = float(ds["reserve_stock"].sel(mineral="tiny", stage="refine", region="AAA", period=2024))
    assert stock == pytest.approx(5.0, rel=1e-6)
    p_a, _ = free_trade_prices(T)
    assert price(ds, "AAA") > p_a


def test_bloc_membership_changes_on_dates():
    ds = run(
        [{"kind": "export_control", "mode": "ban", "exporter": "AAA", "targets": "club"}],
        years=(2024, 2025),
        blocs={"club": {"members": [], "joins": {"BBB": "2025-01-01"}}},
    )
    assert flow(ds, "AAA", "BBB", 2024) > 1.0
    assert flow(ds, "AAA", "BBB", 2025) == pytest.approx(0.0, abs=1e-9)
    assert bool(ds["bloc_member"].sel(bloc="club", region="BBB", period=2025))


def test_long_run_demand_destruction_builds_and_fades():
    cal_years = tuple(range(2024, 2032))
    cal = two_region_market(t=T, years=cal_years, long_run=-1.0)
    spec = scenario_from_dict(
        {
            "name": "lr",
            "world": "toy",
            "instruments": [
                {"kind": "export_control", "mode": "ban", "exporter": "AAA", "targets": "BBB", "end": 2028}
            ],
            "dynamics": {"demand_half_life": 2.0},
        }
    )
    ds = to_dataset(run_calibrated(spec, {"tiny": cal}, cal_years))
    cons = ds["consumption"].sel(mineral="tiny", stage="refine", region="BBB", sector="other")
    seq = [float(cons.sel(period=y)) for y in cal_years]
    # while banned, B's high price keeps eroding demand; after the ban prices fall and demand recovers
    assert seq[1] < seq[0] and seq[3] < seq[1]
    assert seq[-1] > seq[4]


def test_quarterly_periods_time_a_ban():
    from critmin.simulate.run import make_periods

    cal = two_region_market(t=T)
    spec = scenario_from_dict(
        {
            "name": "q",
            "world": "toy",
            "period": "quarter",
            "instruments": [
                {"kind": "export_control", "mode": "ban", "exporter": "AAA", "targets": "BBB", "start": "2024-04-01"}
            ],
            "dynamics": {"long_run_demand": False},
        }
    )
    ds = to_dataset(run_calibrated(spec, {"tiny": cal}, make_periods(2024, 2024, "quarter")))
    f = ds["flow"].sel(mineral="tiny", stage="refine", region="AAA", partner="BBB")
    assert float(f.sel(period="2024-Q1")) == pytest.approx(15 - T, abs=1e-3)
    assert [float(f.sel(period=f"2024-Q{q}")) for q in (2, 3, 4)] == pytest.approx([0, 0, 0], abs=1e-9)


def test_a_batch_of_draws_equals_the_draws_run_one_by_one():
    from critmin.simulate.run import run_batch

    years = (2024, 2025, 2026)
    specs = [
        scenario_from_dict(
            {
                "name": "draw",
                "world": "toy",
                "instruments": [
                    {"kind": "export_control", "mode": "quota", "exporter": "AAA", "targets": "BBB", "quota": q},
                    {
                        "kind": "reserve",
                        "owner": "BBB",
                        "initial_stock": 10,
                        "release": {"rate": 5, "trigger_price": 60},
                    },
                ],
            }
        )
        for q in (2.0, 6.0, 9.0)
    ]
    cal = two_region_market(t=T, long_run=-0.8)
    batch = run_batch(specs, [{"tiny": cal}] * 3, years)
    for spec, record in zip(specs, batch, strict=True):
        alone = run_calibrated(spec, {"tiny": cal}, years)
        np.testing.assert_allclose(record.minerals["tiny"].price, alone.minerals["tiny"].price, rtol=1e-8)
        np.testing.assert_allclose(record.minerals["tiny"].flow, alone.minerals["tiny"].flow, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("rates", [(2.0, 2.0, 2.0), (2.0, 2.0, 5.0)], ids=["alike", "drawn"])
def test_batched_wedges_and_levies_equal_the_draws_run_one_by_one(monkeypatch: pytest.MonkeyPatch, rates) -> None:
    """Tariffs, export taxes and reference-price levies built once for a batch whose draws hold the same
    instrument ("alike"), and draw by draw where a rate or floor is drawn ("drawn"), give each draw exactly
    what it gets alone: prices, flows, revenue, levy rounds."""
    from critmin.market.engine import BatchedNewtonSolver
    from critmin.simulate import run as run_module
    from critmin.simulate.run import run_batch

    monkeypatch.setattr(run_module, "get_solver", lambda name: BatchedNewtonSolver(share_starts=False))
    years = (2024, 2025, 2026)
    specs = [
        scenario_from_dict(
            {
                "name": "draw",
                "world": "toy",
                "blocs": {"club": {"members": ["BBB"]}},
                "instruments": [
                    {"kind": "tariff", "importer": "BBB", "exporter": "AAA", "per_unit": rate},
                    {"kind": "export_tax", "exporter": "AAA", "importer": "BBB", "per_unit": -0.5 * rate},
                    {"kind": "reference_price", "floor": 64.0 + rate, "bloc": "club", "start": "2025-01-01"},
                ],
            }
        )
        for rate in rates
    ]
    from critmin.policy.floors import ReferencePriceFloor

    sizes: list[int] = []  # the number of draws each levy block was built for
    levies = ReferencePriceFloor._levies

    def counted(self, levied, origin_price, shift, share):  # type: ignore[no-untyped-def]
        sizes.append(origin_price.shape[0])
        return levies(self, levied, origin_price, shift, share)

    monkeypatch.setattr(ReferencePriceFloor, "_levies", counted)
    cal = two_region_market(t=T, long_run=-0.8)
    batch = run_batch(specs, [{"tiny": cal}] * len(specs), years)
    # one block for the three draws where they are alike; never where one draw's rates differ (the two alike
    # draws may still share a block in a round of the levy's fixed point that the third has left)
    assert (3 in sizes) == (len(set(rates)) == 1)
    for spec, record in zip(specs, batch, strict=True):
        alone = to_dataset(run_calibrated(spec, {"tiny": cal}, years))
        together = to_dataset(record)
        for name in alone.data_vars:
            np.testing.assert_array_equal(together[name].values, alone[name].values, err_msg=name)
    levied = to_dataset(batch[0])
    assert float(levied["levy_revenue"].sel(mineral="tiny", region="BBB", period=2025)) > 0.0
    assert float(levied["tariff_revenue"].sel(mineral="tiny", region="BBB", period=2024)) > 0.0
    assert float(levied["export_subsidy"].sel(mineral="tiny", region="AAA", period=2024)) > 0.0


@pytest.mark.parametrize("mode", ["ban", "licensing"])
def test_extraterritorial_cap_follows_content_and_approval(mode: str) -> None:
    """Third countries' magnet exports to the targets are capped at ``(1 - c)`` (ban) or ``(1 - c (1 - a))``
    (licensing, approval share ``a``) of their reference flow, ``c`` their Chinese-origin content: in the
    default world's base year, Japan's Dy magnets (all of Chinese-origin Dy) shipped to the US."""
    cal = calibrate(resolve_world("default"))["dy"]
    blocs = {"club": Bloc(members=["USA", "JPN", "KOR"])}
    control = ExportControl(
        kind="export_control",
        mode=mode,
        exporter="CHN",
        targets="club",
        stages=["magnet"],
        approval_share=0.25 if mode == "licensing" else None,
        extraterritorial=True,
        de_minimis=0.001,
    )
    pctx = PeriodContext(
        mineral=MineralContext(cal=cal, blocs=blocs),
        period=2027,
        start=dt.date(2027, 1, 1),
        end=dt.date(2028, 1, 1),
        inputs=full_inputs(cal, 0, 0),
        previous=None,
        state={},
        segment_index={},
        constraint_index={},
        ledger=Ledger(),
        expected_price=cal.base_price.copy(),
    )
    control.apply(pctx)
    s, regions = cal.stages.index("magnet"), list(cal.regions)
    content = controller_content(cal.base_flow, [regions.index("CHN")])[s]
    denied = 1.0 if mode == "ban" else 0.75
    checked = 0
    for origin in range(cal.n_regions):
        for dest in ("USA", "JPN", "KOR"):
            d = regions.index(dest)
            upper = pctx.inputs.route_upper[s, origin, d]
            if regions[origin] == "CHN":
                continue  # the control's own routes: ban or licence, not the extraterritorial cap
            if origin == d or content[origin] <= 0.001:
                assert upper == np.inf
                continue
            assert upper == pytest.approx((1.0 - denied * content[origin]) * cal.base_flow[s, origin, d], rel=1e-12)
            checked += cal.base_flow[s, origin, d] > 0
    assert checked > 0  # some third country ships magnets with Chinese content to a target
    jpn, usa = regions.index("JPN"), regions.index("USA")
    assert content[jpn] == pytest.approx(1.0)
    assert pctx.inputs.route_upper[s, jpn, usa] == pytest.approx((1.0 - denied) * cal.base_flow[s, jpn, usa])


@pytest.mark.parametrize("targets_differ", [False, True])
@pytest.mark.parametrize("rows_of_one_batch", [False, True])
@pytest.mark.parametrize("mode", ["ban", "licensing", "quota"])
def test_export_control_batch_matches_one_draw_at_a_time(mode: str, rows_of_one_batch: bool, targets_differ) -> None:
    """A batch of draws (different leakage, markup, approval, cost, de minimis and end dates; some draws with
    the control not in force; with ``targets_differ`` one draw's control aimed at other targets) gets exactly
    the bounds and wedges that applying the control draw by draw gives: with each draw's arrays its own, and
    with every draw's inputs and last flows rows of one array (as an ensemble chunk sets them up, where the
    batch writes its inputs in place)."""
    cal = calibrate(resolve_world("default"))["dy"]
    blocs = {"club": Bloc(members=["USA", "JPN", "KOR"])}
    rng = np.random.default_rng(5)
    ends = [dt.date(2027, 7, 1), dt.date(2029, 1, 1), dt.date(2027, 3, 1), dt.date(2026, 6, 1), dt.date(2028, 1, 1)]
    if rows_of_one_batch:
        ends[3] = dt.date(2028, 6, 1)  # every draw's control in force: the batch is one block, all rows
    controls = [
        ExportControl(
            kind="export_control",
            mode=mode,
            exporter="CHN",
            targets=["USA", "KOR"] if targets_differ and b == 4 else "club",
            approval_share=float(rng.uniform(0.2, 0.8)) if mode == "licensing" else None,
            cost_rate=float(rng.uniform(0.0, 0.2)) if mode == "licensing" else None,
            quota_share=0.5 if mode == "quota" else None,
            leakage_share=0.0 if b == 2 else float(rng.uniform(0.0, 0.3)),
            leakage_markup=float(rng.uniform(0.2, 1.0)),
            extraterritorial=True,
            de_minimis=float(rng.choice([0.001, 0.05])),
            start=dt.date(2026, 1, 1),
            end=end,
        )
        for b, end in enumerate(ends)
    ]

    def contexts(batched: bool) -> list[PeriodContext]:
        flows = np.stack([cal.base_flow * rng.uniform(0.5, 1.5, cal.base_flow.shape) for _ in ends])
        inputs = full_inputs_batch([cal] * len(ends), 0, 0) if batched else [full_inputs(cal, 0, 0) for _ in ends]
        made = []
        for b, flow in enumerate(flows if batched else [f.copy() for f in flows]):
            zeros = np.zeros_like(cal.base_price)
            previous = MineralOutcome(
                price=zeros,
                origin_price=zeros,
                production=zeros,
                processing_input=zeros,
                flow=flow,
                consumption=np.zeros_like(cal.base_consumption),
                segment=np.zeros(0),
                disposal=zeros,
                rent=np.zeros(0),
            )
            made.append(
                PeriodContext(
                    mineral=MineralContext(cal=cal, blocs=blocs),
                    period=2027,
                    start=dt.date(2027, 1, 1),
                    end=dt.date(2028, 1, 1),
                    inputs=inputs[b],
                    previous=previous if b != 1 or rows_of_one_batch else None,
                    state={},
                    segment_index={},
                    constraint_index={},
                    ledger=Ledger(),
                    expected_price=cal.base_price.copy(),
                    instrument_id="control",
                )
            )
        return made

    rng = np.random.default_rng(7)
    one_by_one = contexts(False)
    rng = np.random.default_rng(7)
    batch = contexts(rows_of_one_batch)
    if rows_of_one_batch:  # the block paths are taken: inputs written in place, last flows read without a copy
        assert whole_batch_field([p.inputs for p in batch], "route_upper") is not None
        last = [p.last_flow() for p in batch]
        assert stack_rows(last) is last[0].base
    for control, pctx in zip(controls, one_by_one, strict=True):
        control.apply(pctx)
    ExportControl.apply_batch(controls, batch)
    for alone, together in zip(one_by_one, batch, strict=True):
        np.testing.assert_array_equal(together.inputs.route_upper, alone.inputs.route_upper)
        np.testing.assert_array_equal(together.inputs.route_wedge, alone.inputs.route_wedge)
        np.testing.assert_array_equal(together.inputs.constraint_rhs, alone.inputs.constraint_rhs)
        assert together.state == alone.state
    in_force = 5 if rows_of_one_batch else 4  # else one draw's control has ended
    assert sum(np.isfinite(p.inputs.route_upper).sum() > 0 for p in batch) == in_force


def test_batch_inputs_build_the_same_instances_as_separate_arrays() -> None:
    """Inputs set up for a batch (rows of one array per field) build exactly the instances that separate
    arrays with the same numbers build, for the whole batch and for a subset of its draws."""
    cal = calibrate(resolve_world("default"))["ndpr"]
    segments = [SegmentSpec("buy", 1, 0, "buy"), SegmentSpec("sell", 0, 2, "sell")]
    layout = MarketLayout.for_mineral(cal, segments, [])
    rng = np.random.default_rng(3)
    batch = full_inputs_batch([cal] * 4, 2, 0)
    for inputs in batch:
        inputs.route_upper[rng.uniform(size=inputs.route_upper.shape) < 0.2] = 5.0
        inputs.route_wedge += rng.uniform(0.0, 100.0, inputs.route_wedge.shape)
        inputs.capacity *= rng.uniform(0.5, 1.5)
        inputs.segment_quantity[:] = rng.uniform(0.0, 10.0, 2)
    separate = [PeriodInputs(**{k: np.array(v) for k, v in vars(inputs).items()}) for inputs in batch]
    for subset in (range(4), [3, 1]):
        together = build_instances(layout, [cal] * len(subset), [batch[b] for b in subset])
        apart = build_instances(layout, [cal] * len(subset), [separate[b] for b in subset])
        for name in ("cost", "slope", "lower", "upper", "injection", "rhs"):
            np.testing.assert_array_equal(getattr(together, name), getattr(apart, name))
    # the instances own their numbers: changing the inputs afterwards leaves them as built
    before = build_instances(layout, [cal] * 4, batch)
    upper = before.upper.copy()
    batch[0].route_upper[:] = 0.0
    np.testing.assert_array_equal(before.upper, upper)


def test_stack_rows_reads_one_block_without_a_copy_only_when_it_is_one() -> None:
    block = np.arange(24.0).reshape(4, 2, 3).copy()  # an array of its own, as np.take makes
    rows = list(block)
    assert stack_rows(rows) is block
    for other in (rows[::-1], rows[:3], [r.copy() for r in rows], list(np.asfortranarray(block))):
        stacked = stack_rows(other)
        assert stacked is not block
        np.testing.assert_array_equal(stacked, np.stack(other))


def test_stack_outcomes_hands_out_the_batch_array_only_for_the_whole_batch_in_order() -> None:
    """Outcomes read together carry their batch's arrays: all of them, in order, give those arrays back
    (no copy); a subset, another order, or outcomes made one by one give a stack of the same numbers."""
    from critmin.market.build import read_outcomes
    from critmin.market.engine import BatchedNewtonSolver
    from critmin.policy.effects import stack_outcomes

    cal = two_region_market(t=T)
    layout = MarketLayout.for_mineral(cal)
    inputs = [PeriodInputs(demand_scale=np.full((2, 1), f)) for f in (0.8, 1.0, 1.2)]
    data = build_instances(layout, [cal] * 3, inputs)
    solution = BatchedNewtonSolver().solve(layout.topology, data)
    read = read_outcomes(layout, solution, [cal.yields] * 3)
    for name in ("flow", "origin_price", "price"):
        whole = stack_outcomes(read, name)
        assert whole is read[0].batch[0][name]  # type: ignore[index]
        np.testing.assert_array_equal(whole, np.stack([getattr(o, name) for o in read]))
        for other in (read[::-1], read[:2]):
            stacked = stack_outcomes(other, name)
            assert stacked is not whole
            np.testing.assert_array_equal(stacked, np.stack([getattr(o, name) for o in other]))
    alone = [read_outcomes(layout, solution, [cal.yields] * 3)[b] for b in range(3)]  # three separate batches
    assert stack_outcomes(alone, "flow") is not alone[0].batch[0]["flow"]  # type: ignore[index]


@pytest.mark.parametrize("trigger", ["price", "shortfall"])
def test_reserve_batch_matches_one_draw_at_a_time(monkeypatch: pytest.MonkeyPatch, trigger: str) -> None:
    """A batch of draws whose reserves sit alike but differ in their numbers (rates, triggers, band, dates)
    and in their state (stock, spending, last shortfall) gets exactly the segments, rows and state that
    applying each draw's reserve alone gives, in one pass; a draw whose release has the other kind of
    trigger sends the batch draw by draw, with the same numbers."""
    from critmin.policy.reserve import Reserve

    cal = calibrate(resolve_world("default"))["ndpr"]
    blocs = {"club": Bloc(members=["USA", "JPN"])}
    rng = np.random.default_rng(11)

    def reserve(b: int, kind: str) -> Reserve:
        release: dict[str, object] = {"rate": float(rng.uniform(100, 400))}
        if kind == "price":
            release["trigger_price"] = float(rng.uniform(60_000, 90_000))
        else:
            release["shortfall_trigger"] = float(rng.uniform(0.02, 0.1))
        return Reserve(
            kind="reserve",
            owner="USA",
            stage="refine",
            draw="club",
            sectors=["defense"],
            target_tonnes=float(rng.uniform(500, 2000)),
            budget=float(rng.uniform(1e7, 1e8)),
            buy={"rate": float(rng.uniform(50, 300)), "trigger_price": float(rng.uniform(50_000, 80_000))},
            release=release,
            band=float(rng.uniform(0.01, 0.05)),
            end=dt.date(2027, 3, 1) if b == 2 else None,
        )

    def contexts(reserves: list[Reserve], batched: bool) -> list[PeriodContext]:
        mctx = MineralContext(cal=cal, blocs=blocs, instrument_id="vault")
        segs, cons = reserves[0].structure(mctx)
        n_seg, n_con = len(segs), len(cons)
        inputs = full_inputs_batch([cal] * len(reserves), n_seg, n_con)
        if not batched:
            inputs = [full_inputs(cal, n_seg, n_con) for _ in reserves]
        made = []
        for b, inp in enumerate(inputs):
            assert inp.demand_scale is not None
            inp.demand_scale[:] = 1.0 + 0.1 * b
            state = {"vault": {"stock": 100.0 * b, "spent": 1e6 * b, "budget": 5e7, "last_shortfall": 0.03 * b}}
            state["vault"]["last_sector_gap"] = 20.0 * b
            made.append(
                PeriodContext(
                    mineral=MineralContext(cal=cal, blocs=blocs, instrument_id="vault"),
                    period=2027,
                    start=dt.date(2027, 1, 1),
                    end=dt.date(2028, 1, 1),
                    inputs=inp,
                    previous=None,
                    state=state,
                    segment_index={s.name: i for i, s in enumerate(segs)},
                    constraint_index={c.name: i for i, c in enumerate(cons)},
                    ledger=Ledger(),
                    expected_price=cal.base_price.copy(),
                    instrument_id="vault",
                )
            )
        return made

    other = "shortfall" if trigger == "price" else "price"
    alone_calls: list[int] = []
    apply = Reserve.apply

    def counted(self, pctx):  # type: ignore[no-untyped-def]
        alone_calls.append(1)
        return apply(self, pctx)

    for kinds in ([trigger] * 4, [trigger, trigger, other, trigger]):
        reserves = [reserve(b, kind) for b, kind in enumerate(kinds)]
        one_by_one, batch = contexts(reserves, False), contexts(reserves, True)
        for r, pctx in zip(reserves, one_by_one, strict=True):
            r.apply(pctx)
        alone_calls.clear()
        with monkeypatch.context() as m:
            m.setattr(Reserve, "apply", counted)
            Reserve.apply_batch(reserves, batch)
        assert len(alone_calls) == (0 if len(set(kinds)) == 1 else 4)  # one pass, or draw by draw
        for alone, together in zip(one_by_one, batch, strict=True):
            for name in ("segment_quantity", "segment_price_low", "segment_price_high", "constraint_rhs"):
                np.testing.assert_array_equal(getattr(together.inputs, name), getattr(alone.inputs, name))
            a, t = alone.state["vault"], together.state["vault"]
            assert a.keys() == t.keys()
            for key in a:
                if key == "reference_demand":
                    np.testing.assert_array_equal(t[key], a[key])
                elif key != "layout":
                    assert t[key] == a[key], key
        quantities = np.stack([p.inputs.segment_quantity for p in batch])
        assert np.count_nonzero(quantities) > 0  # something is bought or released
