"""Scenario specs: a world, a horizon, blocs, instruments and dynamics settings. Validated by pydantic.

A scenario file is YAML. ``extends: NAME`` starts from another scenario (built-in name or a path relative to
the file) and appends this file's blocs and instruments (a bloc of the same name replaces the parent's).
Values accept units (``110 USD/kg``, ``12 billion USD``, ``90 days``, ``2 kt/yr``). Errors name the file,
the field (as a dotted path such as ``instruments.3.floor``) and the reason.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from critmin.core.errors import ScenarioError
from critmin.core.specs import Rate, Years
from critmin.core.yamlio import safe_load
from critmin.policy import AnyInstrument
from critmin.policy.blocs import Bloc
from critmin.simulate.uncertainty import Uncertainty

BUILTIN_PACKAGE = "critmin.scenarios"


class Dynamics(BaseModel):
    """Settings of the dynamics across periods (defaults are labelled assumptions, see docs/model.md)."""

    model_config = ConfigDict(extra="forbid")

    demand_half_life: Years = Field(
        default=3.0, gt=0, description="Half-life of long-run demand adjustment (assumption; range 2-6 years)"
    )
    long_run_demand: bool = Field(default=True, description="Destroy/substitute demand while prices stay high")
    max_destruction: Rate = Field(default=0.6, description="Largest share of reference demand destroyed")
    expectation_weight: Rate = Field(
        default=0.5, description="Adaptive expectations: weight of the latest price (assumption; range 0.3-0.8)"
    )
    fixed_point_iterations: int = Field(default=60, ge=1, description="Most iterations of price-dependent policies")


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
    period: Literal["year", "quarter"] = Field(
        default="year", description="Period length: calendar years, or quarters where timing matters"
    )
    minerals: list[str] | None = Field(default=None, description="Restrict the run to these minerals")
    solver: Literal["engine", "highs"] = Field(default="engine", description="Period solver")
    sources: list[str] = Field(default_factory=list, description="Citations for the scenario's choices")
    blocs: dict[str, Bloc] = Field(default_factory=dict, description="Named blocs of regions")
    instruments: list[AnyInstrument] = Field(default_factory=list, description="Policies and shocks")
    dynamics: Dynamics = Field(default_factory=lambda: Dynamics(), description="Dynamics settings")
    uncertainty: Uncertainty | None = Field(default=None, description="Uncertain inputs for ensembles")

    _provenance: Provenance = PrivateAttr(default_factory=lambda: Provenance())

    def locate(self, file: str | None, field: str) -> tuple[str, str]:
        """The file and field to name in an error about ``field`` of this scenario (see :func:`locate`);
        ``file`` defaults to the file the scenario was read from, or else its name."""
        return locate(self._provenance.origins, file or self._provenance.file or self.name, field)

    @model_validator(mode="after")
    def _check_years(self) -> Scenario:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self


#: For the lists that ``extends`` concatenates, the file and the position in that file of each entry.
Origins = dict[str, list[tuple[str, int]]]


class Provenance:
    """Where a scenario was read from (``file``) and, for a file that extends another, where each instrument
    and uncertain input was written (``origins``; None when every entry is the file's own). It is not part
    of what the scenario is: any two compare equal, so that scenarios still compare by their content alone."""

    __slots__ = ("file", "origins")

    def __init__(self, origins: Origins | None = None, file: str | None = None) -> None:
        self.origins = origins
        self.file = file  # what the scenario was read from (a path, a built-in name), for errors

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Provenance)

    __hash__ = None  # type: ignore[assignment]


_LISTS = {"instruments": ("instruments",), "uncertainty.parameters": ("uncertainty", "parameters")}


def locate(origins: Origins | None, file: str, field: str) -> tuple[str, str]:
    """Map a field of a merged scenario (``instruments.40.per_unit``) to the file that wrote the entry and
    its position there (``child.yaml``, ``instruments.0.per_unit``); unchanged without origins."""
    if origins is None:
        return file, field
    for key, where in origins.items():
        head, _, rest = field.partition(key + ".")
        if head or not rest:
            continue
        index, _, tail = rest.partition(".")
        if index.isdigit() and int(index) < len(where):
            source, position = where[int(index)]
            return source, ".".join(x for x in (key, str(position), tail) if x)
    return file, field


def _own_origins(data: Any, file: str) -> Origins:
    out: Origins = {}
    for key, keys in _LISTS.items():
        node = data
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
        out[key] = [(file, i) for i in range(len(node))] if isinstance(node, list) else []
    return out


def builtin_names() -> list[str]:
    """Names of the scenarios shipped with the package."""
    folder = resources.files(BUILTIN_PACKAGE)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _format_validation(err: ValidationError, data: dict[str, Any]) -> tuple[str, str]:
    first = err.errors()[0]
    loc = list(first["loc"])
    if len(loc) > 2 and loc[0] == "instruments" and isinstance(loc[1], int):
        entry = data["instruments"][loc[1]] if isinstance(data.get("instruments"), list) else None
        if isinstance(entry, dict) and loc[2] == entry.get("kind"):
            del loc[2]  # the instrument's kind, which pydantic names as the member of the union it tried
    field = ".".join(str(x) for x in loc) or "(top level)"
    return field, first["msg"]


#: The ``file`` of a scenario given as data rather than read from a file.
_NO_FILE = "<scenario>"


def scenario_from_dict(data: Any, *, file: str = _NO_FILE, origins: Origins | None = None) -> Scenario:
    """Validate a mapping as a scenario, raising :class:`ScenarioError` naming file, field and reason.

    ``origins`` (from a file that extends another) says which file wrote each instrument and uncertain
    parameter: errors then name that file and the entry's position in it.
    """
    if not isinstance(data, dict):
        raise ScenarioError(file, "(top level)", "a scenario must be a mapping of fields")
    try:
        spec = Scenario.model_validate(data)
    except ValidationError as err:
        field, reason = _format_validation(err, data)
        raise ScenarioError(*locate(origins, file, field), reason) from None
    spec._provenance = Provenance(origins, None if file == _NO_FILE else file)
    return spec


def _read(name_or_path: str | Path, base: Path | None = None, *, files: bool = True) -> tuple[Any, str, Path | None]:
    """A scenario's data by built-in name or (if ``files``) by path, with its file label and folder."""
    path = Path(name_or_path)
    if files and base is not None and not path.is_absolute() and (base / path).exists():
        path = base / path
    if files and (path.suffix in {".yaml", ".yml"} or path.exists()):
        if not path.exists():
            raise ScenarioError(str(path), "(file)", "no such file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ScenarioError(str(path), "(file)", f"cannot read the file: {err}") from None
        file = str(path)
        folder: Path | None = path.parent
    else:
        name = str(name_or_path)
        if name not in builtin_names():
            raise ScenarioError(
                name, "(name)", f"no built-in scenario of that name; built-in: {', '.join(builtin_names())}"
            )
        text = resources.files(BUILTIN_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
        file = f"built-in scenario {name}"
        folder = None
    return _parse(text, file), file, folder


def _parse(text: str, file: str) -> Any:
    try:
        return safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as err:
        # PyYAML raises ValueError for impossible timestamps such as 2026-02-30
        raise ScenarioError(file, "(syntax)", f"not valid YAML: {err}") from None


def _merge(parent: dict[str, Any], child: dict[str, Any], file: str, origins: Origins) -> dict[str, Any]:
    """``child`` over ``parent`` (docs/scenarios.md, section 5); ``origins``, the parent's on entry, become
    the merged scenario's."""
    mine_at = _own_origins(child, file)
    out = dict(parent)
    kinds = {"instruments": list, "sources": list, "blocs": dict, "dynamics": dict}
    for key, value in child.items():
        expected = kinds.get(key)
        if expected is not None and value is not None and not isinstance(value, expected):
            what = "a list" if expected is list else "a mapping"
            raise ScenarioError(file, key, f"must be {what} in a file that extends another")
        if key == "instruments":
            out["instruments"] = list(parent.get("instruments", [])) + list(value or [])
            origins["instruments"] = origins["instruments"] + mine_at["instruments"]
        elif key == "blocs":
            out["blocs"] = {**parent.get("blocs", {}), **(value or {})}
        elif key == "dynamics":
            out["dynamics"] = {**parent.get("dynamics", {}), **(value or {})}
        elif key == "uncertainty" and isinstance(value, dict) and isinstance(parent.get("uncertainty"), dict):
            merged = {**parent["uncertainty"], **value}
            mine, theirs = value.get("parameters", []), parent["uncertainty"].get("parameters", [])
            if not isinstance(mine, list) or not isinstance(theirs, list):
                raise ScenarioError(file, "uncertainty.parameters", "must be a list")
            # a parameter of this file replaces the parent's for the same path (a narrower or wider range)
            paths = {p.get("path") for p in mine if isinstance(p, dict)}
            keep = [not (isinstance(p, dict) and p.get("path") in paths) for p in theirs]
            merged["parameters"] = [p for p, k in zip(theirs, keep, strict=True) if k] + list(mine)
            kept_at = [o for o, k in zip(origins["uncertainty.parameters"], keep, strict=True) if k]
            origins["uncertainty.parameters"] = kept_at + mine_at["uncertainty.parameters"]
            out["uncertainty"] = merged
        elif key == "sources":
            out["sources"] = list(parent.get("sources", [])) + list(value or [])
        else:
            out[key] = value
            if key == "uncertainty":
                origins["uncertainty.parameters"] = mine_at["uncertainty.parameters"]
    return out


def _resolve_extends(data: Any, file: str, folder: Path | None, depth: int = 0, *, files: bool = True) -> Any:
    return _resolve(data, file, folder, depth, files=files)[0]


def _resolve(
    data: Any, file: str, folder: Path | None, depth: int = 0, *, files: bool = True
) -> tuple[Any, Origins | None]:
    """``data`` with ``extends`` followed, and the origins of its list entries (None without ``extends``)."""
    if not isinstance(data, dict) or "extends" not in data:
        return data, None
    if depth > 8:
        raise ScenarioError(file, "extends", "scenarios extend each other in a cycle or too deeply")
    parent_name = data["extends"]
    if not isinstance(parent_name, str):
        raise ScenarioError(file, "extends", "must be a scenario name or a file path")
    if not files and parent_name not in builtin_names():
        raise ScenarioError(file, "extends", f"may name a built-in scenario only ({', '.join(builtin_names())})")
    try:
        parent, pfile, pfolder = _read(parent_name, folder, files=files)
    except ScenarioError as err:
        if err.field not in ("(file)", "(name)"):
            raise  # the parent was found and is itself wrong: its own file and field
        missing_file = err.field == "(file)" and folder is not None
        where = f" (looked beside {file} and in the working folder)" if missing_file else ""
        raise ScenarioError(file, "extends", f"{parent_name!r}: {err.reason}{where}") from None
    parent, origins = _resolve(parent, pfile, pfolder, depth + 1, files=files)
    if not isinstance(parent, dict):
        raise ScenarioError(pfile, "(top level)", "a scenario must be a mapping of fields")
    child = {k: v for k, v in data.items() if k != "extends"}
    origins = origins if origins is not None else _own_origins(parent, pfile)
    merged = _merge(parent, child, file, origins)
    return merged, origins


def scenario_data_from_text(text: str, *, file: str = "<scenario>", files: bool = True) -> Any:
    """A scenario file's text parsed, ``extends`` followed; ``files=False`` lets ``extends`` name built-in
    scenarios only (for text from an untrusted source, such as a web request). Validate the result with
    :func:`scenario_from_dict`."""
    return _resolve_extends(_parse(text, file), file, None, files=files)


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a built-in scenario by name, or a YAML file by path (following ``extends``)."""
    data, file, folder = _read(name_or_path)
    data, origins = _resolve(data, file, folder)
    return scenario_from_dict(data, file=file, origins=origins)


def scenario_data(spec: Scenario) -> dict[str, Any]:
    """A scenario as plain data without the fields left at their defaults (what a person would write), but
    with every instrument's ``kind``; ``scenario_from_dict`` of it gives back an equal scenario."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    if spec.instruments:
        data["instruments"] = [
            {"kind": inst.kind, **inst.model_dump(mode="json", exclude_defaults=True)} for inst in spec.instruments
        ]
    return data


def scenario_schema() -> dict[str, Any]:
    """The published JSON Schema of scenario files."""
    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "critmin scenario"
    return schema
