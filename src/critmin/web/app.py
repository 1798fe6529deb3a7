"""The HTTP API and the web application (``critmin serve``), one FastAPI app.

The API (under ``/api``, OpenAPI spec at ``/openapi.json``, interactive docs at ``/docs``) lists worlds and
scenarios, validates scenarios, starts runs and ensembles in the background, reports progress, serves
results, metrics, downloads and reports, compares runs and lists the results store. The page at ``/`` is a
single-page application (``static/``) that uses only this API; plotly.js and the world topojson are served
by the app, so it works with no network.

Safe by default (see ``docs/web.md``): scenarios are accepted as JSON or YAML text only, never as file
paths (``world`` must be a built-in world, ``extends`` a built-in scenario); request bodies, draws, periods,
instruments and blocs are limited (:class:`Limits`), beyond which the answer is a 4xx naming the limit;
CORS is off unless origins are given; an unexpected error answers 500 with a generic message and is logged
on the server, never sent to the client.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import xarray as xr
import yaml
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

import critmin
from critmin.core.errors import CritminError, DataError
from critmin.report.figures import (
    compare_figures,
    country_regions,
    ensemble_figures,
    headline_records,
    region_countries,
    run_figures,
    world_topojson,
)
from critmin.results.store import Store
from critmin.simulate.scenario import Scenario, builtin_names, scenario_data, scenario_from_dict
from critmin.web.jobs import BusyError, JobManager

log = logging.getLogger("critmin.web")

#: Worlds a request may name (a request never names a folder).
BUILTIN_WORLDS = ("default", "toy")
RUN_ID_PATTERN = r"^r-[0-9]{8}-[0-9]{4}-[0-9a-f]{6}$"
RunId = Annotated[str, PathParam(pattern=RUN_ID_PATTERN, description="A run id, e.g. r-20261126-0810-a1b2c3")]


class Limits(BaseModel):
    """Work and size limits of the API; a request beyond one gets a 4xx that names it."""

    max_body_bytes: int = Field(default=512_000, description="Largest request body")
    max_draws: int = Field(default=500, description="Most draws of an ensemble started from the API")
    max_periods: int = Field(default=80, description="Most periods of a run (years, or quarters)")
    max_instruments: int = Field(default=60, description="Most instruments in a scenario")
    max_blocs: int = Field(default=8, description="Most blocs in a scenario")
    max_bloc_regions: int = Field(default=64, description="Most regions named in one bloc")
    max_active_runs: int = Field(default=2, description="Runs computing at once (beyond: 429)")
    max_compare: int = Field(default=6, description="Most runs in one comparison")


# ------------------------------------------------------------------------------------------------ models


class ScenarioBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scenario: dict[str, Any] = Field(description="A scenario as JSON (the fields of the scenario schema)")


class YamlBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    yaml: str = Field(max_length=400_000, description="A scenario file's text (YAML)")


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scenario: dict[str, Any] = Field(description="The scenario to run, as JSON")
    draws: int | None = Field(default=None, ge=1, description="Draws of an ensemble; none: one deterministic run")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Seed of the ensemble's table of draws")


class FieldError(BaseModel):
    field: str
    reason: str


class Validation(BaseModel):
    valid: bool
    errors: list[FieldError]
    summary: str = ""


class ScenarioInfo(BaseModel):
    name: str
    description: str


class ScenarioDoc(BaseModel):
    name: str
    scenario: dict[str, Any]
    yaml: str


class RegionInfo(BaseModel):
    code: str
    name: str
    kind: str
    countries: list[str]


class WorldInfo(BaseModel):
    name: str
    base_year: int
    horizon: int
    minerals: list[str]
    stages: dict[str, list[str]]
    sectors: list[str]
    regions: list[RegionInfo]


class RunStarted(BaseModel):
    run_id: str
    kind: str
    status_url: str


class RunStatus(BaseModel):
    run_id: str
    kind: str
    scenario: str
    status: str
    draws: int
    done: int
    created: str
    wall_time_s: float
    error: str | None = None


class YamlText(BaseModel):
    yaml: str


class ScenarioOut(BaseModel):
    scenario: dict[str, Any]


# ------------------------------------------------------------------------------------------------ helpers


def _problem(status: int, detail: Any) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def _field_error(err: CritminError) -> FieldError:
    if isinstance(err, DataError):
        return FieldError(field=err.field, reason=err.reason)
    return FieldError(field="(scenario)", reason=str(err))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Api:
    """State of one app: the store, the job manager, limits and small caches of loaded results."""

    def __init__(self, store: Store, limits: Limits) -> None:
        self.store = store
        self.limits = limits
        self.jobs = JobManager(store, max_active=limits.max_active_runs)
        self._cubes: OrderedDict[str, xr.Dataset] = OrderedDict()
        self._metrics: OrderedDict[str, pd.DataFrame] = OrderedDict()
        self._worlds: dict[str, WorldInfo] = {}

    # -- worlds and scenarios ----------------------------------------------------------------------------

    def world(self, name: str) -> WorldInfo:
        if name not in BUILTIN_WORLDS:
            raise _problem(404, f"no built-in world {name!r}; built-in: {', '.join(BUILTIN_WORLDS)}")
        if name not in self._worlds:
            from critmin.simulate.run import resolve_world

            w = resolve_world(name)
            drawn = country_regions(region_countries(w.region_table))  # ROW gets every other country
            countries: dict[str, list[str]] = {}
            for country, region in sorted(drawn.items()):
                countries.setdefault(region, []).append(country)
            table = w.region_table.set_index("code")
            self._worlds[name] = WorldInfo(
                name=name,
                base_year=int(w.base_year),
                horizon=int(w.horizon),
                minerals=list(w.minerals),
                stages={m: list(w.stages_of(m)) for m in w.minerals},
                sectors=list(w.sectors),
                regions=[
                    RegionInfo(
                        code=code,
                        name=str(table.loc[code, "name"]),
                        kind=str(table.loc[code, "kind"]),
                        countries=countries.get(code, []),
                    )
                    for code in w.regions
                ],
            )
        return self._worlds[name]

    def check(self, data: Any, file: str = "request") -> Scenario:
        """Validate a scenario from a request: schema, request limits, then against its world."""
        from critmin.simulate.run import check_scenario, resolve_world

        if isinstance(data, dict) and "extends" in data:
            raise DataError(file, "extends", "not accepted here: import the YAML file (extends built-in names only)")
        spec = scenario_from_dict(data, file=file)
        lim = self.limits
        if spec.world not in BUILTIN_WORLDS:
            raise DataError(file, "world", f"must be a built-in world ({', '.join(BUILTIN_WORLDS)}); no paths")
        if len(spec.instruments) > lim.max_instruments:
            raise DataError(
                file, "instruments", f"{len(spec.instruments)} instruments; the limit is {lim.max_instruments}"
            )
        if len(spec.blocs) > lim.max_blocs:
            raise DataError(file, "blocs", f"{len(spec.blocs)} blocs; the limit is {lim.max_blocs}")
        for name, bloc in spec.blocs.items():
            named = len(bloc.members) + len(bloc.joins) + len(bloc.leaves)
            if named > lim.max_bloc_regions:
                raise DataError(file, f"blocs.{name}", f"names {named} regions; the limit is {lim.max_bloc_regions}")
        world = resolve_world(spec.world)
        start = spec.start if spec.start is not None else int(world.base_year)
        end = spec.end if spec.end is not None else int(world.horizon)
        periods = (end - start + 1) * (4 if spec.period == "quarter" else 1)
        if periods > lim.max_periods:
            raise DataError(file, "end", f"{periods} periods; the limit is {lim.max_periods}")
        check_scenario(spec, world, file=file)
        return spec

    def import_yaml(self, text: str) -> Scenario:
        """A scenario from a file's text; ``extends`` may name built-in scenarios only."""
        from critmin.simulate.scenario import scenario_data_from_text

        return self.check(scenario_data_from_text(text, file="uploaded YAML", files=False), file="uploaded YAML")

    # -- runs --------------------------------------------------------------------------------------------

    def status(self, run_id: str) -> RunStatus:
        try:
            info = self.store.get_run(run_id)
        except CritminError:
            raise _problem(404, f"no run {run_id}") from None
        return self.run_status(
            str(info["id"]),
            kind=info["kind"],
            scenario=info["scenario_name"],
            status=info["status"],
            draws=info["n_draws"],
            done=info["done"],
            created=info["created"],
            wall_time_s=info["wall_time_s"],
        )

    def run_status(self, run_id: str, **row: Any) -> RunStatus:
        """A run's status from its store row, with this server's view: progress and error of a run it is
        computing, and ``interrupted`` for a run left ``running`` by a server that is gone (resume it with
        ``critmin ensemble --resume``)."""
        job = self.jobs.get(run_id)
        status = str(row["status"])
        if status == "running" and job is None:
            status = "interrupted"
        return RunStatus(
            run_id=run_id,
            kind=str(row["kind"]),
            scenario=str(row["scenario"]),
            status=status,
            draws=int(row["draws"]),
            done=int(job.done) if job is not None and status == "running" else int(row["done"]),
            created=str(row["created"]),
            wall_time_s=float(row["wall_time_s"] or 0.0),
            error=job.error if job is not None else None,
        )

    def complete(self, run_id: str) -> RunStatus:
        st = self.status(run_id)
        if st.status != "complete":
            raise _problem(409, f"run {run_id} is {st.status}; results exist only for complete runs")
        return st

    def cube(self, run_id: str) -> xr.Dataset:
        if run_id not in self._cubes:
            self._cubes[run_id] = self.store.load_cube(run_id).isel(draw=0, drop=True)
            while len(self._cubes) > 6:
                self._cubes.popitem(last=False)
        return self._cubes[run_id]

    def metrics(self, run_id: str) -> pd.DataFrame:
        if run_id not in self._metrics:
            self._metrics[run_id] = self.store.load_metrics(run_id)
            while len(self._metrics) > 6:
                self._metrics.popitem(last=False)
        return self._metrics[run_id]

    def scenario_of(self, run_id: str) -> Scenario:
        info = self.store.get_run(run_id)
        return scenario_from_dict(yaml.safe_load(info["scenario_yaml"]), file=f"run {run_id}")


# ------------------------------------------------------------------------------------------------ the app


def create_app(
    store: str | Path | Store | None = None,
    *,
    limits: Limits | None = None,
    cors_origins: list[str] | None = None,
) -> FastAPI:
    """The FastAPI app: the API under ``/api`` and the web application at ``/``."""
    db = store if isinstance(store, Store) else Store(store)
    api = Api(db, limits or Limits())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        api.jobs.shutdown()

    app = FastAPI(
        lifespan=lifespan,
        title="critmin",
        version=critmin.__version__,
        description="Simulate the world market for critical minerals and the policies that reshape it.",
    )
    app.state.api = api
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST"])

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return JSONResponse({"detail": "invalid Content-Length"}, status_code=400)
            if int(length) > api.limits.max_body_bytes:
                return JSONResponse(
                    {"detail": f"request body of {length} bytes; the limit is {api.limits.max_body_bytes}"},
                    status_code=413,
                )
        elif request.method == "POST":
            body = await request.body()
            if len(body) > api.limits.max_body_bytes:
                return JSONResponse(
                    {"detail": f"request body above the limit of {api.limits.max_body_bytes} bytes"}, status_code=413
                )
        return await call_next(request)

    @app.exception_handler(CritminError)
    async def critmin_error(request: Request, exc: CritminError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(x) for x in e.get("loc", ())), "reason": str(e.get("msg", ""))} for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)

    # -- API: reference ----------------------------------------------------------------------------------

    @app.get("/api/health", tags=["reference"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": critmin.__version__}

    @app.get("/api/limits", tags=["reference"])
    def get_limits() -> Limits:
        return api.limits

    @app.get("/api/worlds", tags=["reference"])
    def worlds() -> list[WorldInfo]:
        return [api.world(name) for name in BUILTIN_WORLDS]

    @app.get("/api/worlds/{name}", tags=["reference"])
    def world(name: Annotated[str, PathParam(max_length=40)]) -> WorldInfo:
        return api.world(name)

    @app.get("/api/scenarios", tags=["scenarios"])
    def scenarios() -> list[ScenarioInfo]:
        from critmin.simulate.scenario import load_scenario

        out = []
        for name in builtin_names():
            spec = load_scenario(name)
            out.append(ScenarioInfo(name=name, description=spec.description))
        return out

    @app.get("/api/scenarios/{name}", tags=["scenarios"])
    def scenario(name: Annotated[str, PathParam(max_length=80)]) -> ScenarioDoc:
        from critmin.simulate.scenario import load_scenario

        if name not in builtin_names():
            raise _problem(404, f"no built-in scenario {name!r}")
        spec = load_scenario(name)
        data = scenario_data(spec)
        return ScenarioDoc(name=name, scenario=data, yaml=yaml.safe_dump(data, sort_keys=False, allow_unicode=True))

    @app.get("/api/schema", tags=["scenarios"])
    def schema() -> dict[str, Any]:
        from critmin.simulate.scenario import scenario_schema

        return scenario_schema()

    @app.post("/api/validate", tags=["scenarios"])
    def validate(body: ScenarioBody) -> Validation:
        from critmin.results.ensemble import check_uncertainty

        try:
            spec = api.check(body.scenario)
            check_uncertainty(spec, file="request")
        except CritminError as err:
            return Validation(valid=False, errors=[_field_error(err)])
        kinds: dict[str, int] = {}
        for inst in spec.instruments:
            kinds[inst.kind] = kinds.get(inst.kind, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no instruments"
        return Validation(
            valid=True, errors=[], summary=f"{spec.name}: blocs {', '.join(spec.blocs) or 'none'}; {summary}"
        )

    @app.post("/api/yaml/export", tags=["scenarios"])
    def export_yaml(body: ScenarioBody) -> YamlText:
        spec = api.check(body.scenario)
        data = scenario_data(spec)
        return YamlText(yaml=yaml.safe_dump(data, sort_keys=False, allow_unicode=True))

    @app.post("/api/yaml/import", tags=["scenarios"])
    def import_yaml(body: YamlBody) -> ScenarioOut:
        spec = api.import_yaml(body.yaml)
        return ScenarioOut(scenario=scenario_data(spec))

    # -- API: runs ---------------------------------------------------------------------------------------

    @app.post("/api/runs", status_code=202, tags=["runs"])
    def start_run(body: RunRequest) -> RunStarted:
        spec = api.check(body.scenario)
        if body.draws is not None and body.draws > api.limits.max_draws:
            raise _problem(
                422, [{"field": "draws", "reason": f"{body.draws} draws; the limit is {api.limits.max_draws}"}]
            )
        try:
            job = api.jobs.submit(spec, body.draws, body.seed)
        except BusyError as err:
            raise _problem(429, str(err)) from None
        return RunStarted(run_id=job.run_id, kind=job.kind, status_url=f"/api/runs/{job.run_id}")

    @app.get("/api/runs", tags=["runs"])
    def list_runs(limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[RunStatus]:
        table = api.store.list_runs().head(limit)
        rows = [{str(k): v for k, v in row.items()} for row in table.to_dict(orient="records")]
        return [api.run_status(str(row.pop("id")), **row) for row in rows]

    @app.get("/api/runs/{run_id}", tags=["runs"])
    def run_status(run_id: RunId) -> RunStatus:
        return api.status(run_id)

    @app.get("/api/runs/{run_id}/scenario", tags=["runs"])
    def run_scenario_doc(run_id: RunId) -> ScenarioDoc:
        api.status(run_id)
        spec = api.scenario_of(run_id)
        data = scenario_data(spec)
        return ScenarioDoc(
            name=spec.name, scenario=data, yaml=yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        )

    @app.get("/api/runs/{run_id}/view", tags=["results"])
    def run_view(
        run_id: RunId,
        mineral: Annotated[str | None, Query(max_length=40)] = None,
        supplier: Annotated[str, Query(max_length=40)] = "CHN",
        period: Annotated[str | None, Query(max_length=12)] = None,
    ) -> dict[str, Any]:
        """Everything the run page draws: selectors, chart specs (Plotly) and the headline table."""
        st = api.complete(run_id)
        spec = api.scenario_of(run_id)
        if st.kind == "single":
            ds = api.cube(run_id)
            minerals = [str(m) for m in ds["mineral"].values]
            periods = [str(p) for p in ds["period"].values]
            regions = [str(r) for r in ds["region"].values]
            blocs = [str(b) for b in ds["bloc"].values] if "bloc" in ds.dims else []
            mineral = mineral or minerals[0]
            if mineral not in minerals:
                raise _problem(422, f"mineral {mineral!r} is not in the run; it has {', '.join(minerals)}")
            if supplier not in regions + blocs:
                raise _problem(422, f"supplier {supplier!r} is not a region or bloc of the run")
            if period is not None and period not in periods:
                raise _problem(422, f"period {period!r} is not in the run ({periods[0]}-{periods[-1]})")
            from critmin.metrics import headline

            countries = {r.code: r.countries for r in api.world(spec.world).regions}
            figures = run_figures(ds, countries, mineral=mineral, supplier=supplier, period=period)
            table = headline(ds)
            return {
                "run": st.model_dump(),
                "kind": "single",
                "minerals": minerals,
                "periods": periods,
                "suppliers": regions + blocs,
                "mineral": mineral,
                "supplier": supplier,
                "period": period or periods[-1],
                "figures": figures,
                "headline": headline_records(table[table["mineral"].isin([mineral, "all"])]),
            }
        metrics = api.metrics(run_id)
        minerals = list(dict.fromkeys(metrics["mineral"].astype(str)))
        mineral = mineral or minerals[0]
        if mineral not in minerals:
            raise _problem(422, f"mineral {mineral!r} is not in the run; it has {', '.join(minerals)}")
        from critmin.report.html import ensemble_rows

        rows = ensemble_rows(api.store.load_draws(run_id), metrics, mineral)
        return {
            "run": st.model_dump(),
            "kind": "ensemble",
            "minerals": minerals,
            "mineral": mineral,
            "figures": ensemble_figures(metrics, mineral),
            "risk": rows,
        }

    @app.get("/api/runs/{run_id}/metrics", tags=["results"])
    def run_metrics(run_id: RunId) -> list[dict[str, Any]]:
        """Headline metrics of a single run; per-draw headline metrics of an ensemble (long table)."""
        st = api.complete(run_id)
        if st.kind == "single":
            from critmin.metrics import headline

            return headline_records(headline(api.cube(run_id)))
        return headline_records(api.metrics(run_id))

    @app.get("/api/runs/{run_id}/results", tags=["results"])
    def run_results(
        run_id: RunId,
        variable: Annotated[str, Query(max_length=40)] = "price",
        mineral: Annotated[str | None, Query(max_length=40)] = None,
    ) -> dict[str, Any]:
        """One variable of a single run as JSON: dims, coords and nested values (NaN as null)."""
        st = api.complete(run_id)
        if st.kind != "single":
            raise _problem(422, "results by variable exist for single runs; use /export for an ensemble's cube")
        ds = api.cube(run_id)
        if variable not in ds.data_vars:
            raise _problem(422, f"no variable {variable!r}; variables: {', '.join(map(str, ds.data_vars))}")
        da = ds[variable]
        if mineral is not None:
            if "mineral" not in da.dims or mineral not in da["mineral"].values:
                raise _problem(422, f"no mineral {mineral!r} in {variable}")
            da = da.sel(mineral=[mineral])
        values = da.astype(float).where(da.notnull()).values.tolist()

        def clean(v: Any) -> Any:
            return [clean(x) for x in v] if isinstance(v, list) else _jsonable(v)

        return {
            "variable": variable,
            "unit": str(da.attrs.get("unit", "")),
            "dims": list(da.dims),
            "coords": {d: [str(x) for x in da[d].values] for d in da.dims},
            "values": clean(values),
        }

    @app.get("/api/runs/{run_id}/export", tags=["results"])
    def run_export(run_id: RunId, format: Literal["csv", "parquet"] = "csv") -> FileResponse:
        """The run's tidy long table (CSV or Parquet), as a download."""
        api.complete(run_id)
        tmp = Path(tempfile.mkdtemp(prefix="critmin-export-"))
        try:
            api.store.export(run_id, format, tmp / "export")
        except BaseException:
            _remove_tree(tmp)
            raise
        target = tmp / "export" / f"cube.{format}"
        media = "text/csv" if format == "csv" else "application/vnd.apache.parquet"
        return FileResponse(
            target,
            media_type=media,
            filename=f"{run_id}.{format}",
            background=BackgroundTask(_remove_tree, tmp),
        )

    @app.get("/api/runs/{run_id}/report", tags=["results"], response_class=HTMLResponse)
    def run_report(run_id: RunId, compare: Annotated[list[str] | None, Query(max_length=6)] = None) -> HTMLResponse:
        """A self-contained HTML report of the run (and of the runs in ``compare``, side by side)."""
        from critmin.report.html import build_report, load_run

        ids = [run_id, *(compare or [])]
        for rid in ids:
            if not _valid_id(rid):
                raise _problem(422, f"not a run id: {rid!r}")
            api.complete(rid)
        html = build_report([load_run(rid, api.store) for rid in ids])
        return HTMLResponse(html, headers={"Content-Disposition": f'attachment; filename="critmin-{run_id}.html"'})

    @app.get("/api/compare", tags=["results"])
    def compare(
        runs: Annotated[list[str], Query(min_length=2, max_length=6)],
        mineral: Annotated[str | None, Query(max_length=40)] = None,
        group: Annotated[str, Query(max_length=40)] = "world",
    ) -> dict[str, Any]:
        """Headline metrics of two or more single runs side by side (differences from the first) and their
        price and shortfall paths on one chart."""
        from critmin.report.html import ReportRun, _headline_rows

        if len(runs) > api.limits.max_compare:
            raise _problem(422, f"{len(runs)} runs; the limit is {api.limits.max_compare}")
        if len(set(runs)) != len(runs):
            raise _problem(422, "a run is named twice")
        items = []
        for rid in runs:
            if not _valid_id(rid):
                raise _problem(422, f"not a run id: {rid!r}")
            st = api.complete(rid)
            if st.kind != "single":
                raise _problem(422, f"run {rid} is an ensemble; compare single runs")
            items.append(
                ReportRun(label=f"{st.scenario} ({rid})", scenario=api.scenario_of(rid), run_id=rid, ds=api.cube(rid))
            )
        cubes = [api.cube(str(it.run_id)) for it in items]
        shared = [
            m for m in (str(x) for x in cubes[0]["mineral"].values) if all(m in c["mineral"].values for c in cubes)
        ]
        if not shared:
            raise _problem(422, "the runs share no mineral")
        mineral = mineral or shared[0]
        if mineral not in shared:
            raise _problem(422, f"mineral {mineral!r} is not in every run; shared: {', '.join(shared)}")
        labels, rows, note = _headline_rows(items)
        figures = compare_figures({it.label: c for it, c in zip(items, cubes, strict=True)}, mineral, group)
        return {
            "labels": labels,
            "minerals": shared,
            "mineral": mineral,
            "rows": rows,
            "figures": figures,
            "note": note,
        }

    # -- the web application -----------------------------------------------------------------------------

    static = resources.files("critmin.web").joinpath("static")
    index_html = static.joinpath("index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(index_html)

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_bundle() -> Response:
        from critmin.report.html import plotly_js

        return Response(plotly_js(), media_type="application/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/vendor/topojson/world_110m.json", include_in_schema=False)
    def topojson() -> Response:
        return Response(world_topojson(), media_type="application/json", headers={"Cache-Control": "max-age=86400"})

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    return app


def _valid_id(run_id: str) -> bool:
    import re

    return re.fullmatch(RUN_ID_PATTERN, run_id) is not None


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
