"""A run over periods: build each period's problems, solve them in batches, carry state forward.

Minerals clear independently (DESIGN §5, a documented simplification), so each period is one batched solve
per group of minerals that share a topology; each period warm-starts from the last period's prices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from critmin.core.arrays import FloatArray, IntArray
from critmin.core.errors import ScenarioError
from critmin.data.calibrate import CalibratedMineral, calibrate
from critmin.market.build import (
    MarketLayout,
    MineralOutcome,
    PeriodInputs,
    build_instances,
    read_outcome,
    topology_with_yields,
)
from critmin.market.solvers import get_solver
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
    capacity: FloatArray  # (P, S, R)
    flow: FloatArray  # (P, S, R, R)
    consumption: FloatArray  # (P, R, K)
    reference_demand: FloatArray  # (P, R, K)
    iterations: IntArray  # (P,)
    residual: FloatArray  # (P,) worst relative residual


@dataclass
class RunRecord:
    """Everything a run produced, before labelling (``critmin.results`` turns it into a Dataset)."""

    scenario: Scenario
    world: World
    periods: tuple[int, ...]
    regions: tuple[str, ...]
    sectors: tuple[str, ...]
    sector_stage: dict[str, tuple[str, ...]]
    minerals: dict[str, MineralPath]
    solver: str
    wall_time_s: float = 0.0
    solve_time_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def _periods(scenario: Scenario, world: World) -> tuple[int, ...]:
    start = world.base_year if scenario.start is None else scenario.start
    end = world.horizon if scenario.end is None else scenario.end
    if start < world.base_year or end > world.horizon:
        raise ScenarioError(
            scenario.name,
            "start" if start < world.base_year else "end",
            f"periods must lie within the world's {world.base_year}-{world.horizon}",
        )
    return tuple(range(start, end + 1))


def run_scenario(scenario: Scenario, world: World | None = None) -> RunRecord:
    """Run ``scenario`` period by period and return the raw record."""
    t0 = time.perf_counter()
    world = resolve_world(scenario.world) if world is None else world
    cals = calibrate(world)
    names = list(world.minerals) if scenario.minerals is None else scenario.minerals
    for m in names:
        if m not in cals:
            raise ScenarioError(scenario.name, "minerals", f"unknown mineral {m!r}; known: {', '.join(cals)}")
    periods = _periods(scenario, world)
    solver = get_solver(scenario.solver)

    groups: dict[tuple[object, ...], list[CalibratedMineral]] = {}
    for m in names:
        cal = cals[m]
        key = (*cal.structure_key(), tuple(cal.yields))
        groups.setdefault(key, []).append(cal)

    outcomes: dict[str, list[MineralOutcome]] = {m: [] for m in names}
    capacity: dict[str, list[FloatArray]] = {m: [] for m in names}
    demand: dict[str, list[FloatArray]] = {m: [] for m in names}
    iterations: dict[str, list[int]] = {m: [] for m in names}
    residual: dict[str, list[float]] = {m: [] for m in names}
    solve_time = 0.0
    for members in groups.values():
        layout = MarketLayout.for_mineral(members[0])
        topology = topology_with_yields(layout, members)
        warm: FloatArray | None = None
        for year in periods:
            inputs = []
            for cal in members:
                i = cal.years.index(year)
                inputs.append(PeriodInputs(demand_scale=cal.demand_index[i]))
            data = build_instances(layout, members, inputs, [f"{c.mineral} {year}" for c in members])
            ts = time.perf_counter()
            solution = solver.solve(topology, data, warm_start=warm)
            solve_time += time.perf_counter() - ts
            warm = solution.price
            worst = solution.residuals.worst()
            for b, cal in enumerate(members):
                outcomes[cal.mineral].append(read_outcome(layout, solution, b, cal.yields))
                capacity[cal.mineral].append(cal.capacity)
                demand[cal.mineral].append(cal.base_consumption * cal.demand_index[cal.years.index(year)])
                iterations[cal.mineral].append(int(solution.iterations[b]))
                residual[cal.mineral].append(float(worst[b]))

    paths: dict[str, MineralPath] = {}
    for m in names:
        outs = outcomes[m]
        paths[m] = MineralPath(
            mineral=m,
            stages=cals[m].stages,
            price=np.stack([o.price for o in outs]),
            origin_price=np.stack([o.origin_price for o in outs]),
            production=np.stack([o.production for o in outs]),
            capacity=np.stack(capacity[m]),
            flow=np.stack([o.flow for o in outs]),
            consumption=np.stack([o.consumption for o in outs]),
            reference_demand=np.stack(demand[m]),
            iterations=np.array(iterations[m], dtype=np.int64),
            residual=np.array(residual[m]),
        )
    sector_stage = {
        m: tuple(cals[m].stages[s] for s in cals[m].sector_stage) for m in names
    }
    return RunRecord(
        scenario=scenario,
        world=world,
        periods=periods,
        regions=tuple(world.regions),
        sectors=tuple(world.sectors),
        sector_stage=sector_stage,
        minerals=paths,
        solver=solver.name,
        wall_time_s=time.perf_counter() - t0,
        solve_time_s=solve_time,
    )
