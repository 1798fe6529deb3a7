"""Scenario specs: what to run (world, horizon, solver). Validated by pydantic; loaded from YAML.

The instruments of the contest (blocs, tariffs, controls, floors, reserves, ...) join this spec as
``instruments``; until then a scenario is the reference path of a world over a horizon.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from critmin.core.errors import ScenarioError

BUILTIN_PACKAGE = "critmin.scenarios"


class Scenario(BaseModel):
    """A scenario: a world, a horizon and (later) the instruments acting on it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short name, used in results and the store")
    description: str = Field(default="", description="What the scenario represents, with its sources")
    world: str = Field(
        default="default",
        description="'default' for the embedded world, 'toy' for the bundled toy market, or a folder path",
    )
    start: int | None = Field(default=None, description="First period (year); default: the world's base year")
    end: int | None = Field(default=None, description="Last period (year); default: the world's horizon")
    minerals: list[str] | None = Field(default=None, description="Restrict the run to these minerals")
    solver: Literal["engine", "highs"] = Field(default="engine", description="Period solver")
    sources: list[str] = Field(default_factory=list, description="Citations for the scenario's choices")

    @model_validator(mode="after")
    def _check_years(self) -> Scenario:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self


def builtin_names() -> list[str]:
    """Names of the scenarios shipped with the package."""
    folder = resources.files(BUILTIN_PACKAGE)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _format_validation(err: ValidationError) -> tuple[str, str]:
    first = err.errors()[0]
    field = ".".join(str(x) for x in first["loc"]) or "(top level)"
    return field, first["msg"]


def scenario_from_dict(data: Any, *, file: str = "<scenario>") -> Scenario:
    """Validate a mapping as a scenario, raising :class:`ScenarioError` naming file, field and reason."""
    if not isinstance(data, dict):
        raise ScenarioError(file, "(top level)", "a scenario must be a mapping of fields")
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        field, reason = _format_validation(err)
        raise ScenarioError(file, field, reason) from None


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a built-in scenario by name, or a YAML file by path."""
    text: str
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.exists():
            raise ScenarioError(str(path), "(file)", "no such file")
        text = path.read_text(encoding="utf-8")
        file = str(path)
    else:
        name = str(name_or_path)
        if name not in builtin_names():
            raise ScenarioError(
                name, "(name)", f"no built-in scenario of that name; built-in: {', '.join(builtin_names())}"
            )
        text = resources.files(BUILTIN_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
        file = f"built-in scenario {name}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ScenarioError(file, "(syntax)", f"not valid YAML: {err}") from None
    return scenario_from_dict(data, file=file)
