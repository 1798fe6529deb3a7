"""Turning one row of the table of draws into a scenario and a calibrated world for that draw."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pydantic import ValidationError

from critmin.core.errors import ScenarioError
from critmin.data.calibrate import CalibratedMineral, check_parameters, with_parameters
from critmin.simulate.scenario import Scenario


@dataclass
class WorldOverrides:
    """Per-mineral changes to the calibrated world drawn for one draw."""

    demand_elasticity: dict[str, dict[str, float]] = field(default_factory=dict)
    supply_elasticity: dict[str, dict[str, float]] = field(default_factory=dict)
    demand_growth: dict[str, float] = field(default_factory=dict)
    capacity: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)

    def _changes(self, m: str) -> dict[str, Any]:
        return {
            "demand_elasticity": self.demand_elasticity.get(m),
            "supply_elasticity": self.supply_elasticity.get(m),
            "demand_growth": self.demand_growth.get(m),
            "capacity": self.capacity.get(m),
        }

    def apply(self, cals: Mapping[str, CalibratedMineral]) -> dict[str, CalibratedMineral]:
        return {m: with_parameters(cal, **self._changes(m)) for m, cal in cals.items()}

    def check(self, cals: Mapping[str, CalibratedMineral]) -> None:
        """Raise :class:`ScenarioError` (field ``world.MINERAL``) if :meth:`apply` would fail."""
        for m, cal in cals.items():
            try:
                check_parameters(cal, **self._changes(m))
            except ValueError as err:
                raise ScenarioError("uncertainty", f"world.{m}", str(err)) from None


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, str):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.date()
    return value


def table_rows(table: pd.DataFrame) -> list[tuple[int, dict[str, Any]]]:
    """``(draw, {path: value})`` for each row of a table of draws, the values as plain Python (dates)."""
    paths = [c for c in table.columns if c != "draw"]
    rows = []
    for row in table.itertuples(index=False):
        rows.append((int(row[0]), {p: _plain(v) for p, v in zip(paths, row[1:], strict=True)}))
    return rows


def check_draws(scenario: Scenario, table: pd.DataFrame, cals: Mapping[str, CalibratedMineral], *, file: str) -> None:
    """Check that every row of the table of draws applies to the scenario and its calibrated world, before
    anything is computed or stored: each path names a field that exists, and each drawn value passes the
    validation of the instrument, the dynamics or the world parameter it sets.

    Raises :class:`ScenarioError` naming ``file``, the path and the first draw that fails, with the reason.
    """
    minerals = list(cals)
    for draw, values in table_rows(table):
        try:
            _, over = apply_draw(scenario, values, minerals)
            over.check(cals)
        except ScenarioError as err:
            raise ScenarioError(file, f"uncertainty: {err.field}", f"draw {draw}: {err.reason}") from None


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError("uncertainty", path, f"a world parameter must be a number, got {value!r}")
    return float(value)


def _world(path: str, value: Any, minerals: list[str], over: WorldOverrides) -> None:
    parts = path.split(".")
    if len(parts) < 3:
        raise ScenarioError("uncertainty", path, "world paths look like world.MINERAL.FIELD[.KEY]")
    mineral, what = parts[1], parts[2]
    targets = minerals if mineral == "*" else [mineral]
    for m in targets:
        if m not in minerals:
            raise ScenarioError("uncertainty", path, f"unknown mineral {m!r}")
        if what in ("demand_elasticity", "supply_elasticity") and len(parts) == 4:
            getattr(over, what).setdefault(m, {})[parts[3]] = _number(value, path)
        elif what == "demand_growth" and len(parts) == 3:
            over.demand_growth[m] = _number(value, path)
        elif what == "capacity" and len(parts) == 5:
            over.capacity.setdefault(m, {})[(parts[3], parts[4])] = _number(value, path)
        else:
            raise ScenarioError(
                "uncertainty",
                path,
                "world paths: world.M.demand_elasticity.SECTOR, world.M.supply_elasticity.STAGE, "
                "world.M.demand_growth, world.M.capacity.STAGE.REGION",
            )


def _set(data: Any, keys: list[str], value: Any, path: str) -> None:
    node = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            try:
                idx = int(key)
            except ValueError:
                raise ScenarioError("uncertainty", path, f"{key!r} is not a list index") from None
            if not 0 <= idx < len(node):
                raise ScenarioError("uncertainty", path, f"index {idx} is out of range")
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if key not in node:
                raise ScenarioError("uncertainty", path, f"no field {key!r} here")
            if last:
                node[key] = value
            else:
                node = node[key]
        else:
            raise ScenarioError("uncertainty", path, f"cannot descend into {key!r}")


def apply_draw(scenario: Scenario, values: Mapping[str, Any], minerals: list[str]) -> tuple[Scenario, WorldOverrides]:
    """The scenario of one draw and the world changes it asks for.

    The instruments and dynamics that a drawn value touches are validated again (as a scenario file's are);
    the rest of the scenario is the given one's, shared (scenarios are not changed once validated).
    """
    over = WorldOverrides()
    names = [inst.name for inst in scenario.instruments]
    touched: dict[int, dict[str, Any]] = {}  # instrument index -> its fields, with the drawn values
    drawn_at: dict[tuple[str, ...], str] = {}  # (instrument index, field path...) -> the path as written
    dynamics: dict[str, Any] | None = None
    for path, value in values.items():
        if isinstance(value, dt.datetime):
            value = value.date()
        head, _, rest = path.partition(".")
        if head == "world":
            _world(path, value, minerals, over)
            continue
        if head == "instruments":
            ref, _, field_path = rest.partition(".")
            index = names.index(ref) if ref in names else None
            if index is None:
                try:
                    index = int(ref)
                except ValueError:
                    named = [n for n in names if n]
                    if not names:
                        known = "the scenario has no instruments"
                    elif not named:
                        known = "the scenario's instruments have no names"
                    else:
                        known = f"named: {', '.join(named)}"
                    raise ScenarioError("uncertainty", path, f"no instrument named {ref!r}; {known}") from None
                if not 0 <= index < len(names):
                    count = f"the scenario has {len(names)} instruments"
                    raise ScenarioError("uncertainty", path, f"index {index} is out of range ({count})")
            if not field_path:
                raise ScenarioError("uncertainty", path, "name a field of the instrument")
            fields = touched.get(index)
            if fields is None:
                fields = touched[index] = scenario.instruments[index].model_dump(mode="python")
            _set(fields, field_path.split("."), value, path)
            drawn_at[(f"instruments.{index}", *field_path.split("."))] = path
        elif head == "dynamics":
            if dynamics is None:
                dynamics = scenario.dynamics.model_dump(mode="python")
            _set(dynamics, rest.split("."), value, path)
            drawn_at[("dynamics", *rest.split("."))] = path
        else:
            raise ScenarioError("uncertainty", path, "paths start with instruments., dynamics. or world.")
    if not touched and dynamics is None:
        return scenario, over
    instruments = list(scenario.instruments)
    update: dict[str, Any] = {"instruments": instruments, "uncertainty": None}
    where = ""
    try:
        for index, fields in sorted(touched.items()):
            where = f"instruments.{index}"
            instruments[index] = type(scenario.instruments[index]).model_validate(fields)
        if dynamics is not None:
            where = "dynamics"
            update["dynamics"] = type(scenario.dynamics).model_validate(dynamics)
    except ValidationError as err:
        first = err.errors()[0]
        loc = (where, *(str(x) for x in first["loc"]))
        # name the drawn path where the error is about a field that was drawn
        where = next((p for key, p in drawn_at.items() if loc[: len(key)] == key), ".".join(loc))
        raise ScenarioError("uncertainty", where, f"a drawn value is invalid: {first['msg']}") from None
    return scenario.model_copy(update=update), over
