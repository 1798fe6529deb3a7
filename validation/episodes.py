"""Backtests of critmin's dynamics against two observed episodes of Chinese export controls.

``python validation/episodes.py`` reruns both episodes (gallium/germanium 2023-2025, rare earths 2025), prints
the comparison of model and observed (direction, peak multiple of the price outside China over the price in
China, its timing, China's exports), and writes ``docs/episodes/*.png``. ``--no-plots`` skips the figures.
Setup, tuning and observed data are in ``validation/episodes/episodes.yaml`` and the two scenario files;
docs/episodes.md explains them and discusses what the model misses.

Definitions (model side, per quarter):

- *multiple*: the use-weighted mean price of the ``outside`` regions over the China price of the same stage
  (weights: base-year use of the stage, i.e. consumption plus input to the next stage; undefined, NaN, where
  the China price is not positive);
- *exports index*: China's exports of the listed stages (tonnes of contained element) over their level in the
  last quarter before the first shock;
- *timing*: quarters from the quarter holding the first shock (0 = that quarter) on the observed calendar.
"""

from __future__ import annotations

import argparse
import atexit
import csv
import datetime as dt
import shutil
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from critmin.data.calibrate import calibrate, with_parameters
from critmin.data.world import World, default_world_path, load_world
from critmin.results.dataset import to_dataset
from critmin.simulate.run import make_periods, period_dates, run_calibrated
from critmin.simulate.scenario import Dynamics, Scenario, load_scenario

HERE = Path(__file__).resolve().parent
EPISODES_DIR = HERE / "episodes"
MANIFEST = EPISODES_DIR / "episodes.yaml"
DOCS_DIR = HERE.parent / "docs" / "episodes"
EPISODE_NAMES = ("gage_2023", "ree_2025")


# --------------------------------------------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------------------------------------------
@cache
def manifest() -> dict[str, Any]:
    """The episode manifest (``validation/episodes/episodes.yaml``)."""
    with MANIFEST.open(encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
    return data


def episode(name: str) -> dict[str, Any]:
    """One episode's entry of the manifest."""
    eps: dict[str, Any] = manifest()["episodes"]
    if name not in eps:
        raise KeyError(f"no episode {name!r}; known: {', '.join(eps)}")
    return dict(eps[name])


def shift_date(date: dt.date, months: int) -> dt.date:
    """``date`` moved by a whole number of months (the day kept, or the month's last day)."""
    index = date.year * 12 + date.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    for day in (date.day, 30, 29, 28):
        try:
            return dt.date(year, month, day)
        except ValueError:
            continue
    raise ValueError(f"cannot shift {date} by {months} months")


def quarter_of(date: dt.date) -> str:
    """The quarter label ``YYYY-Qn`` holding ``date``."""
    return f"{date.year}-Q{(date.month - 1) // 3 + 1}"


def quarter_index(label: str) -> int:
    """Quarters since year 0 (differences give quarters between two labels)."""
    return int(label[:4]) * 4 + int(label[-1]) - 1


@cache
def preshock_world(name: str) -> World:
    """The default world with the episode's ``preshock_prices`` replacing those minerals' price rows.

    The folder is a temporary copy of the default world; the world loader validates it like any other.
    """
    rows = episode(name).get("preshock_prices") or []
    folder = Path(tempfile.mkdtemp(prefix=f"critmin-{name}-")) / "world"
    atexit.register(shutil.rmtree, folder.parent, ignore_errors=True)
    shutil.copytree(default_world_path(), folder)
    path = folder / "prices.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        kept = [r for r in reader if r["mineral"] not in {row["mineral"] for row in rows}]
    for row in rows:
        kept.append(
            {
                "mineral": row["mineral"],
                "stage": row["stage"],
                "region": row["region"],
                "price_usd_per_t": str(row["price"]),
                "low": "",
                "high": "",
                "source": row["source"],
                "basis": row["basis"],
                "note": row["note"],
            }
        )
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    return load_world(folder)


def episode_world(name: str, *, as_shipped: bool = False) -> World:
    """The world an episode runs on: the pre-shock variant where the episode defines one."""
    if as_shipped or not episode(name).get("preshock_prices"):
        return load_world()
    return preshock_world(name)


def tuning_table(world: World, minerals: list[str]) -> pd.DataFrame:
    """Each tuned elasticity with the world's central value and labelled range; raises if out of range."""
    tuning = manifest()["tuning"]
    rows = []
    for m in minerals:
        md = world.mineral(m)
        for side, key_dim, central, ranges in (
            ("demand", "sector", md.demand_elasticity, md.demand_elasticity_range),
            ("supply", "stage", md.supply_elasticity, md.supply_elasticity_range),
        ):
            for key, value in tuning[f"{side}_elasticity"].items():
                if key not in central[key_dim].values:
                    continue
                low, high = (float(ranges.sel({key_dim: key, "bound": b})) for b in ("low", "high"))
                lo, hi = min(low, high), max(low, high)
                if not lo - 1e-12 <= value <= hi + 1e-12:
                    raise ValueError(f"tuned {side} elasticity {m}/{key} = {value} lies outside [{lo}, {hi}]")
                rows.append(
                    {
                        "mineral": m,
                        "side": side,
                        "key": key,
                        "central": float(central.sel({key_dim: key})),
                        "low": lo,
                        "high": hi,
                        "tuned": float(value),
                    }
                )
    return pd.DataFrame(rows)


def load_episode_scenario(name: str) -> Scenario:
    """The episode's scenario file, with the manifest's dynamics settings."""
    scenario = load_scenario(EPISODES_DIR / episode(name)["scenario"])
    settings = manifest()["tuning"].get("dynamics") or {}
    if settings:
        scenario = scenario.model_copy(update={"dynamics": Dynamics(**{**scenario.dynamics.model_dump(), **settings})})
    return scenario


def run_episode(name: str, *, tuned: bool = True, as_shipped: bool = False) -> xr.Dataset:
    """Run one episode and return its labelled results (``critmin.results.dataset.to_dataset``).

    ``tuned=False`` keeps the world's central elasticities; ``as_shipped=True`` runs on the default world as it
    ships, without the episode's pre-shock prices.
    """
    scenario = load_episode_scenario(name)
    world = episode_world(name, as_shipped=as_shipped)
    minerals = list(scenario.minerals or world.minerals)
    cals = calibrate(world)
    chosen = {m: cals[m] for m in minerals}
    if tuned:
        tuning_table(world, minerals)  # checks the ranges
        tuning = manifest()["tuning"]
        chosen = {
            m: with_parameters(
                cal,
                demand_elasticity={k: float(v) for k, v in tuning["demand_elasticity"].items() if k in cal.sectors},
                supply_elasticity={k: float(v) for k, v in tuning["supply_elasticity"].items() if k in cal.stages},
            )
            for m, cal in chosen.items()
        }
    start = scenario.start if scenario.start is not None else world.base_year
    end = scenario.end if scenario.end is not None else world.horizon
    record = run_calibrated(scenario, chosen, make_periods(start, end, scenario.period), world_name=world.name)
    ds = to_dataset(record)
    worst = float(ds["residual"].max())
    if not worst < 1e-6:
        raise RuntimeError(f"episode {name}: worst equilibrium residual {worst:.2e} (expected < 1e-6)")
    ds.attrs["episode"] = name
    ds.attrs["tuned"] = int(tuned)
    ds.attrs["as_shipped"] = int(as_shipped)
    return ds


# --------------------------------------------------------------------------------------------------------------
# Model series
# --------------------------------------------------------------------------------------------------------------
def use_weights(world: World, mineral: str, stage: str, regions: list[str]) -> xr.DataArray:
    """Base-year use of ``stage`` (consumption plus input to the next stage) in ``regions``, summing to 1."""
    md = world.mineral(mineral)
    use = md.consumption.sel(stage=stage).sum("sector")
    stages = list(md.stages)
    i = stages.index(stage)
    if i + 1 < len(stages):
        nxt = stages[i + 1]
        use = use + md.production.sel(stage=nxt) / float(md.yields[nxt])
    use = use.sel(region=regions)
    total = float(use.sum())
    if total <= 0:
        raise ValueError(f"no base-year use of {mineral}/{stage} in {', '.join(regions)}")
    return use / total


def model_multiple(ds: xr.Dataset, world: World, mineral: str, stage: str, outside: list[str]) -> pd.Series:
    """Use-weighted outside price over the China price, per period (NaN where the China price is <= 0)."""
    price = ds["price"].sel(mineral=mineral, stage=stage)
    weights = use_weights(world, mineral, stage, outside)
    out = (price.sel(region=outside) * weights).sum("region")
    china = price.sel(region="CHN")
    ratio = (out / china).where(china > 0)
    return pd.Series(ratio.values, index=list(ds["period"].values), name=f"{mineral}/{stage}")


def model_prices(ds: xr.Dataset, world: World, mineral: str, stage: str, outside: list[str]) -> pd.DataFrame:
    """China, EU and use-weighted outside prices (USD/kg) per period."""
    price = ds["price"].sel(mineral=mineral, stage=stage)
    weights = use_weights(world, mineral, stage, outside)
    return pd.DataFrame(
        {
            "china": price.sel(region="CHN").values / 1e3,
            "eu": price.sel(region="EU").values / 1e3,
            "outside": (price.sel(region=outside) * weights).sum("region").values / 1e3,
        },
        index=list(ds["period"].values),
    )


def model_exports(ds: xr.Dataset, mineral: str, stages: list[str], base_period: str) -> pd.Series:
    """China's exports of ``stages`` over their level in ``base_period``."""
    exports = ds["exports"].sel(mineral=mineral, stage=stages, region="CHN").sum("stage")
    base = float(exports.sel(period=base_period))
    return pd.Series(exports.values / base, index=list(ds["period"].values), name=mineral)


# --------------------------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------------------------
@dataclass
class SeriesComparison:
    """Model versus observed for one price multiple or exports index."""

    episode: str
    key: str
    label: str
    shock_quarter: str  # observed calendar
    model: pd.Series  # indexed by observed-calendar quarter labels
    observed: pd.DataFrame  # date, quarter, value, note
    window: tuple[str, str]  # observed quarters [first, last] searched for the peak
    extras: dict[str, Any] = field(default_factory=dict)

    def _in_window(self, labels: list[str]) -> list[str]:
        lo, hi = (quarter_index(q) for q in self.window)
        return [q for q in labels if lo <= quarter_index(q) <= hi]

    @property
    def before(self) -> float:
        """Model value in the last quarter before the shock quarter."""
        q = [p for p in self.model.index if quarter_index(p) == quarter_index(self.shock_quarter) - 1]
        return float(self.model[q[0]]) if q else float("nan")

    def model_peak(self) -> tuple[float, str, int]:
        """Largest model value in the window, its quarter, and quarters after the shock quarter."""
        values = self.model[self._in_window(list(self.model.index))].dropna()
        q = str(values.idxmax())
        return float(values[q]), q, quarter_index(q) - quarter_index(self.shock_quarter)

    def model_trough(self) -> tuple[float, str, int]:
        """Smallest model value in the window, its quarter, and quarters after the shock quarter."""
        values = self.model[self._in_window(list(self.model.index))].dropna()
        q = str(values.idxmin())
        return float(values[q]), q, quarter_index(q) - quarter_index(self.shock_quarter)

    def observed_peak(self) -> tuple[float, str, int]:
        """Largest observation in the window, its quarter, and quarters after the shock quarter."""
        obs = self.observed[self.observed["quarter"].isin(self._in_window(list(self.observed["quarter"])))]
        row = obs.loc[obs["value"].idxmax()]
        q = str(row["quarter"])
        return float(row["value"]), q, quarter_index(q) - quarter_index(self.shock_quarter)

    def observed_trough(self) -> tuple[float, str, int]:
        """Smallest observation in the window, its quarter, and quarters after the shock quarter."""
        obs = self.observed[self.observed["quarter"].isin(self._in_window(list(self.observed["quarter"])))]
        row = obs.loc[obs["value"].idxmin()]
        q = str(row["quarter"])
        return float(row["value"]), q, quarter_index(q) - quarter_index(self.shock_quarter)

    def points(self) -> pd.DataFrame:
        """Every observation next to the model's value in its quarter."""
        out = self.observed.copy()
        out["model"] = [float(self.model.get(q, np.nan)) for q in out["quarter"]]
        return out


def _observed_calendar(ds: xr.Dataset, shift: int) -> list[str]:
    """Observed-calendar quarter labels of the model's periods."""
    return [quarter_of(shift_date(period_dates(str(p))[0], -shift)) for p in ds["period"].values]


def _window(ep: dict[str, Any]) -> tuple[str, str]:
    lo, hi = ep["peak_window"]
    return quarter_of(lo), quarter_of(hi - dt.timedelta(days=1))


def _comparison_quarter(date: dt.date, shock_date: dt.date) -> str:
    """The observed-calendar quarter whose model value an observation is compared with.

    An observation dated before the first shock is compared with the last quarter before the shock's quarter
    (the model's pre-shock market), even when it falls in the shock's quarter.
    """
    if date < shock_date:
        index = quarter_index(quarter_of(shock_date)) - 1
        return f"{index // 4}-Q{index % 4 + 1}"
    return quarter_of(date)


def compare_prices(name: str, ds: xr.Dataset) -> list[SeriesComparison]:
    """Model versus observed price multiples of an episode."""
    ep = episode(name)
    outside = list(manifest()["outside"])
    world = episode_world(name, as_shipped=bool(ds.attrs.get("as_shipped", 0)))
    calendar = _observed_calendar(ds, int(ep["shift_months"]))
    shock_date = ep["shocks"][0]["date"]
    shock = quarter_of(shock_date)
    result = []
    for spec in ep["prices"]:
        model = model_multiple(ds, world, spec["mineral"], spec["stage"], outside)
        model.index = calendar
        # model prices are per kg of contained element; observed ones per kg of the traded product (an oxide)
        element_share = float(spec.get("element_share", 1.0))
        prices = model_prices(ds, world, spec["mineral"], spec["stage"], outside) * element_share
        prices.index = calendar
        obs = spec["observed"]
        observed = pd.DataFrame(
            {
                "date": [o["date"] for o in obs],
                "quarter": [_comparison_quarter(o["date"], shock_date) for o in obs],
                "value": [float(o["outside"]) / float(o["inside"]) for o in obs],
                "outside": [float(o["outside"]) if o["unit"] == "USD/kg" else np.nan for o in obs],
                "inside": [float(o["inside"]) if o["unit"] == "USD/kg" else np.nan for o in obs],
                "approximate": [bool(o.get("approximate", False)) for o in obs],
                "note": [o.get("note", "") for o in obs],
            }
        )
        result.append(
            SeriesComparison(name, spec["key"], spec["label"], shock, model, observed, _window(ep), {"prices": prices})
        )
    return result


def compare_exports(name: str, ds: xr.Dataset) -> list[SeriesComparison]:
    """Model versus observed China export indices of an episode (annual observations use annual means)."""
    ep = episode(name)
    shift = int(ep["shift_months"])
    calendar = _observed_calendar(ds, shift)
    shock_date = ep["shocks"][0]["date"]
    shock = quarter_of(shock_date)
    base = [p for p, q in zip(ds["period"].values, calendar, strict=True) if quarter_index(q) < quarter_index(shock)]
    result = []
    for spec in ep["exports"]:
        model = model_exports(ds, spec["mineral"], list(spec["stages"]), str(base[-1]))
        model.index = calendar
        rows = []
        for o in spec["observed"]:
            quarter = _comparison_quarter(o["date"], shock_date)
            rows.append(
                {
                    "date": o["date"],
                    "quarter": quarter,
                    "value": float(o["index"]),
                    "note": o.get("note", ""),
                    "annual": o.get("annual"),
                }
            )
        observed = pd.DataFrame(rows)
        comparison = SeriesComparison(name, spec["key"], spec["label"], shock, model, observed, _window(ep))
        comparison.extras["basis"] = spec.get("basis", "")
        comparison.extras["annual"] = {
            int(y): float(model[[q for q in model.index if q.startswith(str(int(y)))]].mean())
            for y in observed["annual"].dropna().unique()
        }
        result.append(comparison)
    return result


def annual_model_value(comparison: SeriesComparison, row: pd.Series) -> float:
    """The model's value for an observation: its quarter, or the year's mean for an annual observation."""
    if row.get("annual") is not None and not pd.isna(row.get("annual")):
        return float(comparison.extras["annual"][int(row["annual"])])
    return float(comparison.model.get(row["quarter"], np.nan))


# --------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------
def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def peak_table(runs: dict[str, xr.Dataset]) -> pd.DataFrame:
    """The headline table: direction, peak multiple model vs observed, timing, for every price series."""
    rows = []
    for name, ds in runs.items():
        for c in compare_prices(name, ds):
            model_peak, model_q, model_after = c.model_peak()
            obs_peak, obs_q, obs_after = c.observed_peak()
            rows.append(
                {
                    "episode": name,
                    "series": c.key,
                    "model before": c.before,
                    "model peak": model_peak,
                    "model quarter": f"{model_q} (+{model_after})",
                    "observed peak": obs_peak,
                    "observed quarter": f"{obs_q} (+{obs_after})",
                    "model / observed": model_peak / obs_peak,
                    "quarters undefined": int(c.model.isna().sum()),
                }
            )
    return pd.DataFrame(rows)


def exports_table(runs: dict[str, xr.Dataset]) -> pd.DataFrame:
    """China's exports: the model's trough after the shock against the observed one."""
    rows = []
    for name, ds in runs.items():
        for c in compare_exports(name, ds):
            low, q, after = c.model_trough()
            obs_low, obs_q, obs_after = c.observed_trough()
            rows.append(
                {
                    "episode": name,
                    "series": c.key,
                    "model trough": low,
                    "model quarter": f"{q} (+{after})",
                    "observed trough": obs_low,
                    "observed quarter": f"{obs_q} (+{obs_after})",
                }
            )
    return pd.DataFrame(rows)


def points_table(runs: dict[str, xr.Dataset]) -> pd.DataFrame:
    """Every observation next to the model's value for the same (observed-calendar) quarter.

    For price multiples, also the prices themselves (USD per kg of the observed product, the model's converted
    by the series' ``element_share``): observed and model, outside and in China, and the model's EU-only
    multiple (the observed outside prices are European).
    """
    rows = []
    for name, ds in runs.items():
        for c in compare_prices(name, ds):
            prices = c.extras["prices"]
            for _, r in c.points().iterrows():
                q = r["quarter"]
                rows.append(
                    {
                        "episode": name,
                        "series": f"multiple {c.key}" + (" (approx.)" if r["approximate"] else ""),
                        "date": r["date"],
                        "quarter": q,
                        "observed": r["value"],
                        "model": r["model"],
                        "model EU": prices.at[q, "eu"] / prices.at[q, "china"] if prices.at[q, "china"] > 0 else np.nan,
                        "obs. outside": r["outside"],
                        "model outside": prices.at[q, "outside"],
                        "obs. China": r["inside"],
                        "model China": prices.at[q, "china"],
                    }
                )
        for c in compare_exports(name, ds):
            for _, r in c.observed.iterrows():
                rows.append(
                    {
                        "episode": name,
                        "series": f"exports {c.key}",
                        "date": r["date"],
                        "quarter": r["quarter"] if pd.isna(r.get("annual")) else f"{int(r['annual'])} mean",
                        "observed": r["value"],
                        "model": annual_model_value(c, r),
                    }
                )
    return pd.DataFrame(rows)


def _steps(model: pd.Series) -> tuple[list[dt.date], list[float]]:
    """Quarter boundaries and values for a step plot of a quarterly series (observed calendar)."""
    x = [period_dates(q)[0] for q in model.index]
    x.append(period_dates(model.index[-1])[1])
    values = [float(v) for v in model.to_numpy()]
    return x, [*values, values[-1]]


def plot_episode(name: str, runs: dict[str, xr.Dataset], path: Path) -> None:
    """Price multiples and China's exports, model (tuned, and central elasticities) against observed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = episode(name)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 8.5), sharex=True, constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    tuned = compare_prices(name, runs["tuned"])
    central = compare_prices(name, runs["central"])
    for i, (c, u) in enumerate(zip(tuned, central, strict=True)):
        colour = colours[i % len(colours)]
        top.step(*_steps(c.model), where="post", color=colour, lw=2, label=f"model: {textwrap.fill(c.label, 60)}")
        top.step(*_steps(u.model), where="post", color=colour, lw=1, ls=":", label="  same, central elasticities")
        exact = c.observed[~c.observed["approximate"]]
        approx = c.observed[c.observed["approximate"]]
        top.plot(exact["date"], exact["value"], "o", color=colour, ms=7, mec="black", label="  observed")
        if len(approx):
            top.plot(approx["date"], approx["value"], "o", color=colour, ms=7, mfc="none", label="  observed, approx.")
    top.axhline(1.0, color="grey", lw=0.8)
    top.set_yscale("log")
    top.set_ylim(0.7, 80.0)
    top.set_ylabel("price outside China / price in China")
    top.set_title(ep["title"], fontsize=10)
    top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for i, c in enumerate(compare_exports(name, runs["tuned"])):
        colour = colours[i % len(colours)]
        style = ("-", "--", "-.", ":")[i % 4]
        bottom.step(
            *_steps(c.model), where="post", color=colour, lw=2, ls=style, label=f"model: {textwrap.fill(c.label, 60)}"
        )
        basis = c.extras.get("basis", "")
        bottom.plot(
            c.observed["date"],
            c.observed["value"],
            "s",
            color=colour,
            ms=6,
            mec="black",
            label=f"  observed: {textwrap.fill(basis, 60)}",
        )
    bottom.axhline(1.0, color="grey", lw=0.8)
    bottom.set_ylabel("China's exports (index, before the shock = 1)")
    shift = int(ep["shift_months"])
    bottom.set_xlabel("observed calendar" + (f" (model date = observed date + {shift} months)" if shift else ""))
    bottom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax in (top, bottom):
        for shock in ep["shocks"]:
            ax.axvline(shock["date"], color="black", ls="--", lw=0.8)
        ax.grid(alpha=0.3)
    for shock in ep["shocks"]:
        bottom.annotate(
            shock["label"],
            (shock["date"], 0.02),
            xycoords=bottom.get_xaxis_transform(),
            rotation=90,
            fontsize=7,
            va="bottom",
            ha="right",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_all() -> dict[str, dict[str, xr.Dataset]]:
    """Every run the report needs: tuned, central elasticities, and (gallium) the world as shipped."""
    runs: dict[str, dict[str, xr.Dataset]] = {}
    for name in EPISODE_NAMES:
        runs[name] = {"tuned": run_episode(name), "central": run_episode(name, tuned=False)}
        if episode(name).get("preshock_prices"):
            runs[name]["as shipped"] = run_episode(name, as_shipped=True)
    return runs


def _print(title: str, frame: pd.DataFrame) -> None:
    print(f"\n## {title}\n")
    print(frame.to_string(index=False, float_format=lambda x: _fmt(x)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-plots", action="store_true", help="do not write docs/episodes/*.png")
    args = parser.parse_args(argv)
    runs = run_all()
    for variant in ("tuned", "central", "as shipped"):
        chosen = {n: r[variant] for n, r in runs.items() if variant in r}
        _print(f"Peak multiples ({variant})", peak_table(chosen))
    _print("China's exports (tuned)", exports_table({n: r["tuned"] for n, r in runs.items()}))
    _print("Observations against the model (tuned)", points_table({n: r["tuned"] for n, r in runs.items()}))
    world_minerals = {n: list(load_episode_scenario(n).minerals or []) for n in EPISODE_NAMES}
    table = pd.concat(
        [tuning_table(episode_world(n), ms).assign(episode=n) for n, ms in world_minerals.items()]
    ).drop_duplicates(["side", "key", "central", "low", "high", "tuned"])
    columns = ["side", "key", "central", "low", "high", "tuned"]
    _print("Tuned elasticities (within the world's labelled ranges)", table[columns])
    for name, r in runs.items():
        for c in compare_prices(name, r["tuned"]):
            _print(f"Model prices, {name} {c.key} (USD/kg, tuned)", c.extras["prices"].reset_index(names="quarter"))
    if not args.no_plots:
        for name, r in runs.items():
            path = DOCS_DIR / f"{name}.png"
            plot_episode(name, r, path)
            print(f"\nwrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
