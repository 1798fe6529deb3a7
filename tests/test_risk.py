"""Risk outputs on small tables whose answers are known by hand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from critmin.core.errors import CritminError
from critmin.results.risk import (
    default_aggregate,
    exceedance,
    expected_and_cvar,
    per_draw,
    quantiles,
    risk_table,
    sensitivity,
    tail_measures,
)

COLUMNS = ["draw", "metric", "mineral", "region", "period", "value", "unit"]


def table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def one_metric(values: np.ndarray, metric: str = "price", unit: str = "USD/t", period: object = 2030) -> pd.DataFrame:
    return table([(d, metric, "ndpr", "club", period, float(v), unit) for d, v in enumerate(values)])


def test_quantiles_follow_numpy_linear_rule():
    metrics = one_metric(np.arange(1, 101))
    q = quantiles(metrics)
    assert list(q.columns) == ["metric", "mineral", "region", "period", "unit", "n", "mean", "p5", "p50", "p95"]
    row = q.iloc[0]
    # (n - 1) p = 4.95: 5 + 0.95 * (6 - 5); the median of 1..100 is 50.5; 95.05 likewise.
    assert (row["p5"], row["p50"], row["p95"]) == pytest.approx((5.95, 50.5, 95.05))
    assert (row["n"], row["mean"], row["unit"]) == (100, 50.5, "USD/t")


def test_quantiles_by_period_leave_nan_out():
    rng = np.random.default_rng(3)
    rows = []
    for d in range(200):
        for p in (2030, 2031):
            value = np.nan if d % 10 == 0 and p == 2031 else rng.normal(p - 2000, 1)
            rows.append((d, "price", "ndpr", "club", p, value, "USD/t"))
        rows.append((d, "price", "dy", "club", 2030, float(d), "USD/t"))
    metrics = table(rows)
    q = quantiles(metrics, q=(0.1, 0.9))
    assert list(q.columns[-2:]) == ["p10", "p90"]
    assert len(q) == 3
    for _, row in q.iterrows():
        sel = metrics[(metrics["mineral"] == row["mineral"]) & (metrics["period"] == row["period"])]["value"]
        values = sel.dropna().to_numpy()
        assert row["n"] == len(values)
        assert row["p10"] == pytest.approx(np.quantile(values, 0.1))
        assert row["p90"] == pytest.approx(np.quantile(values, 0.9))
        assert row["mean"] == pytest.approx(values.mean())
    assert q.loc[(q["mineral"] == "ndpr") & (q["period"] == 2031), "n"].item() == 180
    with pytest.raises(CritminError, match=r"\[0, 1\]"):
        quantiles(metrics, q=(0.5, 1.5))


def test_exceedance_per_period_and_over_the_horizon():
    # Draw d has shortfall d/10 in 2030 and (9 - d)/10 in 2031: over 0.5 in 2030 for d = 6..9, in 2031 for
    # d = 0..3; the peak exceeds 0.5 unless d = 4 or 5. Exactly 0.5 does not count (strictly greater).
    rows = []
    for d in range(10):
        rows.append((d, "shortfall_share", "ndpr", "club", 2030, d / 10, "1"))
        rows.append((d, "shortfall_share", "ndpr", "club", 2031, (9 - d) / 10, "1"))
    out = exceedance(table(rows), threshold=0.5)
    assert list(out.columns) == [
        "metric",
        "mineral",
        "region",
        "period",
        "scope",
        "threshold",
        "probability",
        "stderr",
        "n",
    ]
    by = {(r.scope, None if pd.isna(r.period) else r.period): r for r in out.itertuples()}
    assert by[("period", 2030)].probability == pytest.approx(0.4)
    assert by[("period", 2031)].probability == pytest.approx(0.4)
    horizon = by[("horizon", None)]
    assert horizon.probability == pytest.approx(0.8) and horizon.n == 10
    assert horizon.stderr == pytest.approx(np.sqrt(0.8 * 0.2 / 10))


def test_tail_measures_of_1_to_100():
    var, cvar = tail_measures(np.arange(1, 101, dtype=float), 0.95)
    assert var == 95.0
    assert cvar == pytest.approx(np.mean([96, 97, 98, 99, 100]))


def test_cvar_counts_a_fraction_of_a_draw():
    # n (1 - a) = 1.5 draws in the tail: all of 30 and half of 29.
    var, cvar = tail_measures(np.arange(1, 31, dtype=float), 0.95)
    assert var == 29.0
    assert cvar == pytest.approx((30 + 0.5 * 29) / 1.5)
    assert tail_measures(np.array([np.nan, 3.0]), 0.5) == (3.0, 3.0)
    with pytest.raises(CritminError, match="strictly between"):
        tail_measures(np.ones(3), 1.0)


def test_expected_and_cvar_of_a_cumulative_cost_and_a_peak_price():
    # Cost: 0.5 x (d + 1) in each of two periods, so the total is d + 1 = 1..100. Price peaks at 2 (d + 1).
    rows = []
    for d in range(100):
        for p in (2030, 2031):
            rows.append((d, "fiscal_cost", "all", "club", p, 0.5 * (d + 1), "USD"))
            rows.append((d, "price", "ndpr", "club", p, (d + 1) * (1 if p == 2030 else 2), "USD/t"))
    metrics = table(rows)
    cost = expected_and_cvar(metrics, "fiscal_cost").iloc[0]
    assert (cost["expected"], cost["var"], cost["cvar"]) == pytest.approx((50.5, 95.0, 98.0))
    assert (cost["aggregate"], cost["unit"], cost["n"], cost["level"]) == ("sum", "USD", 100, 0.95)
    price = expected_and_cvar(metrics, "price", aggregate="max").iloc[0]
    assert (price["expected"], price["cvar"]) == pytest.approx((101.0, 196.0))


def test_per_draw_sums_money_and_peaks_the_rest():
    assert default_aggregate("fiscal_cost", "USD") == "sum"
    assert default_aggregate("price", "USD/t") == "max"
    assert default_aggregate("shortfall_share", "1") == "max"
    rows = [
        (0, "fiscal_cost", "all", "club", 2030, 1.0, "USD"),
        (0, "fiscal_cost", "all", "club", 2031, 2.0, "USD"),
        (0, "price", "dy", "club", 2030, 5.0, "USD/t"),
        (0, "price", "dy", "club", 2031, 3.0, "USD/t"),
        (1, "price", "dy", "club", 2030, np.nan, "USD/t"),
        (1, "price", "dy", "club", 2031, np.nan, "USD/t"),
        (1, "recovery_periods", "dy", "world", None, 4.0, "periods"),
    ]
    out = per_draw(table(rows))
    assert list(out.columns) == ["metric", "mineral", "region", "aggregate", "draw", "value", "unit"]
    got = {(r.metric, r.draw): (r.aggregate, r.value) for r in out.itertuples()}
    assert got == {
        ("fiscal_cost", 0): ("sum", 3.0),
        ("price", 0): ("max", 5.0),
        ("recovery_periods", 1): ("max", 4.0),
    }  # draw 1's price is NaN in every period: no outcome
    mapped = per_draw(table(rows), aggregate={"price": "sum"})
    assert mapped.loc[mapped["metric"] == "price", "value"].item() == 8.0
    with pytest.raises(CritminError, match="unknown aggregate"):
        per_draw(table(rows), aggregate="mean")  # type: ignore[arg-type]


def test_bad_metric_tables_are_refused():
    with pytest.raises(CritminError, match="no metric 'price'"):
        exceedance(one_metric(np.ones(3), metric="cost", unit="USD"), metric="price")
    mixed_units = table(
        [(0, "price", "dy", "club", 2030, 1.0, "USD/t"), (1, "price", "dy", "club", 2030, 1.0, "USD/kg")]
    )
    with pytest.raises(CritminError, match="several units"):
        quantiles(mixed_units)
    mixed_periods = table(
        [(0, "price", "dy", "club", 2030, 1.0, "USD/t"), (0, "price", "dy", "club", None, 1.0, "USD/t")]
    )
    with pytest.raises(CritminError, match="with and without a period"):
        per_draw(mixed_periods)
    with pytest.raises(CritminError, match="lacks the columns"):
        quantiles(pd.DataFrame({"draw": [0], "value": [1.0]}))


def _draws(n: int, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "draw": np.arange(n),
            "elasticity": rng.uniform(0.1, 0.9, n),
            "noise": rng.uniform(size=n),
            "constant": np.full(n, 2.0),
            "owner": rng.choice(["USA", "EU"], n),
            "ban": rng.uniform(size=n) < 0.5,
            "start": [dt.date(2026, 1, 1) + dt.timedelta(days=int(k)) for k in rng.integers(0, 365, n)],
        }
    )


def test_sensitivity_ranks_the_monotone_driver_first():
    draws = _draws(200)
    # Peak price falls monotonically (not linearly) with the elasticity: Spearman's rho is exactly -1.
    rows = [
        (d, "price", "ndpr", "club", 2030, 1.0 / e**3, "USD/t")
        for d, e in zip(draws["draw"], draws["elasticity"], strict=True)
    ]
    out = sensitivity(draws, table(rows))
    assert list(out.columns) == ["metric", "mineral", "region", "aggregate", "input", "rho", "p_value", "n", "rank"]
    top = out.iloc[0]
    assert (top["input"], top["rank"], top["n"]) == ("elasticity", 1, 200)
    assert top["rho"] == pytest.approx(-1.0)
    assert top["p_value"] < 1e-12
    assert set(out["input"]) == {"elasticity", "noise", "ban", "start"}
    assert set(out.attrs["skipped"]) == {"owner", "constant"}  # text has no rank; a constant does not vary
    noise = out[out["input"] == "noise"].iloc[0]
    assert abs(noise["rho"]) < 0.2 and noise["p_value"] > 0.01


def test_spearman_matches_scipy_with_ties_and_missing_draws():
    draws = _draws(120, seed=9)
    rng = np.random.default_rng(1)
    y = np.round(draws["noise"].to_numpy() * 5 + rng.normal(0, 1, 120))  # ties in the outcome
    rows = [(d, "cost", "all", "club", 2030, float(v), "USD") for d, v in enumerate(y) if d % 7]  # some draws lack it
    out = sensitivity(draws, table(rows)).set_index("input")
    keep = np.arange(120) % 7 != 0
    for name in ("noise", "ban", "elasticity"):
        want = stats.spearmanr(draws[name].to_numpy(dtype=float)[keep], y[keep])
        assert out.loc[name, "rho"] == pytest.approx(want.statistic, abs=1e-12)
        assert out.loc[name, "n"] == keep.sum()
        assert out.loc[name, "p_value"] == pytest.approx(want.pvalue, rel=1e-6)
    dates = np.array([d.toordinal() for d in draws["start"]], dtype=float)
    assert out.loc["start", "rho"] == pytest.approx(stats.spearmanr(dates[keep], y[keep]).statistic, abs=1e-12)


def test_prcc_separates_correlated_inputs():
    rng = np.random.default_rng(2)
    n = 400
    driver = rng.uniform(size=n)
    follower = driver + rng.normal(0, 0.05, n)  # correlated with the driver, no effect of its own
    draws = pd.DataFrame({"draw": np.arange(n), "driver": driver, "follower": follower, "noise": rng.uniform(size=n)})
    y = np.exp(3 * driver) + rng.normal(0, 0.01, n)
    metrics = table([(d, "price", "ndpr", "club", 2030, float(v), "USD/t") for d, v in enumerate(y)])
    spearman = sensitivity(draws, metrics).set_index("input")["rho"]
    prcc = sensitivity(draws, metrics, method="prcc").set_index("input")["rho"]
    assert spearman["follower"] > 0.9  # plain rank correlation credits the follower too
    assert prcc["driver"] > 0.95 and abs(prcc["follower"]) < 0.3
    assert sensitivity(draws, metrics, method="prcc").iloc[0]["input"] == "driver"
    with pytest.raises(CritminError, match="unknown sensitivity method"):
        sensitivity(draws, metrics, method="sobol")  # type: ignore[arg-type]


def test_risk_table_summarises_each_outcome():
    draws = _draws(100)
    rows = []
    for d, e in zip(draws["draw"], draws["elasticity"], strict=True):
        rows.append((d, "shortfall_share", "ndpr", "club", 2030, d / 100, "1"))
        rows.append((d, "shortfall_share", "ndpr", "club", 2031, 0.0, "1"))
        rows.append((d, "fiscal_cost", "all", "club", 2030, float(d + 1), "USD"))
        rows.append((d, "fiscal_cost", "all", "club", 2031, 0.0, "USD"))
        rows.append((d, "price", "ndpr", "world", 2030, 100 * e, "USD/t"))
    out = risk_table(draws, table(rows))
    assert list(out.columns) == [
        "metric",
        "mineral",
        "region",
        "aggregate",
        "unit",
        "n",
        "mean",
        "p5",
        "p50",
        "p95",
        "cvar",
        "threshold",
        "p_exceed",
        "driver",
        "driver_rho",
        "driver_p",
    ]
    assert out["metric"].tolist() == ["shortfall_share", "fiscal_cost", "price"]  # order of first appearance
    short = out.iloc[0]
    assert short["aggregate"] == "max" and short["threshold"] == 0.1
    assert short["p_exceed"] == pytest.approx(0.89)  # peaks 0.11 .. 0.99
    assert short["p50"] == pytest.approx(0.495)
    cost = out.iloc[1]
    assert (cost["aggregate"], cost["mean"], cost["cvar"]) == ("sum", 50.5, pytest.approx(98.0))
    assert np.isnan(cost["threshold"]) and np.isnan(cost["p_exceed"])
    price = out.iloc[2]
    assert (price["driver"], price["driver_rho"]) == ("elasticity", pytest.approx(1.0))
    assert price["driver_p"] < 1e-12
    only_world = risk_table(draws, table(rows), regions=["world"])
    assert only_world["metric"].tolist() == ["price"]
    custom = risk_table(draws, table(rows), exceed={"fiscal_cost": 90.0}, level=0.9)
    assert custom.loc[custom["metric"] == "fiscal_cost", "p_exceed"].item() == pytest.approx(0.1)
    assert np.isnan(custom.loc[custom["metric"] == "shortfall_share", "p_exceed"].item())


def test_risk_table_without_uncertain_inputs_has_no_driver():
    metrics = one_metric(np.arange(10.0))
    out = risk_table(pd.DataFrame({"draw": np.arange(10)}), metrics)
    assert out["driver"].tolist() == [None] and np.isnan(out["driver_rho"].item())


@pytest.mark.parametrize("method", ["spearman", "prcc"])
def test_an_outcome_that_moves_only_by_rounding_has_no_driver(method):
    draws = _draws(50)
    # a shortfall of 0.2671327 in every draw, off by rounding (1e-14 relative) in the same order as the
    # elasticity: its ranks would follow the elasticity perfectly, but the outcome does not move
    rounding = 0.2671327 * (1.0 + 1e-14 * draws["elasticity"].rank().to_numpy())
    out = sensitivity(draws, one_metric(rounding, metric="shortfall_share", unit="1"), method=method)
    assert out.empty
    # a real move, however small next to the value (1e-6 relative), has its driver
    real = 0.2671327 * (1.0 + 1e-6 * draws["elasticity"].rank().to_numpy())
    out = sensitivity(draws, one_metric(real, metric="shortfall_share", unit="1"), method=method)
    assert out.iloc[0]["input"] == "elasticity"


def test_a_driver_that_could_be_chance_is_shown_with_its_p_value():
    from critmin.results.risk import driver_label

    assert driver_label("instruments.ban.end", 0.91, 1e-9) == "instruments.ban.end (+0.91)"
    assert driver_label("instruments.ban.end", -0.40, 0.0531) == "instruments.ban.end (-0.40, p=0.053)"
    assert driver_label("x", 0.5, 0.2, symbol="ρ ") == "x (ρ +0.50, p=0.2)"
    assert driver_label(None, float("nan"), float("nan")) == ""


def test_dates_written_as_text_rank_as_dates():
    # a choice among dates sent as JSON keeps them as text: they still rank by day, not as names
    draws = _draws(60)
    rows = [
        (d, "price", "ndpr", "club", 2030, float(s.toordinal()), "USD/t")
        for d, s in zip(draws["draw"], draws["start"], strict=True)
    ]
    as_dates = sensitivity(draws, table(rows)).set_index("input")
    text = draws.assign(start=[s.isoformat() for s in draws["start"]])
    as_text = sensitivity(text, table(rows)).set_index("input")
    assert as_text.loc["start", "rho"] == pytest.approx(as_dates.loc["start", "rho"]) == pytest.approx(1.0)
    assert "start" not in as_text.attrs["skipped"] and "owner" in as_text.attrs["skipped"]
