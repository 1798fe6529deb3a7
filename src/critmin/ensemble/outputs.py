"""What an ensemble keeps of each draw: a compact cube and per-draw headline metrics, computed from the raw
run records of a chunk in one pass (the full metrics of ``critmin.metrics`` are meant for single runs).

Groups: ``world``, every bloc of the scenario (membership at each period), and every single region named in
``regions`` (default: CHN and USA where the world has them). Per draw, mineral, group and period:

- ``price``: use-weighted mean market price of the mineral's last stage (USD/t), weights = consumption;
- ``shortfall_share``: ``sum max(0, reference demand - consumption) / sum reference demand`` over the
  group's regions and all sectors (1);
- ``consumption``: use of all sectors (t/yr);
- ``fiscal_cost``: government outlays of the group's members (USD);
- ``reserve_stock``: reserve stocks held in the group's members (t).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from critmin.core.arrays import FloatArray
from critmin.simulate.run import RunRecord

METRIC_UNITS = {
    "price": "USD/t",
    "shortfall_share": "1",
    "consumption": "t/yr",
    "fiscal_cost": "USD",
    "reserve_stock": "t",
}
DEFAULT_REGIONS = ("CHN", "USA")


def _groups(record: RunRecord, regions: Sequence[str]) -> dict[str, np.ndarray]:
    """Membership masks ``(P, R)`` per group."""
    P, R = len(record.periods), len(record.regions)
    out = {"world": np.ones((P, R), dtype=bool)}
    for name, table in record.blocs.items():
        out[name] = np.array(table, dtype=bool)
    for code in regions:
        if code in record.regions and code not in out:
            mask = np.zeros((P, R), dtype=bool)
            mask[:, record.regions.index(code)] = True
            out[code] = mask
    return out


def _ledger_total(record: RunRecord, mineral: str, variable: str) -> np.ndarray:
    """``(P, R)`` sum of a ledger variable by region."""
    path = record.minerals[mineral]
    out = np.zeros((len(record.periods), len(record.regions)))
    for p, entries in enumerate(path.ledger):
        for (var, _stage, region, _partner, _sector), value in entries.items():
            if var == variable and region in record.regions:
                out[p, record.regions.index(region)] += value
    return out


def draw_metrics(record: RunRecord, draw: int, regions: Sequence[str] = DEFAULT_REGIONS) -> pd.DataFrame:
    """Headline metrics of one draw as a long table (draw, metric, mineral, region, period, value, unit)."""
    return chunk_metrics([record], [draw], regions)


def chunk_metrics(
    records: Sequence[RunRecord], draws: Sequence[int], regions: Sequence[str] = DEFAULT_REGIONS
) -> pd.DataFrame:
    """:func:`draw_metrics` of several draws in one table, draw after draw (the rows and numbers that
    concatenating the draws' tables gives). Draws of one chunk share their structure, so the label columns
    are built once and each metric is computed for every draw and group at once (the same sums, row by
    row, as for one draw)."""
    masks = [_groups(record, regions) for record in records]
    names = list(masks[0])
    first = records[0]
    minerals = list(first.minerals)
    alike = all(
        list(mask) == names
        and list(record.minerals) == minerals
        and record.periods == first.periods
        and record.regions == first.regions
        and all(record.minerals[m].stages == first.minerals[m].stages for m in minerals)
        for record, mask in zip(records[1:], masks[1:], strict=True)
    )
    if not alike:  # not one structure: table by table
        return pd.concat(
            [chunk_metrics([r], [d], regions) for r, d in zip(records, draws, strict=True)], ignore_index=True
        )
    periods = [str(p) for p in first.periods]
    P, D = len(periods), len(records)
    group = np.stack([np.stack([mask[name] for name in names]) for mask in masks])  # (D, G, P, R)
    blocks = [_metric_values(records, mineral, group) for mineral in minerals]  # each (D, G, metric, P)
    labels = [(metric, mineral, name) for mineral in minerals for name in names for metric in METRIC_UNITS]
    n = len(labels) * P
    values = np.stack(blocks, axis=1).reshape(D, n) if blocks else np.zeros((D, 0))
    return pd.DataFrame(
        {
            "draw": np.repeat(np.asarray(draws, dtype=np.int64), n),
            "metric": [metric for metric, _, _ in labels for _ in range(P)] * D,
            "mineral": [mineral for _, mineral, _ in labels for _ in range(P)] * D,
            "region": [region for _, _, region in labels for _ in range(P)] * D,
            "period": periods * len(labels) * D,
            "value": values.reshape(-1),
            "unit": [METRIC_UNITS[metric] for metric, _, _ in labels for _ in range(P)] * D,
        }
    )


def _metric_values(records: Sequence[RunRecord], mineral: str, group: np.ndarray) -> FloatArray:
    """One mineral's headline metrics for every draw and group, ``(D, G, metric, P)`` in the order of
    ``METRIC_UNITS``; ``group`` holds each draw's membership masks ``(D, G, P, R)``."""
    paths = [record.minerals[mineral] for record in records]
    last = len(paths[0].stages) - 1
    cons = np.stack([path.consumption.sum(axis=2) for path in paths])[:, None]  # (D, 1, P, R)
    ref = np.stack([path.reference_demand.sum(axis=2) for path in paths])[:, None]
    price = np.stack([path.price[:, last, :] for path in paths])[:, None]
    fiscal = np.stack([_ledger_total(record, mineral, "fiscal_cost") for record in records])[:, None]
    stock = np.stack([_ledger_total(record, mineral, "reserve_stock") for record in records])[:, None]
    # each sum runs over the regions of one row, as for one draw and one group
    c = np.where(group, cons, 0.0).sum(axis=-1)  # (D, G, P)
    r = np.where(group, ref, 0.0).sum(axis=-1)
    gap = np.where(group, np.maximum(ref - cons, 0.0), 0.0).sum(axis=-1)
    weighted = np.where(group, price * cons, 0.0).sum(axis=-1)
    series = {
        "price": np.divide(weighted, c, out=np.full_like(c, np.nan), where=c > 0),
        "shortfall_share": np.divide(gap, r, out=np.zeros_like(r), where=r > 0),
        "consumption": c,
        "fiscal_cost": np.where(group, fiscal, 0.0).sum(axis=-1),
        "reserve_stock": np.where(group, stock, 0.0).sum(axis=-1),
    }
    return np.stack([series[metric] for metric in METRIC_UNITS], axis=2)


def chunk_cube(records: Sequence[RunRecord], draws: Sequence[int]) -> xr.Dataset:
    """A compact cube of a chunk: prices and output by stage and region, use and reference demand by region."""
    first = records[0]
    minerals = list(first.minerals)
    stages: list[str] = []
    for m in minerals:
        for s in first.minerals[m].stages:
            if s not in stages:
                stages.append(s)
    D, M, S, R, P = len(records), len(minerals), len(stages), len(first.regions), len(first.periods)
    price = np.full((D, M, S, R, P), np.nan, dtype=np.float32)
    production = np.full((D, M, S, R, P), np.nan, dtype=np.float32)
    consumption = np.zeros((D, M, R, P), dtype=np.float32)
    reference = np.zeros((D, M, R, P), dtype=np.float32)
    for d, record in enumerate(records):
        for i, m in enumerate(minerals):
            path = record.minerals[m]
            idx = [stages.index(s) for s in path.stages]
            price[d, i, idx] = np.moveaxis(path.price, 0, -1)
            production[d, i, idx] = np.moveaxis(path.production, 0, -1)
            consumption[d, i] = path.consumption.sum(axis=2).T
            reference[d, i] = path.reference_demand.sum(axis=2).T
    coords = {
        "draw": list(draws),
        "mineral": minerals,
        "stage": stages,
        "region": list(first.regions),
        "period": [str(p) for p in first.periods],
    }
    ds = xr.Dataset(
        {
            "price": (("draw", "mineral", "stage", "region", "period"), price),
            "production": (("draw", "mineral", "stage", "region", "period"), production),
            "consumption": (("draw", "mineral", "region", "period"), consumption),
            "reference_demand": (("draw", "mineral", "region", "period"), reference),
        },
        coords=coords,
    )
    for name, unit in (
        ("price", "USD/t"),
        ("production", "t/yr"),
        ("consumption", "t/yr"),
        ("reference_demand", "t/yr"),
    ):
        ds[name].attrs["unit"] = unit
    return ds
