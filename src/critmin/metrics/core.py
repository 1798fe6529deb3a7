"""The metric registry and the shared machinery every metric uses.

A metric is a function of a run's results Dataset (and, for changes, of a baseline Dataset) that returns a
labelled :class:`xarray.DataArray` with a ``name`` and the attributes ``unit`` and ``description``. Each one is
registered here under its name with its unit and definition, so that the docs and the CLI can list them.

Conventions shared by all metrics (see ``docs/metrics.md``):

- *Groups in the region dimension.* Where a metric is reported by region, the blocs (from the Dataset's
  ``bloc_member`` variable, plus any passed explicitly) and ``world`` follow the regions along ``region``:
  ``region = [..., 'CHN', 'USA', 'club', 'china', 'eu', 'world']``. Membership may change by period.
- *Use* of stage ``s`` in region ``r`` is what the region's market of stage-``s`` product absorbs for
  consumption and processing: ``sum over origins of flow + reserve_release - reserve_purchase`` (without
  reserves, the inflows at the use node).
- *Absence is first-class.* A stage a mineral lacks stays NaN; a variable an instrument would add but did
  not (``fiscal_cost``, ``reserve_stock``, ...) counts as zero where the stage exists.
- *No silent alignment.* A baseline or a membership table whose labels differ from the run's raises
  :class:`MetricError`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import xarray as xr

from critmin.core.errors import CritminError

#: Explicit blocs: name -> member regions (static over periods). They add to the Dataset's ``bloc_member``.
BlocSpec = Mapping[str, Sequence[str]] | None

#: Label of the all-regions aggregate in the region dimension.
WORLD = "world"
#: Label of the all-sectors aggregate in the sector dimension.
ALL_SECTORS = "all"
#: Days per year, for days of cover.
DAYS_PER_YEAR = 365.0

#: Variables the instruments add; absent means the instrument was not used (zero where the stage exists).
OPTIONAL_VARIABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "fiscal_cost": (("mineral", "region", "period"), "USD"),
    "levy_revenue": (("mineral", "region", "period"), "USD"),
    "tariff_revenue": (("mineral", "region", "period"), "USD"),
    "quota_rent": (("mineral", "region", "period"), "USD"),
    "floor_payment": (("mineral", "stage", "region", "period"), "USD"),
    "reserve_stock": (("mineral", "stage", "region", "period"), "t"),
    "reserve_purchase": (("mineral", "stage", "region", "period"), "t/yr"),
    "reserve_release": (("mineral", "stage", "region", "period"), "t/yr"),
    "reserve_spent": (("mineral", "region", "period"), "USD"),
    "reserve_recovered": (("mineral", "region", "period"), "USD"),
    "reserve_holding_cost": (("mineral", "region", "period"), "USD"),
    "offtake_transfer": (("mineral", "region", "partner", "period"), "USD"),
}


class MetricError(CritminError, ValueError):
    """Inputs a metric cannot use: misaligned labels, an unknown region or bloc, a wrong shape."""


class MetricUnavailableError(MetricError):
    """A metric that needs something the run does not have (a baseline, a named bloc)."""


F = TypeVar("F", bound=Callable[..., xr.DataArray])


@dataclass(frozen=True)
class Metric:
    """A registered metric: its name, unit, definition, and the function that computes it.

    ``needs_baseline`` metrics are called ``func(ds, baseline, blocs=...)``, the others
    ``func(ds, blocs=...)``; every other argument takes its default.
    """

    name: str
    unit: str
    definition: str
    func: Callable[..., xr.DataArray]
    needs_baseline: bool = False
    category: str = ""

    def compute(self, ds: xr.Dataset, baseline: xr.Dataset | None = None, blocs: BlocSpec = None) -> xr.DataArray:
        """Compute the metric with its default arguments."""
        if self.needs_baseline:
            if baseline is None:
                raise MetricUnavailableError(f"metric {self.name!r} needs a baseline run")
            return self.func(ds, baseline, blocs=blocs)
        return self.func(ds, blocs=blocs)


#: Every metric by name, in the order of registration (:func:`list_metrics` orders them as DESIGN §6).
REGISTRY: dict[str, Metric] = {}


def register(
    name: str, unit: str, definition: str, *, needs_baseline: bool = False, category: str = ""
) -> Callable[[F], F]:
    """Register the decorated function as the metric ``name``."""

    def wrap(func: F) -> F:
        if name in REGISTRY:
            raise MetricError(f"metric {name!r} registered twice")
        REGISTRY[name] = Metric(name, unit, definition, func, needs_baseline, category)
        return func

    return wrap


def finish(da: xr.DataArray, name: str, **extra: Any) -> xr.DataArray:
    """Name ``da`` and stamp its unit and definition from the registry (plus ``extra`` attributes)."""
    metric = REGISTRY[name]
    da = da.rename(name)
    da.attrs = {"unit": metric.unit, "description": metric.definition, **extra}
    return da


#: Order of the metric categories (that of DESIGN §6).
CATEGORIES = ("prices", "shortfall", "concentration", "tracing", "cost", "reserve", "influence", "benchmarks")


def list_metrics() -> list[Metric]:
    """Every registered metric, by category in the order of DESIGN §6, then in registration order."""
    rank = {c: i for i, c in enumerate(CATEGORIES)}
    return sorted(REGISTRY.values(), key=lambda m: rank.get(m.category, len(rank)))


# --------------------------------------------------------------------------------------------------------
# inputs


def _require(ds: xr.Dataset, names: Iterable[str]) -> None:
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise MetricError(f"results lack the variable(s) {', '.join(missing)}")


def regions(ds: xr.Dataset) -> list[str]:
    """The region labels of a run (individual regions, without groups)."""
    return [str(r) for r in ds["region"].values]


def check_same_labels(ds: xr.Dataset, baseline: xr.Dataset, names: Iterable[str]) -> None:
    """Raise :class:`MetricError` unless ``baseline[name]`` has exactly the labels of ``ds[name]``."""
    for name in names:
        _require(baseline, [name])
        a, b = ds[name], baseline[name]
        if a.dims != b.dims:
            raise MetricError(f"baseline {name!r} has dims {b.dims}, the run has {a.dims}")
        for dim in a.dims:
            if not a.indexes[dim].equals(b.indexes[dim]):
                raise MetricError(
                    f"baseline and run differ in {dim!r} labels of {name!r}: "
                    f"{list(b.indexes[dim])} vs {list(a.indexes[dim])}"
                )


def stage_exists(ds: xr.Dataset) -> xr.DataArray:
    """(mineral, stage) True where the mineral has the stage (its flows are not NaN)."""
    _require(ds, ["flow"])
    return ds["flow"].notnull().any(("region", "partner", "period"))


def mineral_stages(ds: xr.Dataset) -> dict[str, list[str]]:
    """Each mineral's stages, in chain order (the order of the stage dimension)."""
    exists = stage_exists(ds)
    return {
        str(m): [str(s) for s in ds["stage"].values if bool(exists.sel(mineral=m, stage=s))]
        for m in ds["mineral"].values
    }


def optional(ds: xr.Dataset, name: str) -> xr.DataArray:
    """An instrument variable, or zeros with its dims where it is absent.

    Variables with a stage dimension are NaN where the mineral lacks the stage; a present variable's NaN
    entries elsewhere count as zero (the instrument did not act there).
    """
    dims, unit = OPTIONAL_VARIABLES[name]
    if name in ds.data_vars:
        da = ds[name]
        if set(da.dims) != set(dims):
            raise MetricError(f"variable {name!r} has dims {da.dims}, expected {dims}")
        for dim in dims:
            if not da.indexes[dim].equals(ds.indexes[dim]):
                raise MetricError(f"variable {name!r} has {dim!r} labels that differ from the run's")
        da = da.transpose(*dims).fillna(0.0).astype(float)
    else:
        shape = tuple(ds.sizes[d] for d in dims)
        da = xr.DataArray(np.zeros(shape), dims=dims, coords={d: ds[d].values for d in dims})
        da.attrs["unit"] = unit
    if "stage" in dims:
        da = da.where(stage_exists(ds))
    return da


def inflow(ds: xr.Dataset) -> xr.DataArray:
    """(mineral, stage, region, period) t/yr: stage product delivered to the region from every origin."""
    _require(ds, ["flow"])
    flow = ds["flow"]
    if not flow.indexes["partner"].equals(flow.indexes["region"]):
        raise MetricError("flow: partner labels differ from region labels")
    out = flow.sum("region", min_count=1).rename(partner="region")
    return out.transpose("mineral", "stage", "region", "period")


def use(ds: xr.Dataset) -> xr.DataArray:
    """(mineral, stage, region, period) t/yr: consumption plus processing input at the region's use node.

    Equal to ``inflow + reserve_release - reserve_purchase`` by the market balance; negative values within
    solver tolerance are set to zero.
    """
    total = inflow(ds) + optional(ds, "reserve_release") - optional(ds, "reserve_purchase")
    return total.clip(min=0.0)


def consumption_total(ds: xr.Dataset) -> xr.DataArray:
    """(mineral, stage, region, period) t/yr: consumption summed over sectors (0 where none consumes)."""
    _require(ds, ["consumption"])
    out = ds["consumption"].sum("sector").where(stage_exists(ds))
    return out.transpose("mineral", "stage", "region", "period")


def processing_input(ds: xr.Dataset) -> xr.DataArray:
    """(mineral, stage, region, period) t/yr: stage ``s-1`` product taken in by region's stage-``s``
    processors; NaN at a mineral's first stage and at stages it lacks.

    Read from the variable ``processing_input`` where the results carry it, otherwise from the balance of
    the previous stage's use node: ``use[s-1] - consumption[s-1]`` (clipped at zero).
    """
    if "processing_input" in ds.data_vars:
        return ds["processing_input"].transpose("mineral", "stage", "region", "period")
    used = use(ds)
    consumed = consumption_total(ds)
    out = xr.full_like(used, np.nan)
    for mineral, stages in mineral_stages(ds).items():
        for prev, stage in pairwise(stages):
            taken = (used.sel(mineral=mineral, stage=prev) - consumed.sel(mineral=mineral, stage=prev)).clip(min=0.0)
            out.loc[{"mineral": mineral, "stage": stage}] = taken
    return out


# --------------------------------------------------------------------------------------------------------
# blocs and groups


def _reserved_names(ds: xr.Dataset) -> set[str]:
    return set(regions(ds)) | {WORLD, "all"}


def membership(ds: xr.Dataset, blocs: BlocSpec = None) -> xr.DataArray:
    """(group, region, period) bool: the blocs of the run (``bloc_member``), the explicit ``blocs``, and
    ``world`` (every region), in that order.

    Raises :class:`MetricError` if a bloc name is a region label or ``world``/``all``, is defined twice, or
    names an unknown region, or if ``bloc_member`` is labelled differently from the run.
    """
    region_index = ds.indexes["region"]
    periods = ds["period"].values
    names: list[str] = []
    tables: list[np.ndarray] = []
    if "bloc_member" in ds.data_vars:
        table = ds["bloc_member"]
        if set(table.dims) != {"bloc", "region", "period"}:
            raise MetricError(f"bloc_member has dims {table.dims}, expected (bloc, region, period)")
        for dim in ("region", "period"):
            if not table.indexes[dim].equals(ds.indexes[dim]):
                raise MetricError(f"bloc_member has {dim!r} labels that differ from the run's")
        table = table.transpose("bloc", "region", "period")
        if table.dtype != bool:
            if table.isnull().any():
                raise MetricError("bloc_member has missing values (was it aligned to other regions or periods?)")
            table = table.astype(bool)
        names += [str(b) for b in table["bloc"].values]
        tables += list(table.values.astype(bool))
    for name, members in (blocs or {}).items():
        if name in names:
            raise MetricError(f"bloc {name!r} is defined both in the results and explicitly")
        unknown = [r for r in members if r not in region_index]
        if unknown:
            raise MetricError(f"bloc {name!r} names unknown region(s) {', '.join(unknown)}")
        mask = np.zeros((len(region_index), len(periods)), dtype=bool)
        mask[region_index.get_indexer(pd.Index(list(members)))] = True
        names.append(name)
        tables.append(mask)
    clash = [n for n in names if n in _reserved_names(ds)]
    if clash or len(set(names)) != len(names):
        raise MetricError(f"bloc names must be unique and differ from regions and 'world': {names}")
    names.append(WORLD)
    tables.append(np.ones((len(region_index), len(periods)), dtype=bool))
    return xr.DataArray(
        np.stack(tables),
        dims=("group", "region", "period"),
        coords={"group": names, "region": ds["region"].values, "period": periods},
    )


def bloc_names(groups: xr.DataArray) -> list[str]:
    """The blocs among the groups (every group but ``world``)."""
    return [str(g) for g in groups["group"].values if g != WORLD]


def resolve(ds: xr.Dataset, selector: str | Sequence[str], groups: xr.DataArray) -> xr.DataArray:
    """(region, period) bool: the regions a selector names in each period.

    A selector is a region label, a group name (a bloc or ``world``; ``all`` means every region), the
    complement of either (``"not club"``), or a list of these (their union).
    """
    terms = [selector] if isinstance(selector, str) else list(selector)
    if not terms:
        raise MetricError("empty selector")
    chosen = xr.zeros_like(groups.isel(group=0, drop=True))
    for term in terms:
        negate = term.startswith("not ")
        name = term[4:].strip() if negate else term.strip()
        if name == "all":
            name = WORLD
        if name in groups["group"].values:
            mask = groups.sel(group=name, drop=True)
        elif name in ds.indexes["region"]:
            mask = xr.zeros_like(chosen)
            mask.loc[{"region": name}] = True
        else:
            raise MetricUnavailableError(
                f"unknown region or bloc {name!r}; blocs: {', '.join(bloc_names(groups)) or '(none)'}"
            )
        chosen = chosen | (~mask if negate else mask)
    return chosen


def _group_sum(da: xr.DataArray, groups: xr.DataArray) -> xr.DataArray:
    """(…, group, period) the sum of ``da`` over each group's members; NaN where every member is NaN."""
    _check_groupable(da)
    return da.where(groups).sum("region", min_count=1)


def _check_groupable(da: xr.DataArray) -> None:
    if "period" not in da.dims or "region" not in da.dims:
        raise MetricError(f"cannot aggregate {da.name!r} by group: it needs region and period dims")


def extend_sum(da: xr.DataArray, groups: xr.DataArray) -> xr.DataArray:
    """``da`` with each group's sum over its members appended along ``region``."""
    agg = _group_sum(da, groups).rename(group="region")
    return xr.concat([da, agg.transpose(*da.dims)], dim="region")


def extend_ratio(numerator: xr.DataArray, denominator: xr.DataArray, groups: xr.DataArray) -> xr.DataArray:
    """``numerator / denominator`` by region and by group (ratio of sums); NaN where the denominator is 0."""
    num = extend_sum(numerator, groups)
    den = extend_sum(denominator.where(numerator.notnull()), groups)
    return (num / den).where(den > 0)


def extend_mean(da: xr.DataArray, weight: xr.DataArray, groups: xr.DataArray) -> xr.DataArray:
    """``da`` by region, and each group's ``weight``-weighted mean of its members' values along ``region``.

    A group whose members carry no weight gets NaN. Each group's weights are divided by their largest before
    they multiply ``da``, so that the mean of members with tiny weights (subnormal flows, say) is still a mean
    and does not underflow to 0.
    """
    _check_groupable(weight)
    w = weight.where(da.notnull()).where(groups)  # (…, region, group, period)
    largest = w.max("region")
    scaled = w / largest.where(largest > 0)
    num = (da * scaled).sum("region", min_count=1)
    den = scaled.sum("region", min_count=1)
    agg = (num / den).where(den > 0).rename(group="region")
    return xr.concat([da, agg.transpose(*da.dims)], dim="region")


def order_dims(da: xr.DataArray, order: Sequence[Hashable]) -> xr.DataArray:
    """Transpose ``da`` to the canonical order of its dims (those in ``order`` first, in that order)."""
    first = [d for d in order if d in da.dims]
    rest = [d for d in da.dims if d not in first]
    return da.transpose(*first, *rest)


CANONICAL_DIMS = (
    "component",
    "supplier",
    "bloc",
    "mineral",
    "stage",
    "step",
    "region",
    "source",
    "sector",
    "period",
)
