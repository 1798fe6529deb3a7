"""The command line: thin; turns errors into readable messages; heavy imports wait for the command."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from critmin.cli_tables import frame_table, print_table
from critmin.core.errors import CritminError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="critmin: a calibrated world market for critical minerals and the policies that reshape it.",
)
console = Console()
err_console = Console(stderr=True)


def _fail(err: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {err}")
    raise typer.Exit(code=2)


@app.command()
def data(
    mineral: Annotated[list[str] | None, typer.Option("--mineral", "-m", help="Show only these minerals")] = None,
    world: Annotated[str, typer.Option(help="'default', 'toy' or a world folder")] = "default",
    sources: Annotated[bool, typer.Option("--sources/--no-sources", help="List the sources")] = True,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Cross-check mine output vs WMD")] = True,
) -> None:
    """Show the world: per mineral and stage, output, shares, capacity and price; then the sources."""
    try:
        from critmin.simulate.run import resolve_world

        w = resolve_world(world)
        names = mineral or list(w.minerals)
        for m in names:
            if m not in w.minerals:
                raise CritminError(f"unknown mineral {m!r}; known: {', '.join(w.minerals)}")
        console.print(
            f"[bold]{w.name}[/]: base year {w.base_year}, horizon {w.horizon}, "
            f"{len(w.regions)} regions, {len(w.minerals)} minerals, sectors: {', '.join(w.sectors)}"
        )
        for m in names:
            for stage, df in w.summary(m).items():
                view = df.reset_index()
                view = view[(view["production_t"] > 0) | (view["use_t"] > 0)]
                shown = view.rename(
                    columns={
                        "production_t": "output t",
                        "share_of_world": "share %",
                        "capacity_t": "capacity t",
                        "utilisation": "util.",
                        "consumption_t": "end use t",
                        "use_t": "use t",
                    }
                )
                shown["share %"] = 100.0 * shown["share %"]
                shown["price USD/kg"] = shown.pop("price_usd_per_t") / 1000.0
                print_table(console, frame_table(shown, f"{m} / {stage} (base year {w.base_year})", floatfmt="{:,.3g}"))
        if check and world == "default":
            from critmin.data.crosscheck import compare_mine_output

            cmp = compare_mine_output(w)
            flagged = cmp[cmp["flag"]] if "flag" in cmp.columns else cmp
            print_table(
                console, frame_table(flagged, "Mine output: USGS (model) vs World Mining Data, differences above 10%")
            )
        if sources:
            src = w.sources
            if mineral:
                src = src[src["mineral"].isin(names) | (src["mineral"] == "")]
            counts = (
                src.groupby(["basis", "citation"])
                .size()
                .reset_index(name="numbers")
                .sort_values("numbers", ascending=False)
            )
            counts["citation"] = counts["citation"].str.slice(0, 110)
            print_table(
                console, frame_table(counts, "Sources: every number's citation or assumption label (count of numbers)")
            )
    except CritminError as err:
        _fail(err)


@app.command()
def run(
    scenario: Annotated[str, typer.Argument(help="A built-in scenario name or a scenario YAML file")],
    export: Annotated[
        Path | None,
        typer.Option("--export", help="Write a tidy long table of all results: .csv (.csv.gz, ...) or .parquet"),
    ] = None,
    solver: Annotated[str | None, typer.Option(help="Override the period solver: engine or highs")] = None,
) -> None:
    """Run a scenario over its periods, print a summary, optionally export the results."""
    try:
        from critmin.results.dataset import export_format, export_long, summary_table, to_dataset
        from critmin.simulate.run import run_scenario
        from critmin.simulate.scenario import load_scenario

        if export is not None:
            export_format(export)  # a path that cannot be written fails now, not after the run
        if solver is not None and solver not in ("engine", "highs"):
            raise CritminError(f"--solver must be engine or highs, got {solver!r}")
        spec = load_scenario(scenario)
        if solver is not None:
            spec = spec.model_copy(update={"solver": solver})
        t0 = time.perf_counter()
        record = run_scenario(spec)
        ds = to_dataset(record)
        elapsed = time.perf_counter() - t0
        metrics_ds = None
        if export is not None:
            from critmin.metrics import compute_all

            metrics_ds = compute_all(ds)
        print_table(
            console,
            frame_table(
                summary_table(ds),
                f"{spec.name}: headline by mineral (output and price at the last stage; end use and "
                "shortfall over every stage's uses)",
            ),
        )
        console.print(
            f"{len(record.periods)} periods x {len(record.minerals)} minerals solved by {record.solver} in "
            f"{record.solve_time_s:.3f} s of solving ({elapsed:.2f} s with set-up); worst relative residual "
            f"{float(ds['residual'].max()):.1e}"
        )
        if export is not None:
            rows = export_long(ds, export, metrics_ds)
            console.print(f"wrote {rows:,} rows (results and metrics) to {export}")
    except CritminError as err:
        _fail(err)


@app.command()
def compare(
    scenarios: Annotated[
        list[str], typer.Argument(help="Two or more scenarios (names or files); the first is the reference")
    ],
    export: Annotated[
        Path | None, typer.Option("--export", help="Write the comparison table: .csv (.csv.gz, ...) or .parquet")
    ] = None,
    mineral: Annotated[str | None, typer.Option("--mineral", "-m", help="Only this mineral (default: all)")] = None,
) -> None:
    """Run scenarios and print their headline metrics side by side, with differences from the first."""
    try:
        if len(scenarios) < 2:
            raise CritminError("compare needs at least two scenarios")
        if export is not None:
            from critmin.results.dataset import export_format

            export_format(export)  # fails now, not after the runs
        from critmin.metrics import common_window
        from critmin.metrics import compare as compare_runs
        from critmin.results.dataset import to_dataset
        from critmin.simulate.run import run_scenario
        from critmin.simulate.scenario import load_scenario

        runs = {}
        for name in scenarios:
            spec = load_scenario(name)
            label = spec.name if spec.name not in runs else name
            runs[label] = to_dataset(run_scenario(spec))
        labels = list(runs)
        runs, note = common_window(runs)  # like with like: the minerals and periods every run has
        if mineral is not None:
            shared = [str(m) for m in runs[labels[0]]["mineral"].values]
            if mineral not in shared:
                raise CritminError(f"--mineral {mineral!r} is not in every run; they share {', '.join(shared)}")
        table = compare_runs(runs, baseline=runs[labels[0]])
        table = table.reset_index()
        if mineral is not None:
            table = table[table["mineral"] == mineral]
        table = with_differences(table, labels)
        title = (
            f"Headline metrics: {' vs '.join(labels)} (differences from {labels[0]}; differences within the "
            f"solver's tolerance are 0; a blank recovery_periods has not recovered by the last period)"
        )
        print_table(console, frame_table(table, title))
        if note is not None:
            console.print(note[0].upper() + note[1:])
        if export is not None:
            from critmin.results.dataset import write_table

            write_table(table, export)
            console.print(f"wrote {len(table):,} rows to {export}")
    except CritminError as err:
        _fail(err)


def with_differences(table: Any, labels: list[str]) -> Any:
    """``table`` with a column ``OTHER - FIRST`` for each run after the first; a difference within the
    solver's tolerance is 0, not rounding noise such as 1e-16 (:func:`critmin.metrics.headline.difference`)."""
    from critmin.metrics.headline import difference

    for other in labels[1:]:
        table[f"{other} - {labels[0]}"] = difference(table[labels[0]].to_numpy(), table[other].to_numpy())
    return table


@app.command()
def validate(
    scenario: Annotated[str, typer.Argument(help="A built-in scenario name or a scenario YAML file")],
) -> None:
    """Check a scenario file and the world it names; print what it contains."""
    try:
        from critmin.simulate.run import check_scenario, resolve_world
        from critmin.simulate.scenario import load_scenario

        spec = load_scenario(scenario)
        w = resolve_world(spec.world)
        check_scenario(spec, w, file=scenario)
        kinds: dict[str, int] = {}
        for inst in spec.instruments:
            kinds[inst.kind] = kinds.get(inst.kind, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no instruments"
        from critmin.results.ensemble import VALIDATE_DRAWS, check_uncertainty

        n_inputs = check_uncertainty(spec, file=scenario)
        if n_inputs and spec.uncertainty is not None:
            summary += (
                f"; uncertainty: {n_inputs} inputs ({spec.uncertainty.sampler}), every path found and "
                f"{VALIDATE_DRAWS} sample draws valid"
            )
        console.print(
            f"[green]valid[/]: {spec.name} on world {w.name} ({len(w.minerals)} minerals); "
            f"blocs: {', '.join(spec.blocs) or 'none'}; {summary}"
        )
    except CritminError as err:
        _fail(err)


@app.command()
def ensemble(
    scenario: Annotated[str | None, typer.Argument(help="A built-in scenario name or a scenario YAML file")] = None,
    draws: Annotated[int, typer.Option("--draws", "-n", help="Number of draws")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the table of draws")] = 0,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: one per core)")] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of an existing Dask scheduler, tcp://HOST:PORT")
    ] = None,
    executor: Annotated[str, typer.Option(help="dask (default), local (process pool) or inline")] = "dask",
    store: Annotated[Path | None, typer.Option(help="Results store (DuckDB file)")] = None,
    chunk: Annotated[int, typer.Option(help="Draws per chunk (fixed per run)")] = 50,
    resume: Annotated[str | None, typer.Option(help="Resume an interrupted run by id")] = None,
    mineral: Annotated[
        list[str] | None, typer.Option("--mineral", "-m", help="Print the risk table of these minerals only")
    ] = None,
    region: Annotated[
        list[str] | None, typer.Option("--region", "-r", help="Print the risk table of these regions or blocs only")
    ] = None,
) -> None:
    """Run many draws of a scenario's uncertain inputs, store them, and print the risk table (every draw's
    metrics are stored whatever ``--mineral`` and ``--region`` select for printing)."""
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from critmin.results.ensemble import run_ensemble
        from critmin.results.risk import risk_table

        if executor not in ("dask", "local", "inline"):
            raise CritminError(f"unknown executor {executor!r}: use dask, local or inline")
        if scheduler is not None:
            executor = "dask"
        columns = (
            TextColumn("[bold]draws"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        )
        t0 = time.perf_counter()
        with Progress(*columns, console=err_console, transient=False) as bar:
            task = bar.add_task("draws", total=None, rate="")
            start_done: list[int] = []

            def progress(done: int, total: int) -> None:
                if not start_done:
                    start_done.append(done)
                elapsed = max(time.perf_counter() - t0, 1e-9)
                rate = (done - start_done[0]) / elapsed
                bar.update(task, completed=done, total=total, rate=f"{rate:,.1f} draws/s")

            result = run_ensemble(
                scenario,
                draws=draws,
                seed=seed,
                workers=workers,
                scheduler=scheduler,
                executor=executor,  # type: ignore[arg-type]
                store=store,
                chunk_size=chunk,
                resume=resume,
                progress=progress,
                load=False,
            )
        from critmin.cli_store import risk_view, selection_problem
        from critmin.results.store import Store

        metrics = Store(store).load_metrics(result.run_id)
        console.print(
            f"run [bold]{result.run_id}[/]: {len(result.draws)} draws stored; `critmin show {result.run_id}`",
            soft_wrap=True,  # the id on one line, whatever the width
        )
        problem = selection_problem(metrics, result.run_id, mineral, region)
        if problem is not None:  # the run is stored: say what the table can show, and go on
            err_console.print(problem, style="yellow", markup=False, soft_wrap=False)
        table = risk_table(result.draws, metrics, minerals=mineral, regions=region)
        if table.empty:
            console.print("no metrics match the selection")
        else:
            print_table(console, risk_view(table))
    except CritminError as err:
        failed = getattr(err, "run_id", None)
        if failed is not None:
            err_console.print(
                f"run {failed} is stored as failed; `critmin ensemble --resume {failed}` computes its missing draws",
                soft_wrap=True,
            )
        _fail(err)


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to a file instead of stdout")] = None,
) -> None:
    """Print the JSON Schema of scenario files."""
    import json

    from critmin.simulate.scenario import scenario_schema

    text = json.dumps(scenario_schema(), indent=2)
    if output is None:
        sys.stdout.write(text + "\n")
    else:
        try:
            output.write_text(text + "\n", encoding="utf-8")
        except OSError as err:
            _fail(CritminError(f"cannot write {output}: {err}"))
        console.print(f"wrote the scenario schema to {output}")


@app.command()
def report(
    targets: Annotated[
        list[str],
        typer.Argument(help="Stored run ids, or built-in scenario names or YAML files (run first and stored)"),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write")] = Path("report.html"),
    mineral: Annotated[list[str] | None, typer.Option("--mineral", "-m", help="Charts for these minerals only")] = None,
    supplier: Annotated[
        str | None, typer.Option(help="Supplier whose dependence the map shows (default: CHN where the world has it)")
    ] = None,
    store: Annotated[Path | None, typer.Option(help="Results store (DuckDB file)")] = None,
) -> None:
    """Write a self-contained HTML report (charts inline, no network needed) of runs or scenarios; two or
    more are compared side by side."""
    try:
        from critmin.report.html import write_report

        t0 = time.perf_counter()
        path = write_report(
            targets,
            output,
            store=store,
            minerals=mineral,
            supplier=supplier,
            on_progress=lambda msg: console.print(f"[dim]{msg}[/]"),
        )
        size = path.stat().st_size / 1e6
        console.print(f"wrote the report to {path} ({size:.1f} MB, {time.perf_counter() - t0:.1f} s)")
    except CritminError as err:
        _fail(err)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; loopback unless told otherwise")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    store: Annotated[Path | None, typer.Option(help="Results store (DuckDB file)")] = None,
    max_draws: Annotated[int, typer.Option(help="Most draws of an ensemble started from the web")] = 500,
    cors_origin: Annotated[
        list[str] | None, typer.Option("--cors-origin", help="Allow cross-origin requests from this origin")
    ] = None,
) -> None:
    """Serve the web application and its HTTP API (OpenAPI spec at /openapi.json, docs at /docs)."""
    try:
        import uvicorn

        from critmin.web.app import Limits, create_app

        application = create_app(store, limits=Limits(max_draws=max_draws), cors_origins=cors_origin)
        if host not in ("127.0.0.1", "localhost", "::1"):
            err_console.print(f"[yellow]note:[/] serving on {host}: anyone who can reach it can start runs")
        console.print(f"critmin serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
        uvicorn.run(application, host=host, port=port, log_level="warning")
    except CritminError as err:
        _fail(err)


def _register_store_commands() -> None:
    from critmin.cli_store import register

    register(app)


_register_store_commands()


def main() -> None:
    """Entry point of the ``critmin`` console command."""
    from critmin.core.threads import limit_blas_threads

    limit_blas_threads()
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
