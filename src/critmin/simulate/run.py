"""A run over periods: build each period's problems, apply the instruments, solve, settle, carry state.

Per period and mineral (minerals clear independently, a documented simplification of DESIGN §5):

1. reference demand = base-year consumption x the reference demand index x (1 - long-run destruction);
2. every instrument covering the mineral writes its effect for the period (in ``APPLY_ORDER``);
3. the period problem is solved (warm-started from the mineral's previous period); instruments whose
   effect depends on the equilibrium (reference-price levy, budget caps) refine it and the problem is solved
   again until none moves (a fixed point, at most ``dynamics.fixed_point_iterations`` rounds);
4. instruments settle (payments, revenues, stocks); expectations and long-run demand adjust.

Long-run demand adjustment: with short-run elasticity ``e_s`` and long-run ``e_l`` (``|e_l| >= |e_s|``),
a price ``p`` held against the base price ``p0`` would in the long run remove the share
``D* = clip(1 - (p / p0) ** (e_l - e_s), 0, max_destruction)`` of reference demand beyond the short-run
response; the destroyed share moves toward ``D*`` by ``1 - 0.5 ** (years / half_life)`` each period, so it
builds while prices stay high and fades when they fall.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from critmin.core.arrays import FloatArray, IntArray
from critmin.core.errors import ScenarioError, SolveError
from critmin.data.calibrate import CalibratedMineral, calibrate
from critmin.market.build import MarketLayout, build_instances, read_outcomes, topology_with_yields
from critmin.market.problem import BatchProblem, Solution, Topology
from critmin.market.solvers import Solver, get_solver
from critmin.policy import APPLY_ORDER
from critmin.policy.base import (
    Instrument,
    Ledger,
    MineralContext,
    PeriodContext,
    full_inputs_batch,
    period_years,
)
from critmin.policy.blocs import midpoint
from critmin.policy.effects import (
    ConstraintSpec,
    MineralOutcome,
    PeriodInputs,
    SegmentSpec,
    batch_rows,
    rows_in_order,
    stack_outcomes,
)
from critmin.policy.reserve import Reserve
from critmin.simulate.scenario import Scenario

if TYPE_CHECKING:
    from critmin.data.world import World


def resolve_world(spec: str) -> World:
    """The world a scenario names: ``default``, ``toy`` (bundled) or a folder path."""
    from critmin.data.world import load_world

    if spec == "default":
        return load_world()
    if spec == "toy":
        return load_world(Path(str(resources.files("critmin.data").joinpath("worlds", "toy"))))
    return load_world(Path(spec))


@dataclass
class MineralPath:
    """One mineral's outcome over the periods of a run (engine units), stacked on a leading period axis."""

    mineral: str
    stages: tuple[str, ...]
    price: FloatArray  # (P, S, R)
    origin_price: FloatArray  # (P, S, R)
    production: FloatArray  # (P, S, R)
    processing_input: FloatArray  # (P, S, R) input of processors (0 at stage 0)
    disposal: FloatArray  # (P, S, R) product disposed of at a zero price
    capacity: FloatArray  # (P, S, R)
    flow: FloatArray  # (P, S, R, R)
    consumption: FloatArray  # (P, R, K)
    reference_demand: FloatArray  # (P, R, K)
    iterations: IntArray  # (P,)
    residual: FloatArray  # (P,) worst relative residual
    fixed_point_rounds: IntArray  # (P,) solves needed by price-dependent policies
    ledger: list[dict[tuple[str, str, str, str, str], float]] = field(default_factory=list)


@dataclass
class RunRecord:
    """Everything a run produced, before labelling (``critmin.results`` turns it into a Dataset)."""

    scenario: Scenario
    world_name: str
    base_year: int
    periods: tuple[PeriodLabel, ...]
    regions: tuple[str, ...]
    sectors: tuple[str, ...]
    sector_stage: dict[str, tuple[str, ...]]
    minerals: dict[str, MineralPath]
    solver: str
    blocs: dict[str, list[list[bool]]] = field(default_factory=dict)  # bloc -> period -> region
    wall_time_s: float = 0.0
    solve_time_s: float = 0.0
    notes: list[str] = field(default_factory=list)


PeriodLabel = int | str


def period_dates(label: PeriodLabel) -> tuple[dt.date, dt.date]:
    """A period ``2025`` is the calendar year; ``"2025-Q2"`` is the quarter ``[1 April, 1 July)``."""
    if isinstance(label, int):
        return dt.date(label, 1, 1), dt.date(label + 1, 1, 1)
    year, quarter = int(label[:4]), int(label[-1])
    start = dt.date(year, 3 * (quarter - 1) + 1, 1)
    end = dt.date(year + 1, 1, 1) if quarter == 4 else dt.date(year, 3 * quarter + 1, 1)
    return start, end


def period_year(label: PeriodLabel) -> int:
    return label if isinstance(label, int) else int(label[:4])


def make_periods(start: int, end: int, length: str = "year") -> tuple[PeriodLabel, ...]:
    """Period labels from year ``start`` to year ``end`` inclusive: years, or quarters ``"2025-Q1"``."""
    if length == "year":
        return tuple(range(start, end + 1))
    return tuple(f"{y}-Q{q}" for y in range(start, end + 1) for q in (1, 2, 3, 4))


def _periods(scenario: Scenario, world: World) -> tuple[PeriodLabel, ...]:
    start = world.base_year if scenario.start is None else scenario.start
    end = world.horizon if scenario.end is None else scenario.end
    if start < world.base_year or end > world.horizon:
        raise ScenarioError(
            *scenario.locate(None, "start" if start < world.base_year else "end"),
            f"periods must lie within the world's {world.base_year}-{world.horizon}",
        )
    return make_periods(start, end, scenario.period)


def instrument_ids(scenario: Scenario) -> list[str]:
    """A unique id per instrument: its name, or kind and position."""
    ids = []
    for i, inst in enumerate(scenario.instruments):
        ids.append(inst.name or f"{inst.kind}{i}")
    dup = {x for x in ids if ids.count(x) > 1}
    if dup:
        raise ScenarioError(*scenario.locate(None, "instruments"), f"instrument names must be unique: {', '.join(dup)}")
    return ids


def check_scenario(scenario: Scenario, world: World, file: str | None = None) -> None:
    """Check that every region, bloc, mineral and stage a scenario names exists; raise ScenarioError."""
    file = file or scenario.locate(None, "")[0]
    regions = list(world.regions)
    stages = {m: tuple(world.mineral(m).stages) for m in world.minerals}
    for name, bloc in scenario.blocs.items():
        if name in regions:
            raise ScenarioError(file, f"blocs.{name}", "a bloc cannot have the name of a region")
        for r in sorted(bloc.all_regions()):
            if r not in regions:
                raise ScenarioError(
                    file, f"blocs.{name}", f"unknown region {r!r}; the world's regions: {', '.join(regions)}"
                )
    if scenario.minerals is not None:
        for m in scenario.minerals:
            if m not in stages:
                raise ScenarioError(file, "minerals", f"unknown mineral {m!r}; known: {', '.join(stages)}")
    instrument_ids(scenario)
    for i, inst in enumerate(scenario.instruments):
        problem = inst.check(regions, scenario.blocs, stages)
        if problem is not None:
            raise ScenarioError(*scenario.locate(file, f"instruments.{i}.{problem[0]}"), problem[1])
        for fname in ("buyer", "seller", "region", "location", "payer"):
            value = getattr(inst, fname, None)
            if isinstance(value, str) and value not in regions and fname != "payer":
                raise ScenarioError(
                    *scenario.locate(file, f"instruments.{i}.{fname}"), f"{value!r} is not a region of the world"
                )
        projects = getattr(inst, "projects", None)
        if projects:
            for j, p in enumerate(projects):
                if p.mineral not in stages:
                    raise ScenarioError(
                        *scenario.locate(file, f"instruments.{i}.projects.{j}.mineral"),
                        f"unknown mineral {p.mineral!r}",
                    )
                if p.stage not in stages[p.mineral]:
                    raise ScenarioError(
                        *scenario.locate(file, f"instruments.{i}.projects.{j}.stage"),
                        f"{p.mineral} has no stage {p.stage!r}",
                    )
                if p.region not in regions:
                    raise ScenarioError(
                        *scenario.locate(file, f"instruments.{i}.projects.{j}.region"), f"unknown region {p.region!r}"
                    )


@dataclass
class _MineralRun:
    cal: CalibratedMineral
    instruments: list[tuple[str, Instrument, MineralContext]]
    layout: MarketLayout
    topology: Topology
    segment_index: dict[str, int]
    constraint_index: dict[str, int]
    state: dict[str, Any]
    destruction: FloatArray
    expected: FloatArray
    previous: MineralOutcome | None = None
    warm: FloatArray | None = None
    warm_rents: FloatArray | None = None
    outcomes: list[MineralOutcome] = field(default_factory=list)
    capacity: list[FloatArray] = field(default_factory=list)
    demand: list[FloatArray] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)
    residual: list[float] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    ledgers: list[dict[tuple[str, str, str, str, str], float]] = field(default_factory=list)


#: Layouts and their topologies by structure (see :func:`_layout`), oldest first.
_LAYOUTS: OrderedDict[tuple[Any, ...], tuple[MarketLayout, Topology]] = OrderedDict()
#: How many layouts :data:`_LAYOUTS` keeps.
_LAYOUTS_SIZE = 256
#: Guards :data:`_LAYOUTS` (runs may share a process across threads).
_LAYOUTS_LOCK = threading.Lock()


def _layout(
    cal: CalibratedMineral, segments: list[SegmentSpec], constraints: list[ConstraintSpec]
) -> tuple[MarketLayout, Topology]:
    """A mineral's layout and topology, built once per structure and reused by later runs and draws.

    Both depend only on the mineral's stages, regions, sectors and yields and on the instruments' segments
    and constraints, which are the same in every run of a scenario and every draw of an ensemble.
    """
    key = (
        cal.stages,
        cal.regions,
        cal.sectors,
        cal.sector_stage,
        np.asarray(cal.yields, dtype=np.float64).tobytes(),
        tuple(segments),
        tuple(constraints),
    )
    try:
        hash(key)
    except TypeError:  # a structure with an unhashable part: build it afresh
        layout = MarketLayout.for_mineral(cal, segments, constraints)
        return layout, topology_with_yields(layout, [cal])
    with _LAYOUTS_LOCK:
        hit = _LAYOUTS.get(key)
        if hit is not None:
            _LAYOUTS.move_to_end(key)
            return hit
    layout = MarketLayout.for_mineral(cal, segments, constraints)
    built = (layout, topology_with_yields(layout, [cal]))
    with _LAYOUTS_LOCK:
        _LAYOUTS[key] = built
        while len(_LAYOUTS) > _LAYOUTS_SIZE:
            _LAYOUTS.popitem(last=False)
    return built


def clear_caches() -> None:
    """Forget the layouts kept between runs (for benchmarks of a first run)."""
    with _LAYOUTS_LOCK:
        _LAYOUTS.clear()


def _setup_mineral(scenario: Scenario, cal: CalibratedMineral, ids: list[str]) -> _MineralRun:
    order = sorted(range(len(scenario.instruments)), key=lambda i: APPLY_ORDER[scenario.instruments[i].kind])
    chosen: list[tuple[str, Instrument, MineralContext]] = []
    segments = []
    constraints = []
    for i in order:
        inst = scenario.instruments[i]
        if not inst.covers(cal.mineral):
            continue
        mctx = MineralContext(cal=cal, blocs=scenario.blocs, instrument_id=ids[i])
        try:
            segs, cons = inst.structure(mctx)
        except (ValueError, KeyError) as err:
            raise ScenarioError(*scenario.locate(None, f"instruments.{i}"), str(err)) from None
        segments.extend(segs)
        constraints.extend(cons)
        chosen.append((ids[i], inst, mctx))
    layout, topology = _layout(cal, segments, constraints)
    return _MineralRun(
        cal=cal,
        instruments=chosen,
        layout=layout,
        topology=topology,
        segment_index={s.name: i for i, s in enumerate(layout.segments)},
        constraint_index={c.name: i for i, c in enumerate(layout.constraints)},
        state={},
        destruction=np.zeros_like(cal.base_consumption),
        expected=cal.base_price.copy(),
        warm=_calibrated_prices(layout, cal),
    )


def _calibrated_prices(layout: MarketLayout, cal: CalibratedMineral) -> FloatArray:
    """The base year's calibrated node prices, in the topology's node order: the first period's start.

    The first period is the base year (with whatever instruments are already in force), whose equilibrium
    the calibration reproduces, so these prices are its solution or close to it.
    """
    prices = np.empty(2 * cal.base_price.size)
    prices[layout.origin_node] = cal.base_origin_price
    prices[layout.use_node] = cal.base_price
    return prices


def _reserve_weights(scenario: Scenario, runs: dict[str, _MineralRun], ids: list[str]) -> dict[str, dict[str, float]]:
    """Split of each reserve's budget across the minerals it covers (by target value at base prices)."""
    out: dict[str, dict[str, float]] = {}
    for i, inst in enumerate(scenario.instruments):
        if not isinstance(inst, Reserve) or inst.budget is None:
            continue
        values = {}
        for m, run in runs.items():
            for iid, other, mctx in run.instruments:
                if iid == ids[i] and isinstance(other, Reserve):
                    s = other._stage(mctx)
                    target = other.target(mctx)
                    price = float(run.cal.base_price[s].max())
                    values[m] = target * price if np.isfinite(target) else 1.0
        total = sum(values.values())
        if total > 0:
            out[ids[i]] = {m: v / total for m, v in values.items()}
    return out


def _period(
    scenarios: list[Scenario],
    runs: dict[str, list[_MineralRun]],
    year: PeriodLabel,
    solver: Solver,
    draws: Sequence[int] | None = None,
) -> float:
    """One period of every mineral, each a batch of draws sharing a topology; returns the time spent solving.

    The minerals' problems are solved together (``solver.solve_many``: the engine spreads them over its
    threads), round by round: each mineral's step runs until it needs a solve, and goes on with its
    solution. A mineral's instruments see only that mineral (their state is per mineral), so each gets
    what it would get alone.
    """
    steps = {m: _step(scenarios, mineral_runs, year, draws) for m, mineral_runs in runs.items()}
    pending = {m: next(step) for m, step in steps.items()}
    solve_time = 0.0
    while pending:
        t0 = time.perf_counter()
        solutions = solver.solve_many(list(pending.values()))
        solve_time += time.perf_counter() - t0
        asked = {}
        for (m, _), solution in zip(pending.items(), solutions, strict=True):
            try:
                asked[m] = steps[m].send(solution)
            except StopIteration:
                pass
        pending = asked
    return solve_time


def _step(
    scenarios: list[Scenario],
    runs: list[_MineralRun],
    year: PeriodLabel,
    draws: Sequence[int] | None = None,
) -> Generator[BatchProblem, Solution, None]:
    """One period of one mineral for a batch of draws sharing a topology: yields each batch it needs solved
    (the first, then one per round while price-dependent instruments settle) and receives its solution."""
    start, end = period_dates(year)
    contexts: list[PeriodContext] = []
    shared: dict[Any, Any] = {}  # what instruments build alike for every draw of this batch
    layout = runs[0].layout
    batch_inputs = full_inputs_batch([run.cal for run in runs], len(layout.segments), len(layout.constraints))
    for scenario, run, inputs in zip(scenarios, runs, batch_inputs, strict=True):
        cal = run.cal
        idx = cal.years.index(period_year(year))
        assert inputs.demand_scale is not None
        inputs.demand_scale[:] = cal.demand_index[idx] * (1.0 - run.destruction)
        run.state["__floors__"] = {}
        pctx = PeriodContext(
            mineral=run.instruments[0][2] if run.instruments else MineralContext(cal=cal, blocs=scenario.blocs),
            period=year,
            start=start,
            end=end,
            inputs=inputs,
            previous=run.previous,
            state=run.state,
            segment_index=run.segment_index,
            constraint_index=run.constraint_index,
            ledger=Ledger(),
            expected_price=run.expected,
            shared=shared,
        )
        contexts.append(pctx)
    # each instrument acts on every draw before the next instrument (the draws are independent, so each
    # draw sees its instruments in their order, as a single run does)
    kinds = [(iid, type(inst)) for iid, inst, _ in runs[0].instruments]
    uniform = all([(iid, type(inst)) for iid, inst, _ in run.instruments] == kinds for run in runs[1:])
    if uniform:
        for position, (_, kind) in enumerate(kinds):
            group = [run.instruments[position] for run in runs]
            for (iid, _, mctx), pctx in zip(group, contexts, strict=True):
                pctx.mineral = mctx
                pctx.instrument_id = iid
            kind.apply_batch([inst for _, inst, _ in group], contexts)
    else:  # draws with different instruments (one covers a mineral only in some draws): one draw at a time
        for run, pctx in zip(runs, contexts, strict=True):
            for iid, inst, mctx in run.instruments:
                pctx.mineral = mctx
                pctx.instrument_id = iid
                inst.apply(pctx)
    first = runs[0]
    mineral = first.cal.mineral
    ids = list(draws) if draws is not None else list(range(len(runs)))
    labels = [f"{mineral} {year}" + (f" draw {d}" if draws is not None or len(runs) > 1 else "") for d in ids]
    B = len(runs)
    warms = [r.warm for r in runs if r.warm is not None]
    warm = np.stack(warms) if len(warms) == B else None
    rents = [r.warm_rents for r in runs if r.warm_rents is not None]
    warm_rents = np.stack(rents) if warm is not None and len(rents) == B else None
    # Price-dependent instruments (floors with levies or budgets) settle by re-solving; a draw whose
    # instruments have settled is not solved again while the others go on.
    active = np.arange(B)
    outcomes: list[MineralOutcome] = [None] * B  # type: ignore[list-item]
    price = rent = wprice = wrent = None
    iterations = np.zeros(B, dtype=np.int64)
    worst = np.zeros(B)
    rounds = np.zeros(B, dtype=np.int64)
    while True:
        for k in active:
            inputs = contexts[k].inputs
            assert inputs.route_lower is not None and inputs.route_upper is not None
            # an export ban overrides a contract on the same route (force majeure)
            np.minimum(inputs.route_lower, inputs.route_upper, out=inputs.route_lower)
        data = build_instances(
            first.layout,
            [runs[k].cal for k in active],
            [contexts[k].inputs for k in active],
            [labels[k] for k in active],
        )
        solution = yield BatchProblem(
            first.topology,
            data,
            warm_start=None if warm is None else warm[active],
            warm_rents=None if warm_rents is None else warm_rents[active],
        )
        if price is None or rent is None or wprice is None or wrent is None:
            price = np.empty((B, solution.price.shape[1]))
            rent = np.empty((B, solution.rent.shape[1]))
            wprice = np.empty_like(price)
            wrent = np.empty_like(rent)
        price[active] = solution.price
        rent[active] = solution.rent
        wprice[active] = solution.warm_price
        wrent[active] = solution.warm_rent
        iterations[active] = solution.iterations
        worst[active] = solution.residuals.worst()
        rounds[active] += 1
        read = read_outcomes(first.layout, solution, [runs[k].cal.yields for k in active])
        for i, k in enumerate(active):
            outcomes[k] = read[i]
        # each instrument refines every active draw (a draw's instruments in their order, as a single run)
        moved = np.zeros(len(active))
        if uniform:
            for position, (_, kind) in enumerate(kinds):
                if not kind.acts_after_solving()[0]:
                    continue
                group = [runs[k].instruments[position] for k in active]
                now = [contexts[k] for k in active]
                for (iid, _, mctx), pctx in zip(group, now, strict=True):
                    pctx.mineral = mctx
                    pctx.instrument_id = iid
                moved = np.maximum(moved, kind.refine_batch([inst for _, inst, _ in group], now, read))
        else:
            for i, k in enumerate(active):
                pctx = contexts[k]
                for iid, inst, mctx in runs[k].instruments:
                    if not type(inst).acts_after_solving()[0]:
                        continue
                    pctx.mineral = mctx
                    pctx.instrument_id = iid
                    moved[i] = max(moved[i], inst.refine(pctx, read[i]))
        moving = [int(k) for k, change in zip(active, moved, strict=True) if change > 0.0]
        largest = float(moved.max(initial=0.0))
        if not moving:
            break
        if rounds[moving[0]] >= scenarios[0].dynamics.fixed_point_iterations:
            raise SolveError(
                labels[moving[0]],
                f"price-dependent policies did not settle in {rounds[moving[0]]} rounds (last change "
                f"{largest:.2e}); raise dynamics.fixed_point_iterations or check the floor and budget settings",
            )
        active = np.array(moving)
        warm, warm_rents = wprice, wrent
    assert price is not None and rent is not None and wprice is not None and wrent is not None
    if uniform:  # each kind settles every draw at once, in the instruments' order
        for position, (_, kind) in enumerate(kinds):
            if not kind.acts_after_solving()[1]:
                continue
            group = [run.instruments[position] for run in runs]
            for (iid, _, mctx), pctx in zip(group, contexts, strict=True):
                pctx.mineral = mctx
                pctx.instrument_id = iid
            kind.settle_batch([inst for _, inst, _ in group], contexts, outcomes)
    else:
        for run, pctx, outcome in zip(runs, contexts, outcomes, strict=True):
            for iid, inst, mctx in run.instruments:
                pctx.mineral = mctx
                pctx.instrument_id = iid
                inst.settle(pctx, outcome)
    capacity = _capacities(runs, [pctx.inputs for pctx in contexts])
    demand: dict[int, FloatArray] = {}  # reference demand by calibrated mineral (the draws mostly share one)
    for b, (run, pctx, outcome) in enumerate(zip(runs, contexts, outcomes, strict=True)):
        cal = run.cal
        run.warm = wprice[b]
        run.warm_rents = wrent[b]
        run.previous = outcome
        run.capacity.append(capacity[b])
        reference = demand.get(id(cal))
        if reference is None:
            reference = demand[id(cal)] = cal.base_consumption * cal.demand_index[cal.years.index(period_year(year))]
            reference.flags.writeable = False  # one array for every draw that shares it
        run.demand.append(reference)
        run.outcomes.append(outcome)
        run.iterations.append(int(iterations[b]))
        run.residual.append(float(worst[b]))
        run.rounds.append(int(rounds[b]))
        run.ledgers.append(dict(pctx.ledger.values))
    _adjust_batch(scenarios, runs, outcomes, period_years(start, end))


def _adjust(scenario: Scenario, run: _MineralRun, outcome: MineralOutcome, years: float) -> None:
    """Expectations and long-run demand move after a period clears."""
    cal = run.cal
    # the weight is per year: a quarter moves expectations by 1 - (1 - w) ** 0.25
    w = 1.0 - (1.0 - scenario.dynamics.expectation_weight) ** years
    run.expected = w * outcome.price + (1.0 - w) * run.expected
    if scenario.dynamics.long_run_demand:
        ratio = outcome.price[list(cal.sector_stage)].T / cal.base_price[list(cal.sector_stage)].T  # (R, K)
        extra = np.minimum(cal.demand_elasticity_long_run - cal.demand_elasticity, 0.0)[None, :]  # e_l - e_s
        target = np.clip(1.0 - np.power(np.maximum(ratio, 1e-9), extra), 0.0, scenario.dynamics.max_destruction)
        speed = 1.0 - 0.5 ** (years / scenario.dynamics.demand_half_life)
        run.destruction = run.destruction + speed * (target - run.destruction)


def _adjust_batch(
    scenarios: list[Scenario], runs: list[_MineralRun], outcomes: list[MineralOutcome], years: float
) -> None:
    """:func:`_adjust` for every draw of a batch at once (draws sharing one calibrated mineral), with the
    same numbers."""
    cal = runs[0].cal
    if len(runs) == 1 or any(run.cal is not cal for run in runs):
        for scenario, run, outcome in zip(scenarios, runs, outcomes, strict=True):
            _adjust(scenario, run, outcome, years)
        return
    column = (slice(None), None, None)
    w = np.array([1.0 - (1.0 - sc.dynamics.expectation_weight) ** years for sc in scenarios])[column]
    price = np.stack([outcome.price for outcome in outcomes])
    expected = w * price + (1.0 - w) * np.stack([run.expected for run in runs])
    for run, row in zip(runs, expected, strict=True):
        run.expected = row
    moving = [b for b, sc in enumerate(scenarios) if sc.dynamics.long_run_demand]
    if not moving:
        return
    stages = list(cal.sector_stage)
    ratio = price[moving][:, stages].transpose(0, 2, 1) / cal.base_price[stages].T[None]  # (draw, R, K)
    extra = np.minimum(cal.demand_elasticity_long_run - cal.demand_elasticity, 0.0)[None, None, :]
    most = np.array([scenarios[b].dynamics.max_destruction for b in moving], dtype=np.float64)[column]
    target = np.clip(1.0 - np.power(np.maximum(ratio, 1e-9), extra), 0.0, most)
    speed = np.array([1.0 - 0.5 ** (years / scenarios[b].dynamics.demand_half_life) for b in moving])[column]
    destruction = np.stack([runs[b].destruction for b in moving])
    destruction = destruction + speed * (target - destruction)
    for b, row in zip(moving, destruction, strict=True):
        runs[b].destruction = row


def _capacities(runs: list[_MineralRun], inputs: list[PeriodInputs]) -> FloatArray:
    """Each draw's capacity this period with what its project segments add (output units), for a batch of
    draws sharing a layout: read as one block where every draw's inputs are rows of the batch's arrays."""
    capacity = batch_rows(inputs, "capacity")
    if capacity is not None:
        base = capacity[0] if rows_in_order(*capacity) else capacity[0][capacity[1]]  # read only
    else:
        base = np.stack([inp.capacity for inp in inputs])  # type: ignore[misc]
    extra = np.zeros(base.shape)
    quantity = batch_rows(inputs, "segment_quantity")
    if quantity is not None:
        qty = quantity[0] if rows_in_order(*quantity) else quantity[0][quantity[1]]
    else:  # a draw without segment quantities adds nothing
        n_seg = len(runs[0].layout.segments)
        qty = np.stack([np.zeros(n_seg) if inp.segment_quantity is None else inp.segment_quantity for inp in inputs])
    for i, seg in enumerate(runs[0].layout.segments):
        if seg.node == "origin" and seg.side in ("sell", "process"):
            extra[:, seg.stage, seg.region] += qty[:, i]
    return base + extra


def run_scenario(scenario: Scenario, world: World | None = None) -> RunRecord:
    """Run ``scenario`` on its world (or ``world``), period by period, and return the raw record."""
    t0 = time.perf_counter()
    world = resolve_world(scenario.world) if world is None else world
    check_scenario(scenario, world)
    cals = calibrate(world)
    names = list(world.minerals) if scenario.minerals is None else scenario.minerals
    record = run_calibrated(scenario, {m: cals[m] for m in names}, _periods(scenario, world), world_name=world.name)
    record.wall_time_s = time.perf_counter() - t0
    return record


def run_calibrated(
    scenario: Scenario,
    cals: dict[str, CalibratedMineral],
    periods: tuple[PeriodLabel, ...],
    *,
    world_name: str = "custom",
) -> RunRecord:
    """Run ``scenario`` on calibrated minerals (all sharing regions and sectors) over ``periods``."""
    return run_batch([scenario], [cals], periods, world_name=world_name)[0]


def run_batch(
    scenarios: list[Scenario],
    cals: list[dict[str, CalibratedMineral]],
    periods: tuple[PeriodLabel, ...],
    *,
    world_name: str = "custom",
    draws: Sequence[int] | None = None,
) -> list[RunRecord]:
    """Run several draws of one scenario at once: each period of each mineral is one batched solve.

    ``draws`` (the draws' numbers in their ensemble) only name the draws in error messages.

    The draws must share their structure (the same instruments, blocs, minerals and regions); their numbers
    (instrument parameters, whether an instrument is enabled, elasticities, demand paths) may differ.
    """
    t0 = time.perf_counter()
    if len(scenarios) != len(cals) or not scenarios:
        raise ValueError("one calibrated world per scenario draw, and at least one draw")
    names = list(cals[0])
    for m in names:
        for year in periods:
            if period_year(year) not in cals[0][m].years:
                raise ScenarioError(scenarios[0].name, "end", f"{m} has no reference demand for {year}")
    solver = get_solver(scenarios[0].solver)
    ids = instrument_ids(scenarios[0])
    runs: list[dict[str, _MineralRun]] = []
    for scenario, draw_cals in zip(scenarios, cals, strict=True):
        if instrument_ids(scenario) != ids or list(draw_cals) != names:
            raise ValueError("draws of a batch must share instruments and minerals")
        draw_runs = {m: _setup_mineral(scenario, draw_cals[m], ids) for m in names}
        weights = _reserve_weights(scenario, draw_runs, ids)
        for run in draw_runs.values():
            run.state["__reserve_weights__"] = weights
        runs.append(draw_runs)
    # draws share one layout per mineral (same structure); use the first draw's
    for m in names:
        for draw_runs in runs[1:]:
            if draw_runs[m].layout.segments != runs[0][m].layout.segments or (
                draw_runs[m].layout.constraints != runs[0][m].layout.constraints
            ):
                raise ValueError(f"draws differ in the structure of {m}'s problem")
            draw_runs[m].layout = runs[0][m].layout
            draw_runs[m].topology = runs[0][m].topology
    solve_time = 0.0
    by_mineral = {m: [draw_runs[m] for draw_runs in runs] for m in names}
    for year in periods:
        solve_time += _period(scenarios, by_mineral, year, solver, draws)
    wall = time.perf_counter() - t0
    stacked = _stack_paths(runs)
    return [
        _record(scenario, draw_runs, periods, world_name, solver.name, wall / len(runs), solve_time / len(runs), arrays)
        for scenario, draw_runs, arrays in zip(scenarios, runs, stacked, strict=True)
    ]


_PATH_FIELDS = ("price", "origin_price", "production", "processing_input", "disposal", "flow", "consumption")


def _stack_paths(runs: list[dict[str, _MineralRun]]) -> list[dict[str, dict[str, FloatArray]]]:
    """Every draw's per-period outcomes stacked on a leading period axis, per mineral and field: one stack
    per mineral and field for all draws at once, each draw getting its rows (a view)."""
    out: list[dict[str, dict[str, FloatArray]]] = [{m: {} for m in draw_runs} for draw_runs in runs]
    for m in runs[0]:
        mineral_runs = [draw_runs[m] for draw_runs in runs]  # one per draw
        B, P = len(mineral_runs), len(mineral_runs[0].outcomes)
        for name in _PATH_FIELDS:
            # a period's outcomes are usually the rows of one array (read for the whole batch at once): stack
            # those arrays, one per period, rather than every draw's row on its own
            periods = [stack_outcomes([run.outcomes[p] for run in mineral_runs], name) for p in range(P)]
            block = np.stack(periods, axis=1)  # (draw, period, ...)
            for b in range(B):
                out[b][m][name] = block[b]
        columns = {
            "capacity": [c for run in mineral_runs for c in run.capacity],
            "reference_demand": [d for run in mineral_runs for d in run.demand],
        }
        for name, rows in columns.items():
            block = np.stack(rows)  # draw after draw, period after period
            block = block.reshape(B, P, *block.shape[1:])
            for b in range(B):
                out[b][m][name] = block[b]
    return out


def _record(
    scenario: Scenario,
    runs: dict[str, _MineralRun],
    periods: tuple[PeriodLabel, ...],
    world_name: str,
    solver_name: str,
    wall: float,
    solve_time: float,
    arrays: dict[str, dict[str, FloatArray]],
) -> RunRecord:
    """One draw's record; ``arrays`` holds its stacked outcomes per mineral and field (:func:`_stack_paths`)."""
    paths: dict[str, MineralPath] = {}
    for m, run in runs.items():
        paths[m] = MineralPath(
            mineral=m,
            stages=run.cal.stages,
            **arrays[m],  # price, ..., reference_demand: the path's stacked arrays, by field name
            iterations=np.array(run.iterations, dtype=np.int64),
            residual=np.array(run.residual),
            fixed_point_rounds=np.array(run.rounds, dtype=np.int64),
            ledger=run.ledgers,
        )
    first = next(iter(runs.values())).cal
    sector_stage = {m: tuple(run.cal.stages[s] for s in run.cal.sector_stage) for m, run in runs.items()}
    blocs = {}
    for name, bloc in scenario.blocs.items():
        members = [set(bloc.members_at(midpoint(*period_dates(y)))) for y in periods]
        blocs[name] = [[r in inside for r in first.regions] for inside in members]
    return RunRecord(
        scenario=scenario,
        world_name=world_name,
        base_year=first.years[0],
        periods=periods,
        regions=first.regions,
        sectors=first.sectors,
        sector_stage=sector_stage,
        minerals=paths,
        solver=solver_name,
        blocs=blocs,
        wall_time_s=wall,
        solve_time_s=solve_time,
    )
