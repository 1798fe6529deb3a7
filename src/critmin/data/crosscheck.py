"""Cross-checks of a world's data against a second source.

The default world takes mine output from the USGS Mineral Commodity Summaries; World Mining Data (Austrian
Federal Ministry of Finance) publishes an independent series. The world ships a copy of it, converted to the
model's units and regions (``wmd_check.csv``), so the comparison runs without network access.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from critmin.core.errors import DataError
from critmin.data.world import World

#: Relative difference above which a region's mine output is flagged.
FLAG_THRESHOLD = 0.10
#: The label of the all-regions total row.
WORLD_ROW = "World"


def compare_mine_output(world: World, threshold: float = FLAG_THRESHOLD) -> pd.DataFrame:
    """Compare the world's mine output with World Mining Data, region by region.

    Parameters
    ----------
    world
        A world that ships ``wmd_check.csv``.
    threshold
        Relative difference (``|model - wmd| / wmd``) above which a row is flagged.

    Returns
    -------
    pandas.DataFrame
        One row per mineral and region where either source reports output, plus a ``World`` total row per
        mineral, with columns ``mineral``, ``region``, ``model_t``, ``wmd_t``, ``difference_t``
        (model - WMD), ``relative_difference`` ((model - WMD) / WMD; infinite where WMD reports none) and
        ``flag`` (``True`` where the relative difference exceeds ``threshold`` in absolute value). Minerals
        that WMD does not cover have no rows.

    Raises
    ------
    DataError
        If the world ships no ``wmd_check.csv``.
    """
    if not world.has_table("wmd_check"):
        raise DataError(
            str(world.path / world.spec.filename("wmd_check")),
            "file",
            "missing file: the world ships no World Mining Data copy (wmd_check.csv)",
        )
    wmd = world.table("wmd_check")
    rows = []
    for mineral in world.minerals:
        sub = wmd[wmd["mineral"] == mineral]
        if sub.empty:
            continue
        md = world.mineral(mineral)
        model = md.production.sel(stage=md.stages[0]).to_series()
        ref = sub.groupby("region")["wmd_quantity_t"].sum()
        for region in world.regions:
            m = float(model.get(region, 0.0))
            w = float(ref.get(region, 0.0))
            if m == 0.0 and w == 0.0:
                continue
            rows.append((mineral, region, m, w))
        rows.append((mineral, WORLD_ROW, float(model.sum()), float(ref.sum())))
    df = pd.DataFrame(rows, columns=["mineral", "region", "model_t", "wmd_t"])
    df["difference_t"] = df["model_t"] - df["wmd_t"]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(df["wmd_t"] > 0, df["difference_t"] / df["wmd_t"].where(df["wmd_t"] > 0, 1.0), np.inf)
    df["relative_difference"] = rel
    df["flag"] = np.abs(df["relative_difference"]) > threshold
    df.attrs = {
        "unit": "t/yr",
        "description": "mine output in the world (USGS-based) against World Mining Data, base year",
        "threshold": threshold,
    }
    return df


def flagged(world: World, threshold: float = FLAG_THRESHOLD) -> pd.DataFrame:
    """Only the rows of :func:`compare_mine_output` whose difference exceeds ``threshold``."""
    df = compare_mine_output(world, threshold)
    return df[df["flag"]].reset_index(drop=True)


def markdown_table(df: pd.DataFrame) -> str:
    """A comparison table as Markdown (for docs/data.md)."""
    lines = [
        "| mineral | region | model (t) | WMD (t) | difference |",
        "|---|---|---:|---:|---:|",
    ]
    for r in df.to_dict("records"):
        diff = float(r["relative_difference"])
        rel = "n/a (WMD none)" if not np.isfinite(diff) else f"{diff:+.0%}"
        lines.append(f"| {r['mineral']} | {r['region']} | {r['model_t']:,.0f} | {r['wmd_t']:,.0f} | {rel} |")
    return "\n".join(lines)
