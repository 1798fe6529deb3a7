"""The ``uncertainty`` block of a scenario: distributions over numeric fields, addressed by path.

Paths (documented in docs/ensembles.md):

- ``instruments.NAME.FIELD`` (or ``instruments.INDEX.FIELD``): any numeric, date or boolean field of an
  instrument, e.g. ``instruments.china-ban.leakage_share``, ``instruments.china-ban.enabled`` (a Bernoulli
  event: is the ban imposed?), ``instruments.china-ban.start`` (a date drawn from a choice or as a number of
  days after a base date), ``instruments.vault.release.trigger_price`` (nested fields with dots);
- ``dynamics.FIELD``, e.g. ``dynamics.demand_half_life``;
- ``world.MINERAL.demand_elasticity.SECTOR``, ``world.MINERAL.supply_elasticity.STAGE`` (``*`` for every
  mineral, sector or stage): elasticities of the calibrated curves (the curves are re-derived through the
  same base-year point);
- ``world.MINERAL.demand_growth`` (``*`` for every mineral): a multiplier on the growth of reference demand
  over the base year (1 = the reference path);
- ``world.MINERAL.capacity.STAGE.REGION``: a multiplier on capacity.

Distributions: ``uniform(low, high)``, ``triangular(low, mode, high)``, ``normal(mean, sd)``,
``lognormal(mean, sd)`` (of the log), ``beta(a, b, low=0, high=1)``, ``choice(values, weights)``,
``bernoulli(p)``. Values take units like every scenario value. Rank correlations between parameters
(Iman–Conover) are given as ``correlations: [[path_a, path_b, rho], ...]``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Parameter(BaseModel):
    """One uncertain input."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Dotted path of the field to draw (see the module docs)")
    dist: Literal["uniform", "triangular", "normal", "lognormal", "beta", "choice", "bernoulli"]
    low: Any = None
    high: Any = None
    mode: Any = None
    mean: float | None = None
    sd: float | None = Field(default=None, gt=0)
    a: float | None = Field(default=None, gt=0)
    b: float | None = Field(default=None, gt=0)
    p: float | None = Field(default=None, ge=0, le=1)
    values: list[Any] | None = None
    weights: list[float] | None = None
    unit: str | None = Field(default=None, description="Unit of low/high/mode/mean when given as numbers")

    @model_validator(mode="after")
    def _check(self) -> Parameter:
        need: dict[str, tuple[str, ...]] = {
            "uniform": ("low", "high"),
            "triangular": ("low", "mode", "high"),
            "normal": ("mean", "sd"),
            "lognormal": ("mean", "sd"),
            "beta": ("a", "b"),
            "choice": ("values",),
            "bernoulli": ("p",),
        }
        missing = [f for f in need[self.dist] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.dist} distribution needs {', '.join(missing)}")
        if self.dist == "choice":
            assert self.values is not None
            if not self.values:
                raise ValueError("a choice needs at least one value")
            if self.weights is not None and (
                len(self.weights) != len(self.values) or any(w < 0 for w in self.weights) or sum(self.weights) <= 0
            ):
                raise ValueError("weights must be non-negative, one per value, with a positive sum")
        return self


class Uncertainty(BaseModel):
    """Uncertain inputs of a scenario and how to sample them."""

    model_config = ConfigDict(extra="forbid")

    sampler: Literal["lhs", "mc"] = Field(default="lhs", description="Latin hypercube or plain Monte Carlo")
    parameters: list[Parameter] = Field(default_factory=list)
    correlations: list[tuple[str, str, float]] = Field(
        default_factory=list, description="Rank correlations [path_a, path_b, rho] between parameters"
    )

    @model_validator(mode="after")
    def _check(self) -> Uncertainty:
        paths = [p.path for p in self.parameters]
        dup = {p for p in paths if paths.count(p) > 1}
        if dup:
            raise ValueError(f"a path is drawn twice: {', '.join(sorted(dup))}")
        for a, b, rho in self.correlations:
            for path in (a, b):
                if path not in paths:
                    raise ValueError(f"correlation names {path!r}, which is not an uncertain parameter")
            if not -1.0 < rho < 1.0:
                raise ValueError(f"a rank correlation must lie in (-1, 1), got {rho}")
        return self
