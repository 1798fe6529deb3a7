"""Metrics on tiny hand-built results whose answers are worked out on paper in each test."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import critmin.metrics as metrics
from critmin.metrics import MetricError, MetricUnavailableError

STAGES = ("mine", "refine", "magnet")


def blank(
    *,
    minerals: Sequence[str] = ("ndpr",),
    stages: Sequence[str] = ("mine", "refine"),
    regions: Sequence[str] = ("A", "B", "C"),
    sectors: Sequence[str] = ("ev",),
    periods: Sequence[int] = (2024, 2025),
    sector_stage: Mapping[str, str] | None = None,
    missing: Mapping[str, Sequence[str]] | None = None,
    blocs: Mapping[str, Sequence[str]] | None = None,
) -> xr.Dataset:
    """A results Dataset shaped like ``to_dataset``'s: zeros where a stage exists, NaN where it does not.

    Sectors consume at ``sector_stage`` (default: the last stage); ``missing`` lists stages a mineral lacks;
    ``blocs`` become a static ``bloc_member`` variable.
    """
    sector_stage = dict(sector_stage or {k: stages[-1] for k in sectors})
    M, S, R, K, P = len(minerals), len(stages), len(regions), len(sectors), len(periods)
    node = np.zeros((M, S, R, P))
    exists = np.ones((M, S), dtype=bool)
    for m, lacking in (missing or {}).items():
        for s in lacking:
            exists[list(minerals).index(m), list(stages).index(s)] = False
    node[~exists] = np.nan
    flow = np.zeros((M, S, R, R, P))
    flow[~exists] = np.nan
    cons = np.full((M, S, R, K, P), np.nan)
    for k, sector in enumerate(sectors):
        at = list(stages).index(sector_stage[sector])
        cons[:, at, :, k, :] = 0.0
    cons[~exists] = np.nan
    ds = xr.Dataset(
        {
            "price": (("mineral", "stage", "region", "period"), node.copy()),
            "producer_price": (("mineral", "stage", "region", "period"), node.copy()),
            "production": (("mineral", "stage", "region", "period"), node.copy()),
            "capacity": (("mineral", "stage", "region", "period"), node.copy()),
            "flow": (("mineral", "stage", "region", "partner", "period"), flow),
            "consumption": (("mineral", "stage", "region", "sector", "period"), cons.copy()),
            "reference_demand": (("mineral", "stage", "region", "sector", "period"), cons.copy()),
        },
        coords={
            "mineral": list(minerals),
            "stage": list(stages),
            "region": list(regions),
            "partner": list(regions),
            "sector": list(sectors),
            "period": list(periods),
        },
    )
    if blocs:
        table = np.zeros((len(blocs), R, P), dtype=bool)
        for b, members in enumerate(blocs.values()):
            for r in members:
                table[b, list(regions).index(r)] = True
        ds["bloc_member"] = xr.DataArray(
            table,
            dims=("bloc", "region", "period"),
            coords={"bloc": list(blocs), "region": list(regions), "period": list(periods)},
        )
    return ds


def ship(ds: xr.Dataset, stage: str, origin: str, dest: str, tonnes: float, **where: object) -> None:
    """Set one route's flow (every period and mineral unless ``where`` narrows it)."""
    ds["flow"].loc[{"stage": stage, "region": origin, "partner": dest, **where}] = tonnes


def money(ds: xr.Dataset, name: str, values: Mapping[str, float], unit: str = "USD") -> None:
    """Add an instrument's (mineral, region, period) money variable with per-region values."""
    da = xr.zeros_like(ds["production"].isel(stage=0, drop=True))
    for region, value in values.items():
        da.loc[{"region": region}] = value
    da.attrs["unit"] = unit
    ds[name] = da


# ---------------------------------------------------------------------------------------------------------
# registry


def test_every_metric_is_registered_with_a_unit_and_a_definition() -> None:
    names = [m.name for m in metrics.list_metrics()]
    assert len(names) == len(set(names))
    for expected in ("price", "price_spike", "shortfall_share", "hhi", "dependence", "surplus_change"):
        assert expected in names
    assert names[0] == "price"  # DESIGN §6 order: prices first, benchmarks last
    assert names[-1] == "eu_2030_pass"
    for metric in metrics.list_metrics():
        assert metric.unit and len(metric.definition) > 20


def test_metric_arrays_carry_name_unit_and_description() -> None:
    ds = blank()
    ds["production"].loc[{"stage": "mine", "region": "A"}] = 10.0
    out = metrics.hhi(ds)
    assert out.name == "hhi"
    assert out.attrs["unit"] == "1"
    assert out.attrs["description"] == metrics.REGISTRY["hhi"].definition


# ---------------------------------------------------------------------------------------------------------
# concentration


def test_hhi_and_top_share_of_known_shares() -> None:
    ds = blank(minerals=("ndpr", "lithium"), stages=STAGES, missing={"lithium": ["magnet"]})
    for region, tonnes in {"A": 50.0, "B": 30.0, "C": 20.0}.items():
        ds["production"].loc[{"mineral": "ndpr", "stage": "mine", "region": region}] = tonnes
    ds["production"].loc[{"mineral": "ndpr", "stage": "refine", "region": "C"}] = 7.0
    out = metrics.hhi(ds)
    # 50^2 + 30^2 + 20^2
    assert out.sel(mineral="ndpr", stage="mine").values == pytest.approx([3800.0, 3800.0])
    assert out.sel(mineral="ndpr", stage="refine").values == pytest.approx([10000.0, 10000.0])
    # nothing made: undefined, and a stage lithium lacks stays NaN
    assert np.isnan(out.sel(mineral="ndpr", stage="magnet")).all()
    assert np.isnan(out.sel(mineral="lithium", stage="magnet")).all()
    top = metrics.top_share(ds)
    assert float(top.sel(mineral="ndpr", stage="mine", period=2024)) == pytest.approx(0.5)
    assert str(top["top_region"].sel(mineral="ndpr", stage="mine", period=2024).values) == "A"
    assert str(top["top_region"].sel(mineral="lithium", stage="magnet", period=2024).values) == ""


def test_import_reliance_nets_trade_inside_a_bloc() -> None:
    ds = blank(stages=("mine",), sector_stage={"ev": "mine"}, blocs={"ab": ["A", "B"]})
    # A uses 100 (30 own, 70 from B), produces 30; B makes 150, uses 50 of its own, ships 30 to C
    ship(ds, "mine", "A", "A", 30.0)
    ship(ds, "mine", "B", "A", 70.0)
    ship(ds, "mine", "B", "B", 50.0)
    ship(ds, "mine", "B", "C", 30.0)
    ds["production"].loc[{"stage": "mine", "region": "A"}] = 30.0
    ds["production"].loc[{"stage": "mine", "region": "B"}] = 150.0
    out = metrics.import_reliance(ds).sel(mineral="ndpr", stage="mine", period=2024)
    assert float(out.sel(region="A")) == pytest.approx(0.7)
    assert float(out.sel(region="B")) == 0.0
    assert float(out.sel(region="C")) == 1.0
    # the bloc uses 150 and makes 180: no net imports
    assert float(out.sel(region="ab")) == 0.0
    assert float(out.sel(region="world")) == 0.0


# ---------------------------------------------------------------------------------------------------------
# prices


def test_bloc_price_is_use_weighted_with_processing_input_as_use() -> None:
    ds = blank(blocs={"club": ["A", "B"]})
    # refined use is consumption: A 1, B 3 (from C)
    ship(ds, "refine", "C", "A", 1.0)
    ship(ds, "refine", "C", "B", 3.0)
    ds["consumption"].loc[{"stage": "refine", "region": "A", "sector": "ev"}] = 1.0
    ds["consumption"].loc[{"stage": "refine", "region": "B", "sector": "ev"}] = 3.0
    # mine use is processing input only: A processes 9, B processes 1
    ship(ds, "mine", "C", "A", 9.0)
    ship(ds, "mine", "C", "B", 1.0)
    for region, (p_mine, p_ref) in {"A": (2.0, 10.0), "B": (4.0, 20.0), "C": (1.0, 50.0)}.items():
        ds["price"].loc[{"stage": "mine", "region": region}] = p_mine
        ds["price"].loc[{"stage": "refine", "region": region}] = p_ref
    out = metrics.price(ds).sel(mineral="ndpr", period=2025)
    assert float(out.sel(stage="refine", region="club")) == pytest.approx((10 * 1 + 20 * 3) / 4)
    assert float(out.sel(stage="mine", region="club")) == pytest.approx((2 * 9 + 4 * 1) / 10)
    assert float(out.sel(stage="refine", region="A")) == 10.0
    # C uses nothing, so the rest of the world (C alone) has no price; the world's is the club's
    gap = metrics.price_gap(ds).sel(mineral="ndpr", period=2025)
    assert list(gap["pair"].values) == ["club - not club"]
    assert np.isnan(gap.sel(stage="refine")).all()
    assert float(out.sel(stage="refine", region="world")) == pytest.approx(17.5)
    explicit = metrics.price_gap(ds, pairs=[("B", "A")]).sel(mineral="ndpr", period=2025, stage="refine")
    assert float(explicit.squeeze()) == pytest.approx(10.0)
    with pytest.raises(MetricUnavailableError):
        metrics.price_gap(blank())


def test_price_spike_is_the_peak_over_baseline() -> None:
    base = blank(stages=("mine",), periods=(2024, 2025, 2026), sector_stage={"ev": "mine"})
    base["price"].loc[{"stage": "mine"}] = 10.0
    run = base.copy(deep=True)
    run["price"].loc[{"stage": "mine", "region": "A"}] = xr.DataArray([10.0, 15.0, 12.0], dims="period")
    spike = metrics.price_spike(run, base).sel(mineral="ndpr", stage="mine")
    assert float(spike.sel(region="A")) == pytest.approx(0.5)
    assert float(spike.sel(region="B")) == pytest.approx(0.0)
    change = metrics.price_change(run, base).sel(mineral="ndpr", stage="mine", region="A")
    assert change.values == pytest.approx([0.0, 0.5, 0.2])


def test_misaligned_baseline_raises() -> None:
    run = blank(periods=(2024, 2025))
    base = blank(periods=(2025, 2026))
    with pytest.raises(MetricError, match="period"):
        metrics.price_spike(run, base)
    with pytest.raises(MetricError):
        metrics.surplus_change(run, blank(regions=("A", "B", "D")))


def test_bloc_membership_must_match_the_run() -> None:
    ds = blank()
    ds["bloc_member"] = xr.DataArray(
        np.ones((1, 2, 2), dtype=bool),
        dims=("bloc", "region", "period"),
        coords={"bloc": ["club"], "region": ["A", "B"], "period": [2024, 2025]},
    )
    # the Dataset aligned the two-region table to its three regions, leaving C undefined
    with pytest.raises(MetricError, match="bloc_member"):
        metrics.price(ds)
    with pytest.raises(MetricError, match="unknown region"):
        metrics.price(blank(), blocs={"club": ["A", "Z"]})
    with pytest.raises(MetricError):
        metrics.price(blank(), blocs={"A": ["A"]})


# ---------------------------------------------------------------------------------------------------------
# shortfall


def test_shortfall_peak_cumulative_and_recovery_on_a_known_path() -> None:
    periods = (2024, 2025, 2026, 2027, 2028)
    ds = blank(stages=("mine", "refine"), periods=periods, blocs={"ab": ["A", "B"]})
    at = {"stage": "refine", "sector": "ev"}
    ds["reference_demand"].loc[at] = 100.0
    ds["consumption"].loc[at] = 100.0
    ds["consumption"].loc[{**at, "region": "A"}] = xr.DataArray([100.0, 70.0, 80.0, 99.5, 100.0], dims="period")
    # B consumes above its reference demand; that surplus does not offset A's shortfall in the bloc
    ds["consumption"].loc[{**at, "region": "B"}] = 120.0
    share = metrics.shortfall_share(ds).sel(mineral="ndpr", stage="refine", sector="ev")
    assert share.sel(region="A").values == pytest.approx([0.0, 0.3, 0.2, 0.005, 0.0])
    assert share.sel(region="B").values == pytest.approx([0.0] * 5)
    assert share.sel(region="ab").values == pytest.approx([0.0, 0.15, 0.1, 0.0025, 0.0])
    assert share.sel(region="world").values == pytest.approx([0.0, 0.1, 0.2 / 3, 0.5 / 300, 0.0])
    everyone = metrics.shortfall_share(ds).sel(mineral="ndpr", stage="refine", sector="all", region="A")
    assert everyone.values == pytest.approx(share.sel(region="A").values)
    # the mine stage has no consuming sector: NaN, not 0
    assert np.isnan(metrics.shortfall_share(ds).sel(stage="mine")).all()

    key = {"mineral": "ndpr", "stage": "refine", "sector": "ev", "region": "A"}
    assert float(metrics.shortfall_peak(ds).sel(key)) == pytest.approx(0.3)
    assert float(metrics.shortfall_cumulative(ds).sel(key)) == pytest.approx(30 + 20 + 0.5)
    assert float(metrics.shortfall_share_years(ds).sel(key)) == pytest.approx(0.505)
    # peak in 2025; 2026 at 20%, 2027 at 0.5% < 1%: two periods
    assert float(metrics.recovery_periods(ds).sel(key)) == 2.0
    # with a 0.1% threshold it recovers only in 2028
    assert float(metrics.recovery_periods(ds, threshold=0.001).sel(key)) == 3.0
    assert float(metrics.recovery_periods(ds).sel({**key, "region": "B"})) == 0.0


def test_periods_to_recover_never_and_undefined() -> None:
    assert np.isnan(metrics.periods_to_recover(np.array([0.0, 0.1, 0.2, 0.3])))
    assert np.isnan(metrics.periods_to_recover(np.array([np.nan, np.nan])))
    assert metrics.periods_to_recover(np.array([0.5, 0.5, 0.0])) == 2.0  # from the first peak
    assert metrics.periods_to_recover(np.array([0.002, 0.005])) == 0.0


# ---------------------------------------------------------------------------------------------------------
# origin tracing


def re_export_world() -> xr.Dataset:
    """A and B mine, A and B refine, C only uses; B re-exports A's ore as refined product.

    mine flows: A->A 20, A->B 80, B->B 20. A refines its 20, B refines its 100 (80 of A's ore, 20 own).
    refined flows: A->C 20, B->C 60, B->B 40.
    """
    ds = blank(stages=("mine", "refine"), blocs={"bc": ["B", "C"]})
    ship(ds, "mine", "A", "A", 20.0)
    ship(ds, "mine", "A", "B", 80.0)
    ship(ds, "mine", "B", "B", 20.0)
    ship(ds, "refine", "A", "C", 20.0)
    ship(ds, "refine", "B", "C", 60.0)
    ship(ds, "refine", "B", "B", 40.0)
    for region, (mined, refined) in {"A": (100.0, 20.0), "B": (20.0, 100.0)}.items():
        ds["production"].loc[{"stage": "mine", "region": region}] = mined
        ds["production"].loc[{"stage": "refine", "region": region}] = refined
    ds["consumption"].loc[{"stage": "refine", "region": "C"}] = 80.0
    ds["consumption"].loc[{"stage": "refine", "region": "B"}] = 40.0
    return ds


def test_origin_tracing_through_a_re_export() -> None:
    ds = re_export_world()
    share = metrics.origin_share(ds).sel(mineral="ndpr", stage="refine", period=2024)
    c_mine = share.sel(region="C", step="mine")
    # C's 80 t: 20 from A (A ore) and 60 from B (80% A ore, 20% B ore): A 68/80, B 12/80
    assert float(c_mine.sel(source="A")) == pytest.approx(0.85)
    assert float(c_mine.sel(source="B")) == pytest.approx(0.15)
    assert float(c_mine.sel(source="C")) == 0.0
    c_refine = share.sel(region="C", step="refine")
    assert float(c_refine.sel(source="A")) == pytest.approx(0.25)
    assert float(c_refine.sel(source="B")) == pytest.approx(0.75)
    # as sources, blocs and the world sum their members
    assert float(c_refine.sel(source="bc")) == pytest.approx(0.75)
    assert float(c_refine.sel(source="world")) == pytest.approx(1.0)
    # B uses 40 of its own refined product: 80% A ore
    assert float(share.sel(region="B", step="mine", source="A")) == pytest.approx(0.8)
    # bloc bc as user: inflow-weighted, (40 x 0.8 + 80 x 0.85) / 120
    assert float(share.sel(region="bc", step="mine", source="A")) == pytest.approx(100 / 120)
    # A receives no refined product: no composition
    assert np.isnan(share.sel(region="A")).all()
    # the step after the stage is undefined
    mine_stage = metrics.origin_share(ds).sel(mineral="ndpr", stage="mine", period=2024)
    assert np.isnan(mine_stage.sel(step="refine")).all()
    assert float(mine_stage.sel(region="B", step="mine", source="A")) == pytest.approx(0.8)


def test_dependence_reads_a_step_or_the_tightest_one() -> None:
    ds = re_export_world()
    dep = metrics.dependence(ds, ["A", "B", "not bc"]).sel(mineral="ndpr", stage="refine", period=2024)
    assert float(dep.sel(supplier="A", region="C")) == pytest.approx(0.85)  # max(0.85 mine, 0.25 refine)
    assert float(dep.sel(supplier="B", region="C")) == pytest.approx(0.75)  # max(0.15, 0.75)
    assert float(dep.sel(supplier="not bc", region="C")) == pytest.approx(0.85)
    at_refining = metrics.dependence(ds, "A", step="refine").sel(mineral="ndpr", stage="refine", period=2024)
    assert float(at_refining.sel(supplier="A", region="C")) == pytest.approx(0.25)
    defaults = metrics.dependence(ds)
    assert list(defaults["supplier"].values) == ["bc"]  # no CHN region here: the blocs
    with pytest.raises(MetricUnavailableError):
        metrics.dependence(ds, "CHN")


def test_regions_relying_counts_outsiders_above_half() -> None:
    ds = re_export_world()
    out = metrics.regions_relying(ds).sel(mineral="ndpr", period=2024)
    # refined use: B (A ore 80%) and C (85%) rely on A
    assert float(out.sel(stage="refine", region="A")) == 2.0
    # ore: only B receives any, 80% from A
    assert float(out.sel(stage="mine", region="A")) == 1.0
    # B: C refined use traced to B at 75% (refining location); B itself does not count
    assert float(out.sel(stage="refine", region="B")) == 1.0
    # bloc bc: only A is outside it, and A uses no refined product; its ore is its own
    assert float(out.sel(stage="refine", region="bc")) == 0.0


def test_processing_from_released_stock_is_attributed_to_the_processor() -> None:
    ds = blank(stages=("mine", "refine"))
    # B receives no ore but refines 10 from a reserve release and ships it to C
    ds["reserve_release"] = xr.zeros_like(ds["production"])
    ds["reserve_release"].loc[{"stage": "mine", "region": "B"}] = 10.0
    ship(ds, "refine", "B", "C", 10.0)
    share = metrics.origin_share(ds).sel(mineral="ndpr", stage="refine", region="C", period=2024)
    assert float(share.sel(step="mine", source="B")) == 1.0
    assert float(metrics.processing_input(ds).sel(mineral="ndpr", stage="refine", region="B", period=2024)) == 10.0


def test_a_blocs_origin_shares_stay_a_composition_when_its_members_receive_subnormal_flows() -> None:
    # found by the property test below: A's magnets come from 5e-324 t of its own output, its refined input
    # from itself, and its ore half from C and half from D. Weighting the bloc's mean by that inflow
    # directly, 0.5 * 5e-324 underflows to 0 and the bloc's mine shares summed to 0 instead of 1.
    ds = blank(stages=STAGES, regions=("A", "B", "C", "D"), blocs={"ab": ["A", "B"]})
    flow = np.zeros((3, 4, 4, 2))
    flow[0, 2, 0, 1] = flow[0, 3, 0, 1] = flow[1, 0, 0, 1] = 1.0
    flow[2, 0, 0, 1] = 5e-324
    ds["flow"].values[0] = flow
    shares = metrics.origin_share(ds).sel(mineral="ndpr", stage="magnet", period=2025)
    for user in ("A", "ab", "world"):
        mine = shares.sel(step="mine", region=user, source=["A", "B", "C", "D"]).values
        np.testing.assert_allclose(mine, [0.0, 0.0, 0.5, 0.5], err_msg=user)
        assert float(shares.sel(step="magnet", region=user, source="ab")) == 1.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=100.0), min_size=3 * 4 * 4 * 2, max_size=3 * 4 * 4 * 2),
    st.lists(st.booleans(), min_size=3 * 4 * 4 * 2, max_size=3 * 4 * 4 * 2),
)
def test_origin_shares_are_a_composition_wherever_there_is_use(values: list[float], zero: list[bool]) -> None:
    ds = blank(stages=STAGES, regions=("A", "B", "C", "D"), blocs={"ab": ["A", "B"]})
    flow = (np.array(values) * ~np.array(zero)).reshape(3, 4, 4, 2)
    ds["flow"].values[0] = flow
    shares = metrics.origin_share(ds).sel(mineral="ndpr")
    users = ["A", "B", "C", "D", "ab", "world"]
    individual = shares.sel(source=["A", "B", "C", "D"], region=users)
    finite = individual.values[np.isfinite(individual.values)]
    assert ((finite >= -1e-12) & (finite <= 1 + 1e-12)).all()
    totals = individual.sum("source", min_count=1).transpose("stage", "step", "region", "period").values
    received = metrics.inflow(ds).sel(mineral="ndpr", region=["A", "B", "C", "D"])
    used = np.concatenate(
        [received.values, received.sum("region").values[:, None].repeat(2, axis=1)], axis=1
    )  # (stage, user, period): the bloc ab and the world receive what their members receive
    used[:, 4] = received.sel(region=["A", "B"]).sum("region").values
    for stage in range(3):
        for step in range(3):
            if step > stage:
                assert np.isnan(totals[stage, step]).all()
            else:
                positive = used[stage] > 0
                assert totals[stage, step][positive] == pytest.approx(1.0)
                assert np.isnan(totals[stage, step][~positive]).all()


# ---------------------------------------------------------------------------------------------------------
# cost


def one_market(price: float, consumption: float, mined: float, producer_price: float) -> xr.Dataset:
    """One region A that mines and consumes at the mine stage of a one-stage mineral."""
    ds = blank(stages=("mine",), regions=("A", "B"), sector_stage={"ev": "mine"}, periods=(2024,))
    ds["price"].loc[{"region": "A"}] = price
    ds["producer_price"].loc[{"region": "A"}] = producer_price
    ds["consumption"].loc[{"region": "A"}] = consumption
    ds["production"].loc[{"region": "A"}] = mined
    ship(ds, "mine", "A", "A", consumption)
    return ds


def test_consumer_surplus_change_is_exact_for_linear_demand() -> None:
    # inverse demand p = 100 - c; a supply shock moves the price from 40 to 50 along it
    base = one_market(price=40.0, consumption=60.0, mined=60.0, producer_price=40.0)
    run = one_market(price=50.0, consumption=50.0, mined=50.0, producer_price=40.0)
    consumer_surplus = {c: 0.5 * c * c for c in (60.0, 50.0)}  # area under p = 100 - c above the price
    out = metrics.surplus_change(run, base).sel(mineral="ndpr", period=2024, region="A")
    assert float(out.sel(component="consumer")) == pytest.approx(consumer_surplus[50.0] - consumer_surplus[60.0])
    # expenditure 2500 vs 2400
    change = metrics.consumer_expenditure_change(run, base).sel(mineral="ndpr", period=2024, region="A")
    assert float(change) == pytest.approx(100.0)


def test_producer_surplus_change_is_exact_for_linear_supply() -> None:
    # supply q = 2 (p - 10); a demand surge moves the producer price from 40 to 50 along it
    base = one_market(price=40.0, consumption=60.0, mined=60.0, producer_price=40.0)
    run = one_market(price=40.0, consumption=60.0, mined=80.0, producer_price=50.0)
    producer_surplus = {q: q * q / 4.0 for q in (60.0, 80.0)}  # area above p = 10 + q/2 below the price
    out = metrics.surplus_change(run, base).sel(mineral="ndpr", period=2024, region="A")
    assert float(out.sel(component="producer")) == pytest.approx(producer_surplus[80.0] - producer_surplus[60.0])


def two_stage(p_ore: float, p_refined: float, ore_in: float) -> xr.Dataset:
    """B buys ore from A at its use-node price and refines it (yield 1) for C at the producer price."""
    ds = blank(stages=("mine", "refine"), periods=(2024,))
    ship(ds, "mine", "A", "B", ore_in)
    ship(ds, "refine", "B", "C", ore_in)
    ds["production"].loc[{"stage": "refine", "region": "B"}] = ore_in
    ds["consumption"].loc[{"stage": "refine", "region": "C"}] = ore_in
    ds["price"].loc[{"stage": "mine", "region": "B"}] = p_ore
    ds["producer_price"].loc[{"stage": "refine", "region": "B"}] = p_refined
    return ds


def test_processor_surplus_change_on_the_margin() -> None:
    # processing supply z = 0.4 m - 6 in the unit margin m: margin 40 -> z 10, margin 50 -> z 14
    base = two_stage(p_ore=60.0, p_refined=100.0, ore_in=10.0)
    run = two_stage(p_ore=70.0, p_refined=120.0, ore_in=14.0)
    surplus = {z: z * z / (2 * 0.4) for z in (10.0, 14.0)}
    out = metrics.surplus_change(run, base).sel(mineral="ndpr", period=2024, region="B")
    assert float(out.sel(component="producer")) == pytest.approx(surplus[14.0] - surplus[10.0])  # 120


def test_surplus_change_adds_rents_fiscal_cost_and_offtake() -> None:
    base = one_market(price=40.0, consumption=60.0, mined=60.0, producer_price=40.0)
    run = base.copy(deep=True)
    money(run, "fiscal_cost", {"A": 50.0})
    money(run, "levy_revenue", {"A": 30.0})
    money(run, "quota_rent", {"B": 5.0})
    transfer = xr.zeros_like(run["flow"].isel(stage=0, drop=True))
    transfer.loc[{"region": "A", "partner": "B"}] = 12.0  # A (buyer) pays B (seller) 12 above market
    run["offtake_transfer"] = transfer
    out = metrics.surplus_change(run, base).sel(mineral="ndpr", period=2024)
    a = out.sel(region="A")
    assert float(a.sel(component="rents")) == 30.0
    assert float(a.sel(component="fiscal")) == -50.0
    assert float(a.sel(component="offtake")) == -12.0
    assert float(a.sel(component="total")) == pytest.approx(30.0 - 50.0 - 12.0)
    assert float(out.sel(region="B", component="total")) == pytest.approx(5.0 + 12.0)
    assert float(out.sel(region="world", component="offtake")) == 0.0
    assert list(out["component"].values) == list(metrics.SURPLUS_COMPONENTS)


def test_money_metrics_aggregate_to_blocs_and_are_zero_when_absent() -> None:
    ds = blank(blocs={"club": ["A", "B"]})
    assert float(metrics.fiscal_cost(ds).sum()) == 0.0
    money(ds, "fiscal_cost", {"A": 10.0, "B": 5.0, "C": 1.0})
    money(ds, "tariff_revenue", {"C": 2.0})
    cost = metrics.fiscal_cost(ds).sel(mineral="ndpr", period=2024)
    assert float(cost.sel(region="club")) == 15.0
    assert float(cost.sel(region="world")) == 16.0
    cumulative = metrics.fiscal_cost_cumulative(ds).sel(mineral="ndpr")
    assert float(cumulative.sel(region="club")) == 30.0
    rents = metrics.rents_captured(ds).sel(mineral="ndpr", period=2024)
    assert float(rents.sel(region="C")) == 2.0 and float(rents.sel(region="club")) == 0.0
    ds["consumption"].loc[{"stage": "refine", "region": "A"}] = 4.0
    ds["price"].loc[{"stage": "refine", "region": "A"}] = 25.0
    assert float(metrics.consumer_expenditure(ds).sel(mineral="ndpr", period=2024, region="club")) == 100.0


# ---------------------------------------------------------------------------------------------------------
# reserve and influence


def test_days_of_cover() -> None:
    ds = blank(stages=("mine", "refine"), blocs={"ab": ["A", "B"]})
    ship(ds, "refine", "C", "A", 3650.0)
    ship(ds, "refine", "C", "B", 3650.0)
    ds["reserve_stock"] = xr.zeros_like(ds["production"])
    ds["reserve_stock"].loc[{"stage": "refine", "region": "A"}] = 100.0
    cover = metrics.days_of_cover(ds).sel(mineral="ndpr", stage="refine", period=2024)
    assert float(cover.sel(region="A")) == pytest.approx(10.0)  # 100 t / (3650 t / 365 d)
    assert float(cover.sel(region="B")) == 0.0
    assert float(cover.sel(region="ab")) == pytest.approx(5.0)
    assert np.isnan(float(cover.sel(region="C")))  # C uses none
    stock = metrics.reserve_stock(ds).sel(mineral="ndpr", stage="refine", period=2024)
    assert float(stock.sel(region="ab")) == 100.0


def test_output_share_by_bloc() -> None:
    ds = blank(blocs={"club": ["A", "B"]})
    for region, tonnes in {"A": 10.0, "B": 30.0, "C": 60.0}.items():
        ds["production"].loc[{"stage": "refine", "region": region}] = tonnes
    out = metrics.output_share(ds).sel(mineral="ndpr", stage="refine", period=2024)
    assert float(out.sel(region="club")) == pytest.approx(0.4)
    assert float(out.sel(region="C")) == pytest.approx(0.6)
    assert float(out.sel(region="world")) == pytest.approx(1.0)


def test_membership_may_change_by_period() -> None:
    ds = blank(blocs={"club": ["A"]})
    ds["bloc_member"].loc[{"bloc": "club", "region": "B", "period": 2025}] = True
    for region, tonnes in {"A": 10.0, "B": 30.0, "C": 60.0}.items():
        ds["production"].loc[{"stage": "refine", "region": region}] = tonnes
    out = metrics.output_share(ds).sel(mineral="ndpr", stage="refine", region="club")
    assert out.values == pytest.approx([0.1, 0.4])


# ---------------------------------------------------------------------------------------------------------
# benchmarks


def eu_world() -> xr.Dataset:
    regions = ("CHN", "AUS", "FRA", "DEU")
    ds = blank(
        minerals=("ndpr", "lithium"), regions=regions, missing={"lithium": ["refine"]}, blocs={"eu": ["FRA", "DEU"]}
    )
    ds["consumption"].loc[{"mineral": "lithium", "stage": "mine"}] = 0.0
    # refined NdPr: FRA 70 from CHN, 30 from AUS; DEU 50 from CHN and 10 from FRA (EU-made)
    ship(ds, "refine", "CHN", "FRA", 70.0, mineral="ndpr")
    ship(ds, "refine", "AUS", "FRA", 30.0, mineral="ndpr")
    ship(ds, "refine", "CHN", "DEU", 50.0, mineral="ndpr")
    ship(ds, "refine", "FRA", "DEU", 10.0, mineral="ndpr")
    for region, tonnes in {"CHN": 120.0, "AUS": 30.0, "FRA": 10.0}.items():
        ds["production"].loc[{"mineral": "ndpr", "stage": "refine", "region": region}] = tonnes
    # ore for FRA's refinery: 6 from CHN, 4 from AUS
    ship(ds, "mine", "CHN", "FRA", 6.0, mineral="ndpr")
    ship(ds, "mine", "AUS", "FRA", 4.0, mineral="ndpr")
    return ds


def test_eu_2030_benchmark_pass_and_fail() -> None:
    ds = eu_world()
    share = metrics.eu_single_supplier_share(ds).sel(period=2024)
    # refined: CHN 120 of the EU's 160 t; FRA's 10 t to DEU is EU-made, not a third country's
    assert float(share.sel(mineral="ndpr", stage="refine")) == pytest.approx(0.75)
    assert str(share["top_supplier"].sel(mineral="ndpr", stage="refine").values) == "CHN"
    assert float(share.sel(mineral="ndpr", stage="mine")) == pytest.approx(0.6)
    verdict = metrics.eu_2030_pass(ds).sel(period=2024)
    assert float(verdict.sel(mineral="ndpr", stage="refine")) == 0.0
    assert float(verdict.sel(mineral="ndpr", stage="mine")) == 1.0
    # lithium lacks the refine stage and the EU uses no lithium ore: NaN, neither pass nor fail
    assert np.isnan(float(verdict.sel(mineral="lithium", stage="refine")))
    assert np.isnan(float(verdict.sel(mineral="lithium", stage="mine")))
    assert float(metrics.eu_2030_pass(ds, limit=0.8).sel(period=2024, mineral="ndpr", stage="refine")) == 1.0
    with pytest.raises(MetricUnavailableError):
        metrics.eu_2030_pass(blank())


# ---------------------------------------------------------------------------------------------------------
# headline and compute_all


def test_headline_table_and_comparison() -> None:
    base = eu_world()
    base["reference_demand"] = base["consumption"].copy()
    base["reference_demand"].loc[{"mineral": "ndpr", "stage": "refine", "region": "FRA"}] = 100.0
    base["reference_demand"].loc[{"mineral": "ndpr", "stage": "refine", "region": "DEU"}] = 60.0
    base["consumption"] = base["reference_demand"].copy()
    run = base.copy(deep=True)
    run["consumption"].loc[{"mineral": "ndpr", "stage": "refine", "region": "DEU", "period": 2024}] = 20.0
    money(run, "fiscal_cost", {"FRA": 7.0})
    table = metrics.headline(run, base)
    assert list(table.columns) == metrics.HEADLINE_COLUMNS
    assert set(table["metric"]) <= set(metrics.HEADLINE_DEFINITIONS)
    rows = table.set_index(["metric", "mineral", "bloc"])["value"]
    # the EU misses 40 of 160 t in 2024 and is whole again in 2025
    assert rows[("shortfall_peak", "ndpr", "eu")] == pytest.approx(0.25)
    assert rows[("recovery_periods", "ndpr", "eu")] == 1.0
    # refined: 75% refined in CHN; ore: CHN's and AUS's refineries count as their own mines' ore (they
    # receive none), FRA's refinery runs on 60% CHN ore: (70 + 50 + 0.6 x 10) / 160 at the mine step
    assert rows[("dependence_CHN_last", "ndpr", "eu")] == pytest.approx(126 / 160)
    # 7 a year for each of two minerals over two years
    assert rows[("fiscal_cost_cumulative", "ndpr", "eu")] == pytest.approx(14.0)
    assert rows[("fiscal_cost_cumulative", "all", "eu")] == pytest.approx(28.0)
    # consumers who get nothing at an unchanged price lose no surplus (linear demand, trapezoid at dp = 0)
    assert rows[("surplus_change_cumulative", "all", "world")] == pytest.approx(-28.0)
    assert rows[("output_share_refine_last", "ndpr", "eu")] == pytest.approx(10 / 160)
    # outside the EU, no region uses refined NdPr
    assert rows[("regions_relying_last", "ndpr", "eu")] == 0.0
    assert ("consumer_expenditure_change_cumulative", "all", "eu") in rows.index
    assert "shortfall_peak" in set(metrics.headline(run)["metric"])
    # a shortfall that lasts to the end of the run is reported as never recovered (NaN), not left out
    lasting = run.copy(deep=True)
    lasting["consumption"].loc[{"mineral": "ndpr", "stage": "refine", "region": "DEU"}] = 20.0
    never = metrics.headline(lasting).set_index(["metric", "mineral", "bloc"])["value"]
    assert np.isnan(never[("recovery_periods", "ndpr", "eu")])
    assert "surplus_change_cumulative" not in set(metrics.headline(run)["metric"])
    side = metrics.compare({"base": base, "shock": run}, baseline=base)
    assert list(side.columns) == ["unit", "base", "shock"]
    assert side.loc[("shortfall_peak", "ndpr", "eu"), "shock"] == pytest.approx(0.25)
    assert side.loc[("shortfall_peak", "ndpr", "eu"), "base"] == 0.0
    assert side.loc[("fiscal_cost_cumulative", "all", "world"), "unit"] == "USD"


def test_compute_all_exports_every_metric_with_units() -> None:
    ds = eu_world()
    out = metrics.compute_all(ds)
    assert isinstance(out, xr.Dataset)
    for name in ("price", "shortfall_share", "hhi", "dependence", "fiscal_cost", "eu_2030_pass", "origin_share"):
        assert name in out.data_vars
        assert out[name].attrs["unit"] == metrics.REGISTRY[name].unit
    assert "surplus_change" not in out.data_vars
    assert "surplus_change" in out.attrs["skipped"]
    assert "price_gap" in out.data_vars  # eu against the rest of the world
    assert list(out["region"].values) == ["CHN", "AUS", "FRA", "DEU", "eu", "world"]
    with_base = metrics.compute_all(ds, baseline=ds)
    assert float(abs(with_base["surplus_change"]).max()) == 0.0
    assert float(abs(with_base["price_spike"].fillna(0.0)).max()) == 0.0
    frame = metrics.headline(ds)
    assert isinstance(frame, pd.DataFrame)


def test_docs_list_every_metric_with_its_unit() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`"): line.split("|")[2].strip()
        for line in text.splitlines()
        if line.startswith("| `")
    }
    for metric in metrics.list_metrics():
        assert rows.get(metric.name) == metric.unit, metric.name
    for name, (unit, _) in metrics.HEADLINE_DEFINITIONS.items():
        assert rows.get(name) == unit, name


def test_runs_are_compared_over_the_minerals_and_periods_they_share() -> None:
    """A run of one mineral over fewer periods against a run of two: both cut to what they share, with a note
    saying what was left out; the baseline's change metrics then work (the labels agree)."""
    base = eu_world()
    short = eu_world().sel(mineral=["lithium"], period=base["period"].values[:1])
    aligned, note = metrics.common_window({"base": base, "short": short})
    assert note is not None and "lithium" in note and "base's ndpr" in note and "base's periods" in note
    for ds in aligned.values():
        assert list(ds["mineral"].values) == ["lithium"]
        assert list(ds["period"].values) == list(short["period"].values)
    table = metrics.compare(aligned, baseline=aligned["base"])
    assert set(table.index.get_level_values("mineral")) <= {"lithium", metrics.ALL_MINERALS}
    same, none = metrics.common_window({"a": base, "b": base})
    assert none is None and same["a"] is base
    other_world = base.isel(region=slice(0, 3))
    with pytest.raises(MetricError, match="different regions"):
        metrics.common_window({"base": base, "other": other_world})
    with pytest.raises(MetricError, match="no period in common"):
        metrics.common_window({"base": base.isel(period=[0]), "later": base.isel(period=[1])})


def test_runs_of_fewer_minerals_have_fewer_stages_and_still_compare() -> None:
    """A run of lithium alone (which has no refine stage here) lacks the refine label the two-mineral run has:
    the stages follow the minerals, and the runs compare on lithium; a run lacking a stage that a shared
    mineral has numbers at is from another world and refused."""
    base = eu_world()
    alone = base.sel(mineral=["lithium"], stage=["mine"])
    aligned, note = metrics.common_window({"base": base, "alone": alone})
    assert note is not None and "base's ndpr" in note
    assert [list(ds["stage"].values) for ds in aligned.values()] == [["mine"], ["mine"]]
    assert not metrics.compare(aligned, baseline=aligned["base"]).empty
    with pytest.raises(MetricError, match="stages the other runs lack"):
        metrics.common_window({"base": base, "refine only": base.sel(stage=["refine"])})


def test_a_report_of_runs_with_nothing_in_common_still_builds_and_says_so() -> None:
    """The report shows runs side by side even where they share no mineral: its headline table is not cut,
    and its note says the differences do not compare like with like."""
    from critmin.report.html import ReportRun, _headline_rows
    from critmin.simulate.scenario import scenario_from_dict

    base = eu_world()
    spec = scenario_from_dict({"name": "x", "world": "toy"})
    runs = [
        ReportRun(label="ndpr only", scenario=spec, ds=base.sel(mineral=["ndpr"])),
        ReportRun(label="lithium only", scenario=spec, ds=base.sel(mineral=["lithium"])),
    ]
    labels, rows, note = _headline_rows(runs)
    assert labels == ["ndpr only", "lithium only"] and rows
    assert note is not None and "not cut to a common window" in note and "no mineral in common" in note
