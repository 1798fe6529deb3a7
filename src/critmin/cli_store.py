"""Commands of the results store: ``critmin runs``, ``critmin show RUN``, ``critmin export RUN``.

``critmin.cli`` adds them to its app with :func:`register`. Like the rest of the command line they are thin:
the work is in :mod:`critmin.results.store` and :mod:`critmin.results.risk`, errors raised on purpose
(:class:`~critmin.core.errors.CritminError`) become a red message and exit code 2, and heavy imports wait
until a command runs.
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from critmin.cli_tables import frame_table, print_table
from critmin.core.errors import CritminError

console = Console()
err_console = Console(stderr=True)

StoreOption = Annotated[
    Path | None,
    typer.Option("--store", help="The results store (default: $CRITMIN_STORE or ~/.critmin/store.duckdb)"),
]
RunArgument = Annotated[str, typer.Argument(help="A run id, or the start of exactly one (see `critmin runs`)")]


def _fail(err: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {err}")
    raise typer.Exit(code=2)


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return ""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def _stale(run: dict[str, Any]) -> bool:
    """A ``running`` run whose process, on this machine, is gone (killed before it could say so)."""
    if run.get("status") != "running" or run.get("host") != socket.gethostname() or not run.get("pid"):
        return False
    if int(run["pid"]) == os.getpid():
        return False
    try:
        os.kill(int(run["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _status(run: dict[str, Any]) -> str:
    return "running? (its process is gone: resume it)" if _stale(run) else str(run["status"])


def risk_view(table: Any, level: float = 0.95) -> Table:
    """The risk table of :func:`critmin.results.risk.risk_table` as a rich table (for
    :func:`~critmin.cli_tables.print_table`, which never cuts a number).

    Parameters
    ----------
    table
        The risk table.
    level
        The CVaR level it was computed at (for the headers).

    Returns
    -------
    rich.table.Table
        One row per outcome: the outcome with its unit, mineral, region, mean, P5/P50/P95, CVaR, the
        exceedance probability where a threshold applies, and the driving input with its rho; of one draw
        (a single run), the outcome's value only.
    """
    import pandas as pd

    from critmin.results.risk import WEAK_DRIVER_P, driver_label

    pct = f"{100 * level:g}"
    thresholds = sorted({float(t) for t in table["threshold"].dropna()})
    labels = pd.DataFrame(
        {
            "outcome": [
                f"{'total' if a == 'sum' else 'peak'} {m} [{u}]"
                for m, a, u in zip(table["metric"], table["aggregate"], table["unit"], strict=True)
            ],
            "mineral": table["mineral"].astype(object).where(table["mineral"].notna(), ""),
            "region": table["region"].astype(object).where(table["region"].notna(), ""),
        }
    )
    if int(table["n"].max()) == 1:  # one draw (a single run): its values, without quantiles or drivers
        title = "Outcomes of the run: each is a metric summed (total) or peaked over the periods"
        return frame_table(labels.assign(value=table["mean"]), title)
    shown = labels.assign(
        **{"mean": table["mean"], "P5": table["p5"], "P50": table["p50"], "P95": table["p95"]},
        **{f"CVaR{pct}": table["cvar"]},
    )
    if len(thresholds) == 1:
        shown[f"P(>{thresholds[0]:g})"] = table["p_exceed"]
    elif thresholds:
        shown["threshold"] = table["threshold"]
        shown["P(>threshold)"] = table["p_exceed"]
    shown["driver (rho)"] = [
        driver_label(d, r, p) for d, r, p in zip(table["driver"], table["driver_rho"], table["driver_p"], strict=True)
    ]
    title = (
        f"Risk over {int(table['n'].max())} draws: each outcome is a metric summed (total) or peaked over the "
        f"periods; CVaR{pct} is the mean of the worst {100 - 100 * level:g}% of draws; driver: the uncertain "
        f"input with the strongest Spearman rank correlation, with its p-value where it could be chance "
        f"(p >= {WEAK_DRIVER_P:g})"
    )
    return frame_table(shown, title)


def runs(store: StoreOption = None) -> None:
    """List the runs in the store, newest first."""
    try:
        import pandas as pd

        from critmin.results.store import Store

        st = Store(store)
        table = st.list_runs()
        if table.empty:
            console.print(f"no runs in {st.path}")
            return
        with st:  # a run still marked running: is its process alive?
            status = [
                _status(st.get_run(run_id)) if state == "running" else str(state)
                for run_id, state in zip(table["id"], table["status"], strict=True)
            ]
        shown = pd.DataFrame(
            {
                "id": table["id"].astype(str),
                "scenario": table["scenario"].astype(str),
                "hash": table["hash"].astype(str).str[:10],
                "data": table["data_version"].astype(str),
                "code": table["code_version"].astype(str),
                "seed": table["seed"].astype(str),
                "draws": [f"{d}/{n}" for d, n in zip(table["done"], table["draws"], strict=True)],
                "created (UTC)": [f"{c:%Y-%m-%d %H:%M}" for c in table["created"]],
                "status": status,
                "wall time": [_duration(float(w)) for w in table["wall_time_s"]],
            }
        )
        print_table(console, frame_table(shown, f"Runs in {st.path}", whole=("id",)))
    except CritminError as err:
        _fail(err)


def selection_problem(metrics: Any, run_id: str, mineral: list[str] | None, region: list[str] | None) -> str | None:
    """What in ``--mineral`` / ``--region`` names nothing in a run's stored metrics, and what it has; None when
    everything named is there. An ensemble stores the world, its blocs and a few regions (CHN, USA), not
    every region: ``-r JPN`` would otherwise print only "no metrics match"."""
    parts = []
    for flag, wanted, column, what in (
        ("--mineral", mineral, "mineral", "minerals"),
        ("--region", region, "region", "regions and blocs"),
    ):
        have = [str(x) for x in dict.fromkeys(metrics[column].astype(str))]
        missing = [w for w in wanted or [] if w not in have]
        if missing:
            parts.append(f"{flag} {', '.join(missing)}: not in run {run_id}, whose stored {what} are {', '.join(have)}")
    return "; ".join(parts) or None


def show(
    run: RunArgument,
    store: StoreOption = None,
    mineral: Annotated[list[str] | None, typer.Option("--mineral", "-m", help="Only these minerals")] = None,
    region: Annotated[list[str] | None, typer.Option("--region", "-r", help="Only these regions or blocs")] = None,
    level: Annotated[float, typer.Option(help="CVaR level")] = 0.95,
) -> None:
    """Print a run: what it ran, how far it got, and its risk table."""
    try:
        from critmin.results.risk import risk_table
        from critmin.results.store import Store

        st = Store(store)
        with st:
            info = st.get_run(run)
            draws = st.load_draws(info["run_id"])
            metrics = st.load_metrics(info["run_id"])
        finished = info["finished"]
        fields = [
            ("run", info["run_id"]),
            ("kind", info["kind"]),
            ("scenario", info["scenario_name"]),
            ("scenario hash", info["scenario_hash"]),
            ("data version", info["data_version"]),
            ("code version", info["code_version"]),
            ("seed", info["seed"]),
            ("sampler", info["sampler"]),
            ("draws", f"{info['done']} of {info['n_draws']} stored, in {info['chunks']} chunks"),
            ("status", _status(info)),
            ("created (UTC)", f"{info['created']:%Y-%m-%d %H:%M:%S}"),
            ("finished (UTC)", f"{finished:%Y-%m-%d %H:%M:%S}" if finished is not None else ""),
            ("wall time", _duration(float(info["wall_time_s"]))),
            ("uncertain inputs", "\n".join(info["draw_paths"]) or "none"),
        ]
        meta = Table(title=f"Run {info['run_id']}", title_justify="left", show_header=False)
        meta.add_column("field", style="bold")
        meta.add_column("value")
        for name, value in fields:
            meta.add_row(name, escape(str(value)))
        print_table(console, meta)
        if metrics.empty:
            console.print("no metrics yet: no chunk of this run is complete")
            return
        if info["done"] < info["n_draws"]:
            console.print(f"[yellow]partial:[/] the risk table covers {info['done']} of {info['n_draws']} draws")
        problem = selection_problem(metrics, str(info["run_id"]), mineral, region)
        if problem is not None:
            raise CritminError(problem)
        table = risk_table(draws, metrics, level=level, minerals=mineral, regions=region)
        if table.empty:
            console.print("no metrics match the selection")
            return
        print_table(console, risk_view(table, level))
    except CritminError as err:
        _fail(err)


def export(
    run: RunArgument,
    fmt: Annotated[str, typer.Option("--format", "-f", help="parquet or csv")] = "parquet",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="The folder to write (must be new)")] = None,
    store: StoreOption = None,
    cube: Annotated[bool, typer.Option("--cube/--no-cube", help="Include the full result cube")] = True,
) -> None:
    """Export a run to a new folder: run.json and the draws, metrics, risk and cube tables (Parquet or CSV)."""
    try:
        from critmin.results.store import Store

        if fmt not in ("parquet", "csv"):
            raise CritminError(f"--format must be parquet or csv, got {fmt!r}")
        if output is None:
            raise CritminError("name the folder to write with -o PATH")
        st = Store(store)
        counts = st.export(run, "csv" if fmt == "csv" else "parquet", output, cube=cube)
        summary = ", ".join(f"{name} {rows:,} rows" for name, rows in counts.items())
        console.print(f"wrote {output}: {summary}")
    except CritminError as err:
        _fail(err)


def register(app: typer.Typer) -> None:
    """Add the store's commands (``runs``, ``show``, ``export``) to a Typer app."""
    app.command("runs")(runs)
    app.command("show")(show)
    app.command("export")(export)
