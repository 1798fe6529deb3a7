"""Sampling the uncertain inputs of a scenario: Monte Carlo or Latin hypercube, optionally rank-correlated.

Reproducibility: the whole table of draws is made up front from the run's seed, before any work is sent
out, and stored with the run; workers only read their rows. Monte Carlo draws use one random stream per
draw (``SeedSequence(seed).spawn``), so draw ``i`` is the same whatever the number of draws; a Latin
hypercube is a joint design over all draws, made from the seed once. Either way the same seed gives the
same numbers on 1, 2 or 50 workers and in any order of completion.

Correlation: Iman–Conover. The uniform scores of each column are reordered so that their rank correlation
matches the target (van der Waerden scores, Cholesky of the target correlation); the marginals are
untouched.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import qmc

from critmin.core.arrays import FloatArray
from critmin.core.errors import ScenarioError
from critmin.core.specs import parse_date
from critmin.simulate.uncertainty import Parameter, Uncertainty

_QTY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


def uniforms(uncertainty: Uncertainty, n: int, seed: int) -> FloatArray:
    """``(n, d)`` uniform scores in (0, 1), one column per parameter, correlated as requested."""
    d = len(uncertainty.parameters)
    if n < 1:
        raise ValueError("an ensemble needs at least one draw")
    if d == 0:
        return np.zeros((n, 0))
    if uncertainty.sampler == "lhs":
        engine = qmc.LatinHypercube(d=d, rng=np.random.default_rng(np.random.SeedSequence(seed)))
        u = engine.random(n)
    else:
        streams = np.random.SeedSequence(seed).spawn(n)
        u = np.array([np.random.default_rng(s).random(d) for s in streams])
    u = np.clip(u, 1e-12, 1 - 1e-12)
    if uncertainty.correlations:
        u = _iman_conover(u, _target(uncertainty), seed)
    return u


def _target(uncertainty: Uncertainty) -> FloatArray:
    paths = [p.path for p in uncertainty.parameters]
    c = np.eye(len(paths))
    for a, b, rho in uncertainty.correlations:
        i, j = paths.index(a), paths.index(b)
        c[i, j] = c[j, i] = rho
    if np.linalg.eigvalsh(c).min() <= 0:
        raise ScenarioError(
            "uncertainty", "correlations", "the rank correlations do not form a valid correlation matrix"
        )
    return c


def _iman_conover(u: FloatArray, target: FloatArray, seed: int) -> FloatArray:
    n, d = u.shape
    if n < 3:
        return u
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))
    scores = stats.norm.ppf(np.arange(1, n + 1) / (n + 1))
    base = np.column_stack([rng.permutation(scores) for _ in range(d)])
    cols = np.arange(d)
    if n <= d:
        # n scores cannot make d independent columns (their correlation matrix is singular): reorder only
        # the inputs that take part in a correlation, and none if there are still too many of them
        cols = np.flatnonzero((target != np.eye(d)).any(axis=1))
        if n <= cols.size:
            return u
    current = np.corrcoef(base[:, cols], rowvar=False)
    chol_current = np.linalg.cholesky(current)
    chol_target = np.linalg.cholesky(target[np.ix_(cols, cols)])
    shaped = base[:, cols] @ np.linalg.inv(chol_current).T @ chol_target.T
    out = u.copy()
    for k, j in enumerate(cols):
        ranks = np.argsort(np.argsort(shaped[:, k]))
        out[:, j] = np.sort(u[:, j])[ranks]
    return out


def _split(value: Any) -> tuple[float, str] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value), ""
    if isinstance(value, str):
        m = _QTY.match(value)
        if m:
            return float(m.group(1)), m.group(2)
    return None


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and re.match(r"^\d{4}(-\d{2}(-\d{2})?|-Q[1-4])$", value.strip()):
        return parse_date(value)
    return None


def transform(param: Parameter, u: FloatArray) -> list[Any]:
    """Values of one parameter from uniform scores: numbers (with the parameter's unit), dates or booleans."""
    dist = param.dist
    if dist == "bernoulli":
        return [bool(x < float(param.p or 0.0)) for x in u]
    if dist == "choice":
        values = list(param.values or [])
        weights = np.asarray(param.weights if param.weights is not None else [1.0] * len(values), dtype=float)
        edges = np.cumsum(weights / weights.sum())
        idx = np.minimum(np.searchsorted(edges, u, side="right"), len(values) - 1)
        return [values[i] for i in idx]
    if dist in ("uniform", "triangular"):
        ends = [param.low, param.high] + ([param.mode] if dist == "triangular" else [])
        dates = [_as_date(v) for v in ends]
        if all(d is not None for d in dates):
            lo, hi = dates[0], dates[1]
            assert lo is not None and hi is not None
            span = (hi - lo).days
            if dist == "uniform":
                offsets = u * span
            else:
                mode = dates[2]
                assert mode is not None
                c = (mode - lo).days / span if span else 0.5
                offsets = stats.triang.ppf(u, c, loc=0, scale=span)
            return [lo + dt.timedelta(days=round(float(x))) for x in offsets]
        parts = [_split(v) for v in ends]
        if any(p is None for p in parts):
            raise ScenarioError("uncertainty", param.path, "low/high/mode must be numbers, quantities or dates")
        mags = [p[0] for p in parts if p is not None]
        units = {p[1] for p in parts if p is not None}
        if len(units) > 1:
            raise ScenarioError("uncertainty", param.path, f"low/high/mode use different units: {sorted(units)}")
        unit = units.pop() or (param.unit or "")
        lo_v, hi_v = mags[0], mags[1]
        if hi_v < lo_v:
            raise ScenarioError("uncertainty", param.path, "high is below low")
        if dist == "uniform":
            x = lo_v + u * (hi_v - lo_v)
        else:
            width = hi_v - lo_v
            shape = (mags[2] - lo_v) / width if width else 0.5
            x = stats.triang.ppf(u, shape, loc=lo_v, scale=width)
        return _with_unit(x, unit)
    if dist == "normal":
        x = stats.norm.ppf(u, loc=param.mean, scale=param.sd)
        return _with_unit(x, param.unit or "")
    if dist == "lognormal":
        x = np.exp(stats.norm.ppf(u, loc=param.mean, scale=param.sd))
        return _with_unit(x, param.unit or "")
    # beta
    lo_b = float(_split(param.low)[0]) if param.low is not None and _split(param.low) else 0.0  # type: ignore[index]
    hi_b = float(_split(param.high)[0]) if param.high is not None and _split(param.high) else 1.0  # type: ignore[index]
    x = lo_b + (hi_b - lo_b) * stats.beta.ppf(u, param.a, param.b)
    return _with_unit(x, param.unit or "")


def _with_unit(x: FloatArray, unit: str) -> list[Any]:
    if unit:
        return [f"{float(v)!r} {unit}" for v in x]
    return [float(v) for v in x]


def draw_table(uncertainty: Uncertainty | None, n: int, seed: int) -> pd.DataFrame:
    """The table of draws: a ``draw`` column and one column per uncertain path."""
    table = pd.DataFrame({"draw": np.arange(n, dtype=np.int64)})
    if uncertainty is None or not uncertainty.parameters:
        return table
    u = uniforms(uncertainty, n, seed)
    for j, param in enumerate(uncertainty.parameters):
        table[param.path] = transform(param, u[:, j])
    return table
