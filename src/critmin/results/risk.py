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
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from critmin.core.errors import CritminError
from critmin.core.specs import parse_date
from critmin.metrics.headline import SAME_RELATIVE

Aggregate = Literal["sum", "max"]
Method = Literal["spearman", "prcc"]

#: Columns of the per-draw metrics table.
METRIC_COLUMNS = ("draw", "metric", "mineral", "region", "period", "value", "unit")
#: Labels of one outcome (a metric reduced to a number per draw).
OUTCOME_KEYS = ["metric", "mineral", "region", "aggregate"]
#: Default threshold of the exceedance column of :func:`risk_table`, for metrics whose name starts with
#: ``shortfall`` and whose unit is ``1`` (a share): the probability that the peak share exceeds 10%.
SHORTFALL_THRESHOLD = 0.1


def _check_metrics(metrics: pd.DataFrame, metric: str | Sequence[str] | None = None) -> pd.DataFrame:
    """The metrics table, checked, with only the rows of ``metric`` if named."""
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        raise CritminError(f"the metrics table lacks the columns {', '.join(missing)}")
    if metric is None:
        return metrics
    names = [metric] if isinstance(metric, str) else list(metric)
    known = {str(m) for m in pd.unique(metrics["metric"].dropna())}
    unknown = [m for m in names if m not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise CritminError(f"no metric {', '.join(map(repr, unknown))} in the run; it has {listed}")
    return metrics[metrics["metric"].isin(names).to_numpy()]


# Grouping is done on integer codes with numpy: the tables of an ensemble run to millions of rows, and
# grouping on pandas string columns is many times slower.


@dataclass(frozen=True)
class _Groups:
    """Rows of a table grouped by label columns: ``ids[i]`` is row i's group, groups in order of appearance."""

    ids: np.ndarray
    first: np.ndarray  # the first row of each group

    @property
    def size(self) -> int:
        return len(self.first)

    def labels(self, table: pd.DataFrame, columns: Sequence[str]) -> dict[str, np.ndarray]:
        """Each group's labels, read from its first row (missing labels as ``None``)."""
        out = {}
        for col in columns:
            values = table[col].iloc[self.first].to_numpy(dtype=object)
            out[col] = np.array([None if _missing(v) else v for v in values], dtype=object)
        return out


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float | np.floating) and math.isnan(value))


def _group(table: pd.DataFrame, columns: Sequence[str]) -> _Groups:
    combined = np.zeros(len(table), dtype=np.int64)
    radix = 1
    for col in columns:
        codes, uniques = pd.factorize(table[col], use_na_sentinel=False)
        if radix * len(uniques) >= 2**62:  # renumber the groups so far before the key overflows
            combined = pd.factorize(combined)[0].astype(np.int64)
            radix = int(combined.max(initial=0)) + 1
        combined = combined * len(uniques) + codes.astype(np.int64)
        radix *= max(len(uniques), 1)
    ids = pd.factorize(combined)[0].astype(np.int64)
    first = pd.Series(ids).drop_duplicates().index.to_numpy()
    return _Groups(ids=ids, first=first)


def _units(table: pd.DataFrame) -> dict[str, str]:
    """Each metric's unit; a metric with two units raises."""
    pairs = _group(table, ["metric", "unit"]).labels(table, ["metric", "unit"])
    units: dict[str, str] = {}
    for name, unit in zip(pairs["metric"], pairs["unit"], strict=True):
        text = "" if _missing(unit) else str(unit)
        if str(name) in units and units[str(name)] != text:
            raise CritminError(f"metric {name!r} has several units: {units[str(name)]}, {text}")
        units[str(name)] = text
    return units


def _values(table: pd.DataFrame) -> np.ndarray:
    return pd.to_numeric(table["value"]).to_numpy(dtype=np.float64, na_value=np.nan)


def _quantile_name(q: float) -> str:
    return f"p{100 * q:g}"


def _group_quantiles(ids: np.ndarray, values: np.ndarray, size: int, probs: Sequence[float]) -> np.ndarray:
    """Quantiles of ``values`` within each group (numpy's linear method), NaN left out: shape (size, probs)."""
    ok = ~np.isnan(values)
    ids, values = ids[ok], values[ok]
    order = np.lexsort((values, ids))
    ordered = values[order]
    counts = np.bincount(ids, minlength=size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.full((size, len(probs)), np.nan)
    has = counts > 0
    n, start = counts[has], starts[has]
    for j, p in enumerate(probs):
        h = (n - 1) * p
        lo = np.floor(h).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        below, above = ordered[start + lo], ordered[start + hi]
        out[has, j] = below + (h - lo) * (above - below)
    return out


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
        ``p<100 q>`` (``p5, p50, p95``), in the order the rows first appear; ``n`` counts the draws with a
        value (NaN values are left out).
    """
    probs = list(dict.fromkeys(float(p) for p in q))
    if not probs or any(not 0.0 <= p <= 1.0 for p in probs):
        raise CritminError(f"quantile probabilities must lie in [0, 1], got {list(q)}")
    table = _check_metrics(metrics)
    keys = ["metric", "mineral", "region", "period"]
    units = _units(table)
    groups = _group(table, keys)
    values = _values(table)
    ok = ~np.isnan(values)
    n = np.bincount(groups.ids[ok], minlength=groups.size)
    sums = np.bincount(groups.ids[ok], weights=values[ok], minlength=groups.size)
    out = pd.DataFrame(groups.labels(table, keys))
    out["period"] = table["period"].to_numpy()[groups.first]
    out["unit"] = [units[str(m)] for m in out["metric"]]
    out["n"] = n
    out["mean"] = np.divide(sums, n, out=np.full(groups.size, np.nan), where=n > 0)
    found = _group_quantiles(groups.ids, values, groups.size, probs)
    for j, p in enumerate(probs):
        out[_quantile_name(p)] = found[:, j]
    return out


def _per_draw(table: pd.DataFrame, aggregate: Aggregate | Mapping[str, Aggregate] | None) -> pd.DataFrame:
    """Per-draw outcomes with an ``outcome`` number: each outcome's rows together, draws ascending."""
    columns = ["outcome", *OUTCOME_KEYS, "draw", "value", "unit"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    units = _units(table)
    how: dict[str, str] = {}
    for name, unit in units.items():
        if aggregate is None:
            how[name] = default_aggregate(name, unit)
        elif isinstance(aggregate, str):
            how[name] = aggregate
        else:
            how[name] = aggregate.get(name, default_aggregate(name, unit))
        if how[name] not in ("sum", "max"):
            raise CritminError(f"unknown aggregate {how[name]!r} for {name!r}: sum or max")
    labels = ["metric", "mineral", "region"]
    outcomes = _group(table, labels)
    timed = pd.notna(table["period"]).to_numpy()
    with_period = np.bincount(outcomes.ids, weights=timed, minlength=outcomes.size)
    rows = np.bincount(outcomes.ids, minlength=outcomes.size)
    mixed = np.flatnonzero((with_period > 0) & (with_period < rows))
    if mixed.size:
        name = table["metric"].to_numpy(dtype=object)[outcomes.first[mixed[0]]]
        raise CritminError(f"metric {name!r} has rows with and without a period for the same mineral and region")
    draw_codes, draw_found = pd.factorize(table["draw"].to_numpy(dtype=np.int64))
    order = np.argsort(draw_found)
    draw_labels = np.asarray(draw_found)[order]
    draw_pos = np.empty(len(order), dtype=np.int64)
    draw_pos[order] = np.arange(len(order))
    draw_pos = draw_pos[draw_codes]
    n_draws = len(draw_labels)
    cell = outcomes.ids * n_draws + draw_pos
    cells = outcomes.size * n_draws
    values = _values(table)
    ok = ~np.isnan(values)
    count = np.bincount(cell[ok], minlength=cells)
    total = np.bincount(cell[ok], weights=values[ok], minlength=cells)
    peak = np.full(cells, -np.inf)
    np.maximum.at(peak, cell[ok], values[ok])
    label = outcomes.labels(table, labels)
    kind = np.array([how[str(m)] for m in label["metric"]], dtype=object)
    reduced = np.where(np.repeat(kind == "sum", n_draws), total, peak)
    keep = count > 0
    which = np.repeat(np.arange(outcomes.size), n_draws)[keep]
    out = pd.DataFrame({"outcome": which, **{k: v[which] for k, v in label.items()}})
    out["aggregate"] = kind[which]
    out["draw"] = np.tile(draw_labels, outcomes.size)[keep]
    out["value"] = reduced[keep]
    out["unit"] = np.array([units[str(m)] for m in label["metric"]], dtype=object)[which]
    return out[columns]


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
        Columns ``metric, mineral, region, aggregate, draw, value, unit``, outcomes in the order they first
        appear and draws ascending; draws whose values are all NaN are left out.
    """
    return _per_draw(_check_metrics(metrics, metric), aggregate).drop(columns="outcome")


def _slices(outcomes: pd.DataFrame) -> list[slice]:
    """The rows of each outcome (they are contiguous in a ``_per_draw`` table)."""
    ids = outcomes["outcome"].to_numpy()
    if not len(ids):
        return []
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(ids)) + 1, [len(ids)]])
    return [slice(int(a), int(b)) for a, b in pairwise(bounds)]


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
    table = _check_metrics(metrics, metric)
    columns = ["metric", "mineral", "region", "period", "scope", "threshold", "probability", "stderr", "n"]

    def _rates(part: pd.DataFrame, keys: list[str], scope: str) -> pd.DataFrame:
        groups = _group(part, keys)
        values = _values(part)
        ok = ~np.isnan(values)
        n = np.bincount(groups.ids[ok], minlength=groups.size)
        k = np.bincount(groups.ids[ok], weights=values[ok] > threshold, minlength=groups.size)
        out = pd.DataFrame(groups.labels(part, ["mineral", "region"]))
        out["period"] = part["period"].to_numpy()[groups.first] if "period" in keys else pd.NA
        out["scope"] = scope
        out["n"] = n
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(n > 0, k / np.maximum(n, 1), np.nan)
        out["probability"] = p
        out["stderr"] = np.sqrt(p * (1.0 - p) / np.maximum(n, 1))
        return out[n > 0]

    timed = table[pd.notna(table["period"]).to_numpy()]
    frames = [_rates(timed, ["mineral", "region", "period"], "period")] if len(timed) else []
    peaks = _per_draw(table, "max")
    if len(peaks):
        frames.append(_rates(peaks, ["mineral", "region"], "horizon"))
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)
    out["metric"] = metric
    out["threshold"] = float(threshold)
    return out[columns]


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
    outcomes = _per_draw(_check_metrics(metrics, metric), aggregate)
    values = outcomes["value"].to_numpy(dtype=float)
    rows = []
    for rows_of in _slices(outcomes):
        x = values[rows_of]
        var, cvar = tail_measures(x, level)
        first = outcomes.iloc[rows_of.start]
        rows.append(
            {
                "metric": metric,
                "mineral": first["mineral"],
                "region": first["region"],
                "aggregate": aggregate,
                "unit": first["unit"],
                "n": len(x),
                "level": float(level),
                "expected": float(x.mean()),
                "var": var,
                "cvar": cvar,
            }
        )
    columns = ["metric", "mineral", "region", "aggregate", "unit", "n", "level", "expected", "var", "cvar"]
    return pd.DataFrame(rows, columns=columns)


def _text_date(value: Any) -> dt.date | None:
    """``value`` as a date if it is text a scenario reads as one (:func:`~critmin.core.specs.parse_date`:
    ``2028-11-10``, ``2028-11``, ``2028-Q4``), else None."""
    if not isinstance(value, str):
        return None
    try:
        return parse_date(value)
    except ValueError:
        return None


def _numeric_inputs(draws: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The inputs that have a rank (numbers, booleans as 0/1, dates as day numbers, also where they are
    written as text), indexed by draw."""
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
            if present and all(isinstance(v, str) for v in present):
                # a choice among dates written as text (a scenario sent as JSON): dates all the same
                dates = [_text_date(v) for v in present]
                if all(d is not None for d in dates):
                    series = series.map(_text_date)
                    present = dates
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


def _within_tolerance(y: np.ndarray) -> bool:
    """Whether the present values of ``y`` differ by no more than the solver's tolerance
    (:data:`~critmin.metrics.headline.SAME_RELATIVE` of the largest): the same outcome in every draw."""
    present = y[~np.isnan(y)]
    if present.size == 0:
        return True
    return bool(present.max() - present.min() <= SAME_RELATIVE * np.abs(present).max())


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
    """PRCC of each input column with ``y`` over the draws where all are present.

    The partial correlation of ranks ``x_j`` and ``y`` given the other inputs' ranks, from the inverse ``P``
    of the rank correlation matrix: ``-P[j, y] / sqrt(P[j, j] P[y, y])`` (the same as correlating the
    residuals of both regressed, with an intercept, on the others).
    """
    ok = ~(np.isnan(inputs).any(axis=1) | np.isnan(y))
    n, k = int(ok.sum()), inputs.shape[1]
    rho = np.full(k, math.nan)
    if n < k + 3:
        return rho, n
    ranks = np.column_stack([stats.rankdata(col) for col in (*inputs[ok].T, y[ok])])
    varying = ranks.std(axis=0) > 0
    if not varying[-1]:
        return rho, n
    use = np.flatnonzero(varying)
    precision = np.linalg.pinv(np.corrcoef(ranks[:, use], rowvar=False))
    last = len(use) - 1
    for i, j in enumerate(use[:-1]):
        denom = precision[i, i] * precision[last, last]
        if denom > 0:
            rho[j] = float(np.clip(-precision[i, last] / math.sqrt(denom), -1.0, 1.0))
    return rho, n


def _p_values(rho: pd.Series, n: pd.Series, controls: pd.Series) -> np.ndarray:
    """Two-sided p-values of (partial) rank correlations by the t approximation, ``df = n - 2 - controls``."""
    r = rho.to_numpy(dtype=float)
    df = n.to_numpy(dtype=float) - 2.0 - controls.to_numpy(dtype=float)
    out = np.full(len(r), np.nan)
    ok = (df > 0) & ~np.isnan(r)
    exact = ok & (np.abs(r) >= 1.0)
    out[exact] = 0.0
    ok &= ~exact
    t = r[ok] * np.sqrt(df[ok] / (1.0 - r[ok] ** 2))
    out[ok] = 2.0 * stats.t.sf(np.abs(t), df[ok])
    return out


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
        inputs by ``|rho|``, strongest first (``rank`` 1). ``p_value``: two-sided, t approximation with
        ``n - 2`` degrees of freedom (less one per other input for PRCC). Inputs without a rank (text) or that
        do not vary are left out; their names are in ``attrs["skipped"]``.
    """
    if method not in ("spearman", "prcc"):
        raise CritminError(f"unknown sensitivity method {method!r}: spearman or prcc")
    return _sensitivity(draws, _per_draw(_check_metrics(metrics, outcome), aggregate), method)


def _sensitivity(draws: pd.DataFrame, outcomes: pd.DataFrame, method: Method) -> pd.DataFrame:
    inputs, skipped = _numeric_inputs(draws)
    varying = [c for c in inputs.columns if inputs[c].nunique(dropna=True) > 1]
    skipped += [c for c in inputs.columns if c not in varying]
    x = inputs[varying].to_numpy(dtype=float)
    position = pd.Series(np.arange(len(inputs)), index=inputs.index)
    # Inputs without missing values are ranked once, for every outcome present in every draw.
    ranked = {col: _standard_ranks(x[:, j]) for j, col in enumerate(varying) if not np.isnan(x[:, j]).any()}
    values = outcomes["value"].to_numpy(dtype=float)
    at = position.reindex(outcomes["draw"].to_numpy()).to_numpy()
    rows: list[tuple[Any, ...]] = []
    for rows_of in _slices(outcomes):
        y = np.full(len(inputs), np.nan)
        where = at[rows_of]
        known = ~np.isnan(where)
        y[where[known].astype(np.int64)] = values[rows_of][known]
        found: list[tuple[str, float, int, int]] = []  # input, rho, n, inputs controlled for
        if _within_tolerance(y):
            pass  # an outcome that moves only by rounding has no driver (its ranks would be noise)
        elif method == "prcc" and varying:
            rho, n = _partial_rank_corr(x, y)
            found = [(c, float(r), n, len(varying) - 1) for c, r in zip(varying, rho, strict=True)]
        else:
            complete_y = not np.isnan(y).any()
            ry = _standard_ranks(y) if complete_y and len(y) >= 3 else None
            for j, col in enumerate(varying):
                rx = ranked.get(col)
                if complete_y and rx is not None and ry is not None:
                    r, n = float(np.clip(rx @ ry / len(y), -1.0, 1.0)), len(y)
                else:
                    r, n = _rank_corr(x[:, j], y)
                found.append((col, r, n, 0))
        found = sorted((f for f in found if not math.isnan(f[1])), key=lambda f: -abs(f[1]))
        first = outcomes.iloc[rows_of.start]
        labels = tuple(first[k] for k in OUTCOME_KEYS)
        rows += [(*labels, *f, rank) for rank, f in enumerate(found, start=1)]
    table = pd.DataFrame(rows, columns=[*OUTCOME_KEYS, "input", "rho", "n", "controls", "rank"])
    table.insert(len(OUTCOME_KEYS) + 2, "p_value", _p_values(table["rho"], table["n"], table["controls"]))
    out = table.drop(columns="controls")
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
        p_exceed, driver, driver_rho, driver_p``, one row per outcome in the order the metrics first appear: the
        outcome's mean, quantiles and CVaR (upper tail, at ``level``) over the draws (each outcome aggregated
        by :func:`default_aggregate`); ``p_exceed = P(outcome > threshold)`` where a threshold applies; the
        input with the strongest Spearman rank correlation with the outcome, that correlation and its p-value.
    """
    table = _check_metrics(metrics)
    if minerals is not None:
        table = table[table["mineral"].isin(list(minerals)).to_numpy()]
    if regions is not None:
        table = table[table["region"].isin(list(regions)).to_numpy()]
    units = _units(table)
    if exceed is None:
        exceed = {m: SHORTFALL_THRESHOLD for m, u in units.items() if m.startswith("shortfall") and u.strip() == "1"}
    outcomes = _per_draw(table, None)
    drivers = _sensitivity(draws, outcomes, "spearman")
    top = {
        tuple(row[:4]): (str(row[4]), float(row[5]), float(row[6]))
        for row in drivers.loc[drivers["rank"] == 1, [*OUTCOME_KEYS, "input", "rho", "p_value"]].itertuples(index=False)
    }
    values = outcomes["value"].to_numpy(dtype=float)
    rows = []
    for rows_of in _slices(outcomes):
        x = values[rows_of]
        first = outcomes.iloc[rows_of.start]
        labels = {k: first[k] for k in OUTCOME_KEYS}
        p5, p50, p95 = np.quantile(x, [0.05, 0.5, 0.95])
        threshold = exceed.get(str(labels["metric"]))
        driver, rho, p_value = top.get(tuple(labels.values()), (None, math.nan, math.nan))
        rows.append(
            {
                **labels,
                "unit": first["unit"],
                "n": len(x),
                "mean": float(x.mean()),
                "p5": float(p5),
                "p50": float(p50),
                "p95": float(p95),
                "cvar": tail_measures(x, level)[1],
                "threshold": math.nan if threshold is None else float(threshold),
                "p_exceed": math.nan if threshold is None else float((x > threshold).mean()),
                "driver": driver,
                "driver_rho": rho,
                "driver_p": p_value,
            }
        )
    columns = [*OUTCOME_KEYS, "unit", "n", "mean", "p5", "p50", "p95", "cvar", "threshold", "p_exceed"]
    return pd.DataFrame(rows, columns=[*columns, "driver", "driver_rho", "driver_p"])


#: A driver whose correlation has a p-value at or above this is shown with it: it could be chance.
WEAK_DRIVER_P = 0.05


def driver_label(driver: Any, rho: float, p_value: float, *, symbol: str = "") -> str:
    """``input (+0.85)`` for a risk table's driver, ``input (+0.40, p=0.06)`` where the correlation could be
    chance (:data:`WEAK_DRIVER_P`); empty without a driver."""
    if driver is None or (isinstance(driver, float) and math.isnan(driver)) or math.isnan(rho):
        return ""
    weak = f", p={p_value:.2g}" if not p_value < WEAK_DRIVER_P else ""
    return f"{driver} ({symbol}{rho:+.2f}{weak})"
