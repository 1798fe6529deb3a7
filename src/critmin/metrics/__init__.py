"""Metrics of DESIGN §6, each a labelled array computed from a run's results alone.

Every metric takes the results Dataset (``critmin.results.dataset.to_dataset``) and, for changes, a
baseline Dataset, and returns an :class:`xarray.DataArray` with a name and the attributes ``unit`` and
``description``. :data:`REGISTRY` lists them (name -> function, unit, definition); :func:`compute_all` returns
them all as one Dataset and :func:`headline` a small table for side-by-side comparison.
"""

from __future__ import annotations

from critmin.metrics.benchmarks import (
    EU_SINGLE_SUPPLIER_LIMIT,
    eu_2030_pass,
    eu_single_supplier_share,
    single_supplier_share,
)
from critmin.metrics.concentration import hhi, import_reliance, production_share, top_share
from critmin.metrics.core import (
    ALL_SECTORS,
    REGISTRY,
    WORLD,
    BlocSpec,
    Metric,
    MetricError,
    MetricUnavailableError,
    inflow,
    list_metrics,
    membership,
    processing_input,
    resolve,
    use,
)
from critmin.metrics.cost import (
    SURPLUS_COMPONENTS,
    consumer_expenditure,
    consumer_expenditure_change,
    fiscal_cost,
    fiscal_cost_cumulative,
    levy_revenue,
    quota_rent,
    surplus_change,
    tariff_revenue,
)
from critmin.metrics.headline import (
    ALL_MINERALS,
    HEADLINE_COLUMNS,
    HEADLINE_DEFINITIONS,
    common_window,
    compare,
    compute_all,
    headline,
)
from critmin.metrics.influence import RELIANCE_THRESHOLD, output_share, regions_relying, rents_captured
from critmin.metrics.prices import price, price_change, price_gap, price_spike
from critmin.metrics.reserve import (
    days_of_cover,
    reserve_holding_cost,
    reserve_recovered,
    reserve_spent,
    reserve_stock,
)
from critmin.metrics.shortfall import (
    RECOVERY_THRESHOLD,
    periods_to_recover,
    recovery_periods,
    shortfall_cumulative,
    shortfall_peak,
    shortfall_share,
    shortfall_share_years,
)
from critmin.metrics.tracing import dependence, origin_share, region_origin_shares

__all__ = [
    "ALL_MINERALS",
    "ALL_SECTORS",
    "EU_SINGLE_SUPPLIER_LIMIT",
    "HEADLINE_COLUMNS",
    "HEADLINE_DEFINITIONS",
    "RECOVERY_THRESHOLD",
    "REGISTRY",
    "RELIANCE_THRESHOLD",
    "SURPLUS_COMPONENTS",
    "WORLD",
    "BlocSpec",
    "Metric",
    "MetricError",
    "MetricUnavailableError",
    "common_window",
    "compare",
    "compute_all",
    "consumer_expenditure",
    "consumer_expenditure_change",
    "days_of_cover",
    "dependence",
    "eu_2030_pass",
    "eu_single_supplier_share",
    "fiscal_cost",
    "fiscal_cost_cumulative",
    "headline",
    "hhi",
    "import_reliance",
    "inflow",
    "levy_revenue",
    "list_metrics",
    "membership",
    "origin_share",
    "output_share",
    "periods_to_recover",
    "price",
    "price_change",
    "price_gap",
    "price_spike",
    "processing_input",
    "production_share",
    "quota_rent",
    "recovery_periods",
    "region_origin_shares",
    "regions_relying",
    "rents_captured",
    "reserve_holding_cost",
    "reserve_recovered",
    "reserve_spent",
    "reserve_stock",
    "resolve",
    "shortfall_cumulative",
    "shortfall_peak",
    "shortfall_share",
    "shortfall_share_years",
    "single_supplier_share",
    "surplus_change",
    "tariff_revenue",
    "top_share",
    "use",
]
