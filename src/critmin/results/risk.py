"""Risk outputs of an ensemble, from its per-draw headline metrics and its table of draws.

The metrics table has one row per draw and label: columns ``draw, metric, mineral, region, period, value,
unit`` (``period`` empty for a metric over the whole horizon), as :meth:`critmin.results.store.Store.load_metrics`
returns it; the table of draws is wide, ``draw`` then one column per uncertain input
(:meth:`~critmin.results.store.Store.load_draws`). Definitions (also in ``docs/store.md``):

- **Quantiles** of a metric in each period over the draws, by numpy's default (linear interpolation between
  order statistics, Hyndman and Fan type 7); NaN values are left out and ``n`` counts those that remain.
- **Per-draw outcome**: a metric reduced over the periods to one number per draw, by ``sum`` (a cumulative
  total: fiscal cost) or ``max`` (a peak: price, shortfall). The default (:func:`default_aggregate`) sums money
  (unit ``USD``) and takes the peak of everything else. A metric without periods is its own outcome.
- **Exceedance**: the share of draws whose value is strictly greater than the threshold, in each period and
  over the horizon (``P(max over periods > x)``), with its Monte Carlo standard error ``sqrt(p (1 - p) / n)``.
- **Expected value and CVaR** of a per-draw outcome, in the upper (adverse) tail: ``VaR_a`` is the smallest
  draw value ``x`` with ``F(x) >= a``; ``CVaR_a = VaR_a + E[max(X - VaR_a, 0)] / (1 - a)`` (Rockafellar and
  Uryasev), the mean of the worst ``(1 - a)`` share of the draws, counting a fraction of a draw where
  ``n (1 - a)`` is not whole. CVaR95 of 1..100 is the mean of 96..100.
- **Sensitivity**: Spearman's rank correlation between each uncertain input and each per-draw outcome
  (inputs ranked by ``|rho|``), or the partial rank correlation (PRCC), which removes the linear effect of the
  other inputs' ranks and so separates inputs that the scenario correlates. Rank correlation was chosen over
  variance-based (Sobol) indices because it needs no special sampling design: it works on the Latin hypercube
  or Monte Carlo draws an ensemble already has, and captures any monotone effect; it misses non-monotone
  effects. Booleans count as 0/1, dates by their day number; text inputs (a choice among names) have no rank
  and are left out; so is an input that does not vary.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from critmin.core.errors import CritminError

Aggregate = Literal["sum", "max"]
Method = Literal["spearman", "prcc"]

#: Columns of the per-draw metrics table.
METRIC_COLUMNS = ("draw", "metric", "mineral", "region", "period", "value", "unit")
#: Labels of one outcome (a metric reduced to a number per draw).
OUTCOME_KEYS = ["metric", "mineral", "region", "aggregate"]
#: Default threshold of the exceedance column of :func:`risk_table`, for metrics whose name starts with
#: ``shortfall`` and whose unit is ``1`` (a share): the probability that the peak share exceeds 10%.
SHORTFALL_THRESHOLD = 0.1


def _check_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        raise CritminError(f"the metrics table lacks the columns {', '.join(missing)}")
    return metrics


def _select(metrics: pd.DataFrame, metric: str | Sequence[str] | None) -> pd.DataFrame:
    _check_metrics(metrics)
    if metric is None:
        return metrics
    names = [metric] if isinstance(metric, str) else list(metric)
    known = set(metrics["metric"].dropna().unique())
    unknown = [m for m in names if m not in known]
    if unknown:
        raise CritminError(
            f"no metric {', '.join(map(repr, unknown))} in the run; it has {', '.join(sorted(map(str, known)))}"
        )
    return metrics[metrics["metric"].isin(names)]


def _units(metrics: pd.DataFrame) -> dict[str, str]:
    units: dict[str, str] = {}
    for name, group in metrics.groupby("metric", sort=False):
        found = {str(u) for u in group["unit"].dropna().unique()}
        if len(found) > 1:
            raise CritminError(f"metric {name!r} has several units: {', '.join(sorted(found))}")
        units[str(name)] = found.pop() if found else ""
    return units


def _key(values: Sequence[Any]) -> tuple[Any, ...]:
    """Group labels with every kind of missing value as ``None``, so that equal labels compare equal."""
    return tuple(None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v for v in values)


def _quantile_name(q: float) -> str:
    return f"p{100 * q:g}"


def default_aggregate(metric: str, unit: str) -> Aggregate:
    """How a metric becomes one number per draw unless told: money (``USD``) is summed, the rest peaks.

    Parameters
    ----------
    metric
        The metric's name (unused by the rule, named for the record).
    unit
        Its unit.

    Returns
    -------
    str
        ``"sum"`` or ``"max"``.
    """
    return "sum" if unit.strip().upper().startswith("USD") and "/" not in unit else "max"


def quantiles(metrics: pd.DataFrame, q: Sequence[float] = (0.05, 0.5, 0.95)) -> pd.DataFrame:
    """Quantiles of every metric over the draws, by metric, mineral, region and period.

    Parameters
    ----------
    metrics
        Per-draw metrics (``draw, metric, mineral, region, period, value, unit``).
    q
        Probabilities, each in [0, 1].

    Returns
    -------
    pd.DataFrame
        Columns ``metric, mineral, region, period, unit, n, mean`` and one column per probability named
        ``p<100 q>`` (``p5, p50, p95``); ``n`` counts the draws with a value (NaN values are left out).
    """
    _check_metrics(metrics)
    probs = [float(p) for p in q]
    if not probs or any(not 0.0 <= p <= 1.0 for p in probs):
        raise CritminError(f"quantile probabilities must lie in [0, 1], got {list(q)}")
    keys = ["metric", "mineral", "region", "period"]
    units = _units(metrics)
    rows = []
    for key, group in metrics.groupby(keys, dropna=False, sort=False):
        values = group["value"].to_numpy(dtype=float)
        values = values[~np.isnan(values)]
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["unit"] = units[str(row["metric"])]
        row["n"] = len(values)
        row["mean"] = float(values.mean()) if len(values) else math.nan
        found = np.quantile(values, probs) if len(values) else np.full(len(probs), math.nan)
        row.update({_quantile_name(p): float(v) for p, v in zip(probs, found, strict=True)})
        rows.append(row)
    columns = [*keys, "unit", "n", "mean", *map(_quantile_name, probs)]
    return pd.DataFrame(rows, columns=columns)


def per_draw(
    metrics: pd.DataFrame,
    metric: str | Sequence[str] | None = None,
    aggregate: Aggregate | Mapping[str, Aggregate] | None = None,
) -> pd.DataFrame:
    """Per-draw outcomes: each metric reduced over the periods to one number per draw.

    Parameters
    ----------
    metrics
        Per-draw metrics.
    metric
        Only this metric or these metrics (default: all).
    aggregate
        ``sum`` or ``max`` for every metric, a mapping from metric to either, or ``None`` for
        :func:`default_aggregate`. A metric without periods is its own outcome whatever the aggregate.

    Returns
    -------
    pd.DataFrame
        Columns ``metric, mineral, region, aggregate, draw, value, unit``; draws whose values are all NaN
        are left out.
    """
    sub = _select(metrics, metric)
    units = _units(sub)
    frames = []
    for name, group in sub.groupby("metric", sort=False):
        unit = units[str(name)]
        if aggregate is None:
            how = default_aggregate(str(name), unit)
        elif isinstance(aggregate, str):
            how = aggregate
        else:
            how = aggregate.get(str(name), default_aggregate(str(name), unit))
        if how not in ("sum", "max"):
            raise CritminError(f"unknown aggregate {how!r} for {name!r}: sum or max")
        has_period = group["period"].notna()
        mixed = group.assign(_p=has_period).groupby(["mineral", "region"], dropna=False)["_p"].nunique()
        if (mixed > 1).any():
            raise CritminError(f"metric {name!r} has rows with and without a period for the same mineral and region")
        grouped = group.groupby(["mineral", "region", "draw"], dropna=False, sort=True)["value"]
        reduced = grouped.sum(min_count=1) if how == "sum" else grouped.max()
        out = reduced.reset_index()
        out = out[out["value"].notna()]
        out.insert(0, "metric", name)
        out.insert(3, "aggregate", how)
        out["unit"] = unit
        frames.append(out)
    columns = [*OUTCOME_KEYS, "draw", "value", "unit"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def exceedance(metrics: pd.DataFrame, metric: str = "shortfall_share", threshold: float = 0.1) -> pd.DataFrame:
    """Probability that a metric exceeds a threshold, in each period and over the horizon.

    Parameters
    ----------
    metrics
        Per-draw metrics.
    metric
        The metric (default ``shortfall_share``).
    threshold
        The threshold ``x``; a value counts when strictly greater.

    Returns
    -------
    pd.DataFrame
        Columns ``metric, mineral, region, period, scope, threshold, probability, stderr, n``: ``scope`` is
        ``period`` for ``P(value in the period > x)`` and ``horizon`` (period empty) for
        ``P(max over periods > x)``; ``stderr`` is the Monte Carlo standard error ``sqrt(p (1 - p) / n)``;
        ``n`` counts the draws with a value.
    """
    sub = _select(metrics, metric)
    rows: list[dict[str, Any]] = []

    def _row(mineral: Any, region: Any, period: Any, scope: str, values: np.ndarray) -> dict[str, Any]:
        n = len(values)
        p = float((values > threshold).mean()) if n else math.nan
        stderr = math.sqrt(p * (1.0 - p) / n) if n else math.nan
        return {
            "metric": metric,
            "mineral": mineral,
            "region": region,
            "period": period,
            "scope": scope,
            "threshold": float(threshold),
            "probability": p,
            "stderr": stderr,
            "n": n,
        }

    timed = sub[sub["period"].notna()]
    for (mineral, region, period), group in timed.groupby(["mineral", "region", "period"], dropna=False):
        values = group["value"].to_numpy(dtype=float)
        rows.append(_row(mineral, region, period, "period", values[~np.isnan(values)]))
    peaks = per_draw(sub, metric, aggregate="max")
    for (mineral, region), group in peaks.groupby(["mineral", "region"], dropna=False):
        rows.append(_row(mineral, region, pd.NA, "horizon", group["value"].to_numpy(dtype=float)))
    columns = ["metric", "mineral", "region", "period", "scope", "threshold", "probability", "stderr", "n"]
    return pd.DataFrame(rows, columns=columns)


def tail_measures(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Value at risk and CVaR of a sample in its upper tail.

    Parameters
    ----------
    values
        One value per draw (NaN left out).
    level
        The confidence level ``a`` in (0, 1).

    Returns
    -------
    tuple of float
        ``(VaR_a, CVaR_a)``: the smallest value ``x`` with ``F(x) >= a``, and
        ``VaR_a + E[max(X - VaR_a, 0)] / (1 - a)``.
    """
    if not 0.0 < level < 1.0:
        raise CritminError(f"the CVaR level must lie strictly between 0 and 1, got {level}")
    x = np.sort(np.asarray(values, dtype=float))
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    k = max(math.ceil(level * n - 1e-9), 1)
    var = float(x[k - 1])
    cvar = var + float(np.maximum(x - var, 0.0).mean()) / (1.0 - level)
    return var, cvar


def expected_and_cvar(
    metrics: pd.DataFrame, metric: str, level: float = 0.95, aggregate: Aggregate = "sum"
) -> pd.DataFrame:
    """Expected value and CVaR of a per-draw total (e.g. cumulative fiscal cost, peak price).

    Parameters
    ----------
    metrics
        Per-draw metrics.
    metric
        The metric.
    level
        The CVaR level (0.95: the mean of the worst 5% of the draws).
    aggregate
        ``sum`` over the periods (a cumulative total) or ``max`` (a peak).

    Returns
    -------
    pd.DataFrame
        Columns ``metric, mineral, region, aggregate, unit, n, level, expected, var, cvar``.
    """
    outcomes = per_draw(metrics, metric, aggregate=aggregate)
    rows = []
    for (mineral, region), group in outcomes.groupby(["mineral", "region"], dropna=False, sort=False):
        values = group["value"].to_numpy(dtype=float)
        var, cvar = tail_measures(values, level)
        rows.append(
            {
                "metric": metric,
                "mineral": mineral,
                "region": region,
                "aggregate": aggregate,
                "unit": group["unit"].iloc[0],
                "n": len(values),
                "level": float(level),
                "expected": float(values.mean()),
                "var": var,
                "cvar": cvar,
            }
        )
    columns = ["metric", "mineral", "region", "aggregate", "unit", "n", "level", "expected", "var", "cvar"]
    return pd.DataFrame(rows, columns=columns)


def _numeric_inputs(draws: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The inputs that have a rank (numbers, booleans as 0/1, dates as day numbers), indexed by draw."""
    if "draw" not in draws.columns:
        raise CritminError("the table of draws needs a 'draw' column")
    out: dict[str, pd.Series] = {}
    skipped: list[str] = []
    table = draws.set_index("draw")
    for col in table.columns:
        series = table[col]
        kind = series.dtype.kind
        if kind in "biuf":
            out[str(col)] = series.astype(float)
        elif kind == "M":
            out[str(col)] = pd.Series(series.dt.normalize().map(lambda t: t.toordinal()), dtype=float)
        else:
            present = [v for v in series if v is not None and not (isinstance(v, float) and math.isnan(v))]
            if present and all(isinstance(v, dt.date) for v in present):
                out[str(col)] = pd.Series(
                    [math.nan if not isinstance(v, dt.date) else float(v.toordinal()) for v in series],
                    index=series.index,
                )
            elif present and all(isinstance(v, bool | int | float | np.number) for v in present):
                out[str(col)] = pd.to_numeric(series, errors="coerce").astype(float)
            else:
                skipped.append(str(col))
    return pd.DataFrame(out, index=table.index), skipped


def _standard_ranks(x: np.ndarray) -> np.ndarray | None:
    """Ranks (ties averaged) centred and scaled to unit variance; ``None`` if the values do not vary."""
    r = stats.rankdata(x)
    sd = r.std()
    return None if sd == 0 else (r - r.mean()) / sd


def _rank_corr(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """Spearman's rho of the pairs where both are present (Pearson's correlation of their ranks)."""
    ok = ~(np.isnan(x) | np.isnan(y))
    n = int(ok.sum())
    if n < 3:
        return math.nan, n
    rx, ry = _standard_ranks(x[ok]), _standard_ranks(y[ok])
    if rx is None or ry is None:
        return math.nan, n
    return float(np.clip(rx @ ry / n, -1.0, 1.0)), n


def _partial_rank_corr(inputs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """PRCC of each input column with ``y``, over the draws where all are present."""
    ok = ~(np.isnan(inputs).any(axis=1) | np.isnan(y))
    n, k = int(ok.sum()), inputs.shape[1]
    rho = np.full(k, math.nan)
    if n < k + 3:
        return rho, n
    rx = np.column_stack([stats.rankdata(col) for col in inputs[ok].T])
    ry = stats.rankdata(y[ok])
    varying = rx.std(axis=0) > 0
    for j in range(k):
        if not varying[j] or ry.std() == 0:
            continue
        others = [i for i in range(k) if i != j and varying[i]]
        design = np.column_stack([np.ones(n), rx[:, others]])
        res_x = rx[:, j] - design @ np.linalg.lstsq(design, rx[:, j], rcond=None)[0]
        res_y = ry - design @ np.linalg.lstsq(design, ry, rcond=None)[0]
        if res_x.std() > 0 and res_y.std() > 0:
            rho[j] = float(np.corrcoef(res_x, res_y)[0, 1])
    return rho, n


def _p_value(rho: float, n: int, controls: int = 0) -> float:
    """Two-sided p-value of a (partial) rank correlation by the t approximation."""
    df = n - 2 - controls
    if math.isnan(rho) or df <= 0:
        return math.nan
    if abs(rho) >= 1.0:
        return 0.0
    t = rho * math.sqrt(df / (1.0 - rho * rho))
    return float(2.0 * stats.t.sf(abs(t), df))


def sensitivity(
    draws: pd.DataFrame,
    metrics: pd.DataFrame,
    outcome: str | Sequence[str] | None = None,
    *,
    aggregate: Aggregate | Mapping[str, Aggregate] | None = None,
    method: Method = "spearman",
) -> pd.DataFrame:
    """Rank the uncertain inputs by their rank correlation with each per-draw outcome.

    Parameters
    ----------
    draws
        The table of draws (``draw`` then one column per uncertain input).
    metrics
        Per-draw metrics.
    outcome
        The metric or metrics whose outcomes to explain (default: all), reduced per draw by ``aggregate``
        (see :func:`per_draw`): e.g. peak shortfall, cumulative fiscal cost, peak price.
    aggregate
        As in :func:`per_draw`.
    method
        ``spearman`` (rank correlation) or ``prcc`` (partial rank correlation: the other inputs' ranks
        regressed out of both sides).

    Returns
    -------
    pd.DataFrame
        Columns ``metric, mineral, region, aggregate, input, rho, p_value, n, rank``; within each outcome the
        inputs by ``|rho|``, strongest first (``rank`` 1). ``p_value``: two-sided, t approximation. Inputs
        without a rank (text) or that do not vary are left out; their names are in ``attrs["skipped"]``.
    """
    if method not in ("spearman", "prcc"):
        raise CritminError(f"unknown sensitivity method {method!r}: spearman or prcc")
    inputs, skipped = _numeric_inputs(draws)
    varying = [c for c in inputs.columns if inputs[c].nunique(dropna=True) > 1]
    skipped += [c for c in inputs.columns if c not in varying]
    inputs = inputs[varying]
    outcomes = per_draw(metrics, outcome, aggregate)
    x = inputs.to_numpy(dtype=float)
    # Inputs without missing values are ranked once, for every outcome present in every draw.
    ranked = {col: _standard_ranks(x[:, j]) for j, col in enumerate(varying) if not np.isnan(x[:, j]).any()}
    rows = []
    for key, group in outcomes.groupby(OUTCOME_KEYS, dropna=False, sort=False):
        y = group.set_index("draw")["value"].reindex(inputs.index).to_numpy(dtype=float)
        if method == "prcc" and x.shape[1]:
            rho, n = _partial_rank_corr(x, y)
            found = [(c, float(r), n, _p_value(float(r), n, x.shape[1] - 1)) for c, r in zip(varying, rho, strict=True)]
        else:
            found = []
            complete_y = not np.isnan(y).any()
            ry = _standard_ranks(y) if complete_y and len(y) >= 3 else None
            for j, col in enumerate(varying):
                rx = ranked.get(col)
                if complete_y and rx is not None and ry is not None:
                    r, n = float(np.clip(rx @ ry / len(y), -1.0, 1.0)), len(y)
                else:
                    r, n = _rank_corr(x[:, j], y)
                found.append((col, r, n, _p_value(r, n)))
        found = [f for f in found if not math.isnan(f[1])]
        found.sort(key=lambda f: -abs(f[1]))
        for rank, (col, r, n, p) in enumerate(found, start=1):
            rows.append({**dict(zip(OUTCOME_KEYS, key, strict=True)), "input": col, "rho": r, "p_value": p, "n": n})
            rows[-1]["rank"] = rank
    columns = [*OUTCOME_KEYS, "input", "rho", "p_value", "n", "rank"]
    out = pd.DataFrame(rows, columns=columns)
    out.attrs["skipped"] = skipped
    return out


def risk_table(
    draws: pd.DataFrame,
    metrics: pd.DataFrame,
    *,
    level: float = 0.95,
    exceed: Mapping[str, float] | None = None,
    minerals: Sequence[str] | None = None,
    regions: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The risk table of a run: one row per outcome (metric, mineral, region, reduced per draw).

    Parameters
    ----------
    draws
        The table of draws.
    metrics
        Per-draw metrics.
    level
        CVaR level.
    exceed
        Thresholds of the exceedance column by metric; default: :data:`SHORTFALL_THRESHOLD` for every metric
        named ``shortfall*`` with unit ``1``.
    minerals, regions
        Only these minerals and regions (default: all).

    Returns
    -------
    pd.DataFrame
        Columns ``metric, mineral, region, aggregate, unit, n, mean, p5, p50, p95, cvar, threshold,
        p_exceed, driver, driver_rho``: the outcome's mean, quantiles and CVaR (upper tail, at ``level``) over
        the draws; ``p_exceed = P(outcome > threshold)`` where a threshold applies; the input with the
        strongest Spearman rank correlation with the outcome and that correlation.
    """
    _check_metrics(metrics)
    sub = metrics
    if minerals is not None:
        sub = sub[sub["mineral"].isin(list(minerals))]
    if regions is not None:
        sub = sub[sub["region"].isin(list(regions))]
    units = _units(sub)
    if exceed is None:
        exceed = {m: SHORTFALL_THRESHOLD for m, u in units.items() if m.startswith("shortfall") and u.strip() == "1"}
    outcomes = per_draw(sub)
    drivers = sensitivity(draws, sub)
    top = {
        _key(row[:4]): (str(row[4]), float(row[5]))
        for row in drivers.loc[drivers["rank"] == 1, [*OUTCOME_KEYS, "input", "rho"]].itertuples(index=False)
    }
    rows = []
    for key, group in outcomes.groupby(OUTCOME_KEYS, dropna=False, sort=False):
        values = group["value"].to_numpy(dtype=float)
        p5, p50, p95 = np.quantile(values, [0.05, 0.5, 0.95])
        _, cvar = tail_measures(values, level)
        labels = dict(zip(OUTCOME_KEYS, key, strict=True))
        threshold = exceed.get(str(labels["metric"]))
        driver, rho = top.get(_key(key), (None, math.nan))
        rows.append(
            {
                **labels,
                "unit": group["unit"].iloc[0],
                "n": len(values),
                "mean": float(values.mean()),
                "p5": float(p5),
                "p50": float(p50),
                "p95": float(p95),
                "cvar": cvar,
                "threshold": math.nan if threshold is None else float(threshold),
                "p_exceed": math.nan if threshold is None else float((values > threshold).mean()),
                "driver": driver,
                "driver_rho": rho,
            }
        )
    columns = [
        *OUTCOME_KEYS,
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
    ]
    return pd.DataFrame(rows, columns=columns)
