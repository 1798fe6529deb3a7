"""Built-in scenarios and shipped examples, and a fuzz test of the scenario loader.

- Every built-in scenario and every file in ``examples/`` loads and validates against the default world;
  built-ins carry a description and sources on every instrument, keep the 2024 base year untouched, and
  encode the dated facts they claim (suspension dates, club membership, the floor comparison's symmetry).
- The examples cover every instrument kind and bloc feature, and ``examples/README.md`` and
  ``docs/scenarios.md`` list what exists.
- The loader (``scenario_from_dict``, ``load_scenario``) returns a :class:`Scenario` or raises
  :class:`ScenarioError` naming a field, on random data, random YAML text and random mutations of valid
  scenarios -- never another exception type. Loader bugs found by the fuzzing are listed in ``KNOWN_BUGS``:
  the fuzz tests tolerate exactly those (matched by exception type and where it was raised), and each has a
  strict ``xfail`` regression test below that starts failing once the bug is fixed, to remind whoever fixes it
  to delete the entry.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import subprocess
import sys
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from critmin.core.errors import ScenarioError
from critmin.policy import APPLY_ORDER, AnyInstrument
from critmin.policy.blocs import Bloc
from critmin.simulate.scenario import Dynamics, Scenario, builtin_names, load_scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))
BUILTINS = builtin_names()
DOCS = ROOT / "docs" / "scenarios.md"

#: Built-in scenarios and the parent each extends (None: standalone).
PARENTS = {
    "baseline": None,
    "controls-2025": "baseline",
    "club-2026-nofloors": "controls-2025",
    "club-2026": "club-2026-nofloors",
    "club-vs-ban": "club-2026",
    "three-blocs": "club-2026",
    "floor-designs": "club-2026-nofloors",
    "floor-cfd": "floor-designs",
    "floor-reference": "floor-designs",
}


def _builtin_text(name: str) -> str:
    from importlib import resources

    return resources.files("critmin.scenarios").joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def _by_name(spec: Scenario) -> dict[str, Any]:
    return {inst.name: inst for inst in spec.instruments}


@pytest.fixture(scope="module")
def world() -> Any:
    """The default world; skipped only while it does not exist yet (it ships before merge)."""
    world_module = pytest.importorskip("critmin.data.world")
    if not (world_module.default_world_path() / "world.yaml").exists():  # pragma: no cover - before curation
        pytest.skip("the default world is not there yet")
    from critmin.simulate.run import resolve_world

    return resolve_world("default")


# ---------------------------------------------------------------------------------------------------------------
# Built-in scenarios
# ---------------------------------------------------------------------------------------------------------------


def test_the_expected_builtins_ship() -> None:
    assert set(PARENTS) <= set(BUILTINS)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_loads_and_validates_on_the_default_world(name: str, world: Any) -> None:
    from critmin.simulate.run import check_scenario

    spec = load_scenario(name)
    assert spec.name == name
    check_scenario(spec, world, file=name)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_documents_itself_and_every_instrument(name: str) -> None:
    spec = load_scenario(name)
    assert len(spec.description) > 80, "a built-in scenario says what it represents"
    assert spec.sources, "a built-in scenario lists its sources"
    for inst in spec.instruments:
        assert inst.name, f"{inst.kind}: built-in instruments are named (results are labelled by name)"
        assert inst.sources, f"{inst.name}: every built-in instrument cites its sources"
        assert inst.description, f"{inst.name}: every built-in instrument has a description"
    for bloc_name, bloc in spec.blocs.items():
        assert bloc.description, f"bloc {bloc_name} has a description"


@pytest.mark.parametrize("name", sorted(PARENTS))
def test_builtin_extends_its_parent_and_keeps_all_of_it(name: str) -> None:
    raw = yaml.safe_load(_builtin_text(name))
    assert raw.get("extends") == PARENTS[name]
    if PARENTS[name] is None:
        return
    child, parent = load_scenario(name), load_scenario(PARENTS[name])
    assert [i.name for i in child.instruments][: len(parent.instruments)] == [i.name for i in parent.instruments]
    assert child.sources[: len(parent.sources)] == parent.sources


def test_baseline_leaves_the_base_year_untouched() -> None:
    """Policies act from 2025 and projects deliver from 2025, so the baseline's 2024 is the calibrated base year."""
    from critmin.policy.investment import Projects

    first_day = dt.date(2025, 1, 1)
    for inst in load_scenario("baseline").instruments:
        if isinstance(inst, Projects):
            for p in inst.projects:
                assert p.joint or p.incentive_price is not None
                if p.joint:
                    assert p.start_date is not None
                    online = p.start_date.year + (p.start_date.timetuple().tm_yday - 1) / 365.0 + float(p.lead_time)
                    assert online >= 2025.0, f"{p.name} delivers in the base year"
        else:
            assert inst.start is not None and inst.start >= first_day, f"{inst.name} acts in the base year"


def test_controls_2025_encodes_the_suspension_dates() -> None:
    baseline = _by_name(load_scenario("baseline"))
    controls = _by_name(load_scenario("controls-2025"))
    # the December 2024 US ban ends on its suspension (9 Nov 2025) and returns at its expiry (27 Nov 2026)
    assert baseline["cn-us-ban-ga-ge-sb"].end == dt.date(2025, 11, 9)
    returns = controls["cn-us-ban-ga-ge-sb-returns"]
    assert (returns.mode, returns.start, returns.end) == ("ban", dt.date(2026, 11, 27), None)
    assert set(returns.minerals) == {"gallium", "germanium", "antimony"}
    # the October 2025 package takes effect when Announcement No. 70's suspension expires (10 Nov 2026)
    extraterritorial = controls["cn-ree-extraterritorial"]
    assert extraterritorial.start == dt.date(2026, 11, 10)
    assert extraterritorial.extraterritorial and extraterritorial.de_minimis == pytest.approx(0.001)
    # the April 2025 Dy/Tb licensing stays in force
    assert baseline["cn-dy-tb-licensing"].start == dt.date(2025, 4, 4) and baseline["cn-dy-tb-licensing"].end is None


def test_club_membership_follows_the_sources() -> None:
    club = load_scenario("club-2026").blocs["club"]
    at_launch = club.members_at(dt.date(2026, 2, 5))
    assert {"USA", "JPN", "AUS", "KOR"} <= at_launch
    assert not {"CHN", "EU", "SAU", "MYS", "THA"} & at_launch
    assert {"SAU", "MYS", "THA"} <= club.members_at(dt.date(2026, 8, 1))
    assert club.members_at(dt.date(2025, 12, 31)) == set()


def test_club_2026_floors_are_the_documented_levels() -> None:
    spec = _by_name(load_scenario("club-2026"))
    # 110 USD/kg NdPr oxide = 110 / 0.8499 USD/kg Nd+Pr contained = 129.43 USD/kg (the world counts contained NdPr)
    ndpr_floor = 110_000 / 0.8499
    assert spec["dod-mp-ndpr-floor"].floor == pytest.approx(ndpr_floor, rel=1e-4)
    assert spec["dod-mp-ndpr-floor"].start == dt.date(2025, 10, 1)
    assert spec["dod-mp-ndpr-floor"].end == dt.date(2035, 10, 1)
    assert spec["club-reference-ndpr"].floor == pytest.approx(ndpr_floor, rel=1e-4)
    # 15,000 USD/t lithium carbonate = 15,000 / 0.1879 USD/t Li
    assert spec["club-reference-lithium"].floor == pytest.approx(15_000 / 0.1879, rel=1e-4)
    assert spec["club-reference-nickel"].floor == pytest.approx(18_000)
    # Project Vault: 10 billion EXIM + 1.67 billion private, split across the minerals
    vault = [i for i in spec.values() if i.name.startswith("vault-")]
    assert len(vault) == 11 and {m for i in vault for m in i.minerals} == {
        "ndpr", "dy", "tb", "lithium", "graphite", "cobalt", "nickel", "gallium", "germanium", "antimony", "tungsten"
    }  # fmt: skip
    assert sum(float(i.budget) for i in vault) == pytest.approx(11.67e9, rel=1e-3)
    assert all(i.target_days == 60 for i in vault)


def test_club_vs_ban_bans_the_club_for_two_years_from_the_suspensions_end() -> None:
    ban = _by_name(load_scenario("club-vs-ban"))["cn-ban-on-club"]
    assert (ban.mode, ban.exporter, ban.targets) == ("ban", "CHN", "club")
    assert set(ban.minerals) == {"ndpr", "dy", "tb", "gallium", "germanium", "graphite"}
    assert ban.start == dt.date(2026, 11, 10) and ban.end == dt.date(2028, 11, 10)
    assert 0 < ban.leakage_share < 1 and ban.leakage_markup > 0


def test_floor_designs_compare_like_with_like() -> None:
    """floor-cfd and floor-reference differ from their common parent by one floor each, at the same level."""
    parent = load_scenario("floor-designs")
    assert not [i for i in parent.instruments if i.kind in ("cfd", "reference_price")]
    extra = {}
    for name in ("floor-cfd", "floor-reference"):
        spec = load_scenario(name)
        assert spec.model_dump(exclude={"name", "description", "sources", "instruments"}) == parent.model_dump(
            exclude={"name", "description", "sources", "instruments"}
        )
        added = spec.instruments[len(parent.instruments) :]
        assert len(added) == 1
        extra[name] = added[0]
    cfd, ref = extra["floor-cfd"], extra["floor-reference"]
    assert (cfd.kind, ref.kind) == ("cfd", "reference_price")
    assert cfd.floor == ref.floor and [cfd.stage] == ref.stages
    assert cfd.eligible == ref.bloc and cfd.minerals == ref.minerals
    assert (cfd.start, cfd.end) == (ref.start, ref.end)


def test_three_blocs_defines_the_three_blocs() -> None:
    spec = load_scenario("three-blocs")
    assert {"club", "eu", "china"} <= set(spec.blocs)
    assert spec.blocs["eu"].members == ["EU"]
    kinds = {i.kind for i in spec.instruments}
    assert {"reserve", "projects", "permitting_reform", "hoarding", "cfd"} <= kinds


@pytest.mark.parametrize("name", [n for n in BUILTINS if load_scenario(n).uncertainty is not None])
def test_builtin_uncertainty_draws_give_valid_scenarios(name: str, world: Any) -> None:
    """Every uncertain path names a real field, and drawn values validate (a few draws, fixed seed)."""
    pytest.importorskip("critmin.ensemble.draws")
    from critmin.ensemble.draws import apply_draw
    from critmin.ensemble.sampling import draw_table
    from critmin.simulate.run import check_scenario

    spec = load_scenario(name)
    table = draw_table(spec.uncertainty, 6, seed=20260204)
    assert len(table.columns) == len(spec.uncertainty.parameters) + 1
    for _, row in table.iterrows():
        drawn, _ = apply_draw(spec, {k: v for k, v in row.items() if k != "draw"}, list(world.minerals))
        check_scenario(drawn, world, file=name)


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_runs(name: str, world: Any) -> None:
    from critmin.simulate.run import run_scenario

    record = run_scenario(load_scenario(name), world)
    for m in record.minerals.values():
        assert float(m.residual.max()) < 1e-6


# ---------------------------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_loads_and_validates_on_the_default_world(path: Path, world: Any) -> None:
    from critmin.simulate.run import check_scenario

    spec = load_scenario(path)
    check_scenario(spec, world, file=str(path))
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Example"), "every example opens with a comment saying what it shows"
    assert spec.description and spec.sources


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_has_a_short_horizon_and_few_minerals(path: Path) -> None:
    spec = load_scenario(path)
    assert spec.start is not None and spec.end is not None and spec.end - spec.start <= 8
    assert spec.minerals is not None and len(spec.minerals) <= 3


def test_examples_cover_every_instrument_kind_and_bloc_feature() -> None:
    specs = [load_scenario(p) for p in EXAMPLES]
    kinds = {i.kind for s in specs for i in s.instruments}
    assert set(APPLY_ORDER) <= kinds
    blocs = [b for s in specs for b in s.blocs.values()]
    assert any(b.joins for b in blocs) and any(b.leaves for b in blocs)
    selectors = [sel for s in specs for i in s.instruments for sel in i.selectors().values()]
    assert any(isinstance(sel, list) for sel in selectors), "a list selector"
    assert any(isinstance(sel, str) and sel.startswith("not ") for sel in selectors), "a complement selector"
    assert any(s.period == "quarter" for s in specs), "quarterly periods"
    assert any(yaml.safe_load(p.read_text(encoding="utf-8")).get("extends") for p in EXAMPLES), "extends"
    fields = {
        "extraterritorial": any(getattr(i, "extraterritorial", False) for s in specs for i in s.instruments),
        "leakage": any(getattr(i, "leakage_share", 0) > 0 for s in specs for i in s.instruments),
        "joint": any(p.joint for s in specs for i in s.instruments for p in getattr(i, "projects", [])),
        "release on shortfall": any(
            i.release is not None and i.release.shortfall_trigger is not None
            for s in specs
            for i in s.instruments
            if i.kind == "reserve"
        ),
        "release on price": any(
            i.release is not None and i.release.trigger_price is not None
            for s in specs
            for i in s.instruments
            if i.kind == "reserve"
        ),
    }
    assert all(fields.values()), fields
    modes = {i.mode for s in specs for i in s.instruments if i.kind == "export_control"}
    assert modes == {"ban", "quota", "licensing"}


def test_examples_readme_lists_every_example() -> None:
    readme = (EXAMPLES_DIR / "README.md").read_text(encoding="utf-8")
    for path in EXAMPLES:
        assert f"`{path.name}`" in readme, f"examples/README.md does not list {path.name}"


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path: Path, world: Any) -> None:
    from critmin.simulate.run import run_scenario

    record = run_scenario(load_scenario(path), world)
    assert record.periods and record.minerals
    for m in record.minerals.values():
        assert float(m.residual.max()) < 1e-6


# ---------------------------------------------------------------------------------------------------------------
# Documentation
# ---------------------------------------------------------------------------------------------------------------


def _instrument_models() -> list[type]:
    union = typing.get_args(AnyInstrument)[0]
    return list(typing.get_args(union))


def test_docs_describe_every_field_kind_and_builtin() -> None:
    from critmin.policy.investment import Project
    from critmin.policy.reserve import BuyRule, ReleaseRule

    text = DOCS.read_text(encoding="utf-8")
    for model in (Scenario, Dynamics, Bloc, Project, BuyRule, ReleaseRule, *_instrument_models()):
        for field in model.model_fields:
            assert f"`{field}`" in text, f"docs/scenarios.md does not describe {model.__name__}.{field}"
    for kind in APPLY_ORDER:
        assert f"`{kind}`" in text, f"docs/scenarios.md does not describe instrument kind {kind}"
    for name in BUILTINS:
        assert f"`{name}`" in text, f"docs/scenarios.md does not describe built-in scenario {name}"


# ---------------------------------------------------------------------------------------------------------------
# Fuzzing the loader
# ---------------------------------------------------------------------------------------------------------------


def _frames(err: BaseException) -> list[tuple[str, str]]:
    out = []
    tb = err.__traceback__
    while tb is not None:
        out.append((tb.tb_frame.f_code.co_filename.replace("\\", "/"), tb.tb_frame.f_code.co_name))
        tb = tb.tb_next
    return out


def _raised_in(err: BaseException, file_suffix: str, function: str | None = None) -> bool:
    return any(f.endswith(file_suffix) and (function is None or n == function) for f, n in _frames(err))


#: Loader bugs found by the fuzzing (see the strict-xfail regression tests below): each is recognised by the
#: exception and where it was raised. Delete an entry when its regression test starts passing.
KNOWN_BUGS: dict[str, Callable[[BaseException], bool]] = {}
KNOWN_BUG_HITS: dict[str, int] = {}


def _contract(call: Callable[[], Any]) -> None:
    """``call()`` returns a Scenario or raises a ScenarioError naming a field; known bugs are tolerated."""
    try:
        result = call()
    except ScenarioError as err:
        assert isinstance(err.field, str) and err.field.strip(), f"ScenarioError without a field: {err}"
        assert err.reason, f"ScenarioError without a reason: {err}"
        return
    except Exception as err:
        for name, matches in KNOWN_BUGS.items():
            if matches(err):
                KNOWN_BUG_HITS[name] = KNOWN_BUG_HITS.get(name, 0) + 1
                return
        raise
    assert isinstance(result, Scenario)


# Characters for random strings. '*' and '^' are left out on purpose: pint evaluates powers, and a string like
# '10**10**10 USD' never returns (a known bug with its own regression test below, run in a subprocess).
ALPHABET = st.characters(
    codec="utf-8",
    exclude_characters="*^",
    categories=("L", "N", "P", "S", "Zs"),
)
UNITS = ["USD/kg", "USD/t", "USD", "t", "kt", "t/yr", "kt/yr", "billion USD", "million USD", "days", "years",
         "months", "%", "kg", "", "USD/kg/", "(USD)", "/t"]  # fmt: skip
FIELD_NAMES = sorted(
    {
        "kind", "mode", "extends",
        *Scenario.model_fields, *Dynamics.model_fields, *Bloc.model_fields,
        *(f for model in _instrument_models() for f in model.model_fields),
    }
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(ALPHABET, max_size=20),
    st.dates(),
    st.sampled_from([*sorted(APPLY_ORDER), "ban", "quota", "licensing", "all", "not club", "club", "CHN", "2025-Q4"]),
    st.builds(
        lambda x, u: f"{x} {u}", st.floats(allow_nan=True, allow_infinity=True) | st.integers(), st.sampled_from(UNITS)
    ),
)
KEYS = st.sampled_from(FIELD_NAMES) | st.text(ALPHABET, min_size=1, max_size=8)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=15,
)
INSTRUMENTS = st.lists(
    st.fixed_dictionaries(
        {"kind": st.sampled_from(sorted(APPLY_ORDER))}, optional={k: VALUES for k in FIELD_NAMES if k != "kind"}
    ),
    max_size=3,
)
SCENARIOS = st.fixed_dictionaries(
    {"name": st.text(ALPHABET, max_size=10)},
    optional={
        "instruments": INSTRUMENTS | VALUES,
        "blocs": st.dictionaries(KEYS, st.dictionaries(KEYS, VALUES, max_size=3) | VALUES, max_size=2),
        "dynamics": st.dictionaries(KEYS, VALUES, max_size=3) | VALUES,
        "start": VALUES,
        "end": VALUES,
        "period": VALUES,
        "minerals": VALUES,
        "sources": VALUES,
        "extra": VALUES,
    },
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=VALUES | SCENARIOS)
def test_scenario_from_dict_accepts_or_names_a_field(data: Any) -> None:
    _contract(lambda: scenario_from_dict(data))


def _raw(path_or_name: str | Path) -> dict[str, Any]:
    text = (
        Path(path_or_name).read_text(encoding="utf-8")
        if isinstance(path_or_name, Path)
        else _builtin_text(path_or_name)
    )
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


#: Valid scenarios to mutate: every example and every built-in, as raw mappings (``extends`` kept).
VALID_RAW = [_raw(p) for p in EXAMPLES] + [_raw(n) for n in sorted(PARENTS)]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


def _mutate(doc: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    if not path:
        return value if op in ("replace", "retype") else doc
    parent, key = _get(doc, path[:-1]), path[-1]
    old = parent[key]
    if op == "replace":
        parent[key] = value
    elif op == "delete":
        del parent[key]
    elif op == "retype":
        parent[key] = str(old) if not isinstance(old, str) else [old]
    elif op == "negate" and isinstance(old, int | float) and not isinstance(old, bool):
        parent[key] = -old
    elif op == "scale" and isinstance(old, int | float) and not isinstance(old, bool):
        parent[key] = old * 1e12 if math.isfinite(old * 1e12) else 0
    elif op == "insert" and isinstance(parent, dict):
        parent[f"unknown_{key}"] = value
    elif op == "insert" and isinstance(parent, list):
        parent.insert(key, value)
    elif op == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(old))
    return doc


MUTATIONS = ["replace", "delete", "retype", "negate", "scale", "insert", "duplicate"]


@FUZZ
@given(base=st.sampled_from(range(len(VALID_RAW))), data=st.data())
def test_mutated_valid_scenario_is_accepted_or_names_a_field(base: int, data: st.DataObject) -> None:
    doc = copy.deepcopy(VALID_RAW[base])
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = _paths(doc)
        path = data.draw(st.sampled_from(paths), label="path")
        op = data.draw(st.sampled_from(MUTATIONS), label="op")
        value = data.draw(VALUES, label="value")
        doc = _mutate(doc, path, op, value)
    if isinstance(doc, dict) and "extends" in doc:
        # follow `extends` the way files do, through a temporary file next to nothing
        _contract(lambda: _load_text(yaml.safe_dump(doc, allow_unicode=True)))
    else:
        _contract(lambda: scenario_from_dict(doc))


_TMP: list[tempfile.TemporaryDirectory[str]] = []  # one folder for every example, removed at exit


def _load_text(text: str) -> Scenario:
    if not _TMP:
        _TMP.append(tempfile.TemporaryDirectory(prefix="critmin-fuzz-"))
    path = Path(_TMP[0].name) / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    return load_scenario(path)


YAML_TEXT = st.one_of(
    st.text(ALPHABET | st.sampled_from(list(":-[]{}#&!|>'\"\n\t ,?%@`")), max_size=200),
    VALUES.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
    SCENARIOS.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
    st.builds(
        lambda ext, rest: yaml.safe_dump({"name": "x", "extends": ext, **rest}, allow_unicode=True),
        st.sampled_from(["baseline", "club-2026", "nosuch", "nosuch.yaml", ".", "..", "fuzz.yaml", ""]) | VALUES,
        st.dictionaries(st.sampled_from(["instruments", "blocs", "dynamics", "sources", "minerals"]), VALUES),
    ),
)


@FUZZ
@given(text=YAML_TEXT)
def test_load_scenario_on_random_yaml_accepts_or_names_a_field(text: str) -> None:
    _contract(lambda: _load_text(text))


@FUZZ
@given(base=st.sampled_from(EXAMPLES), data=st.data())
def test_load_scenario_on_corrupted_example_text_accepts_or_names_a_field(base: Path, data: st.DataObject) -> None:
    text = base.read_text(encoding="utf-8")
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        i = data.draw(st.integers(0, len(text)), label="position")
        j = min(len(text), i + data.draw(st.integers(0, 12), label="length"))
        text = text[:i] + data.draw(st.text(ALPHABET | st.sampled_from(list(":-[]{}\n ")), max_size=6)) + text[j:]
    _contract(lambda: _load_text(text))


# ---------------------------------------------------------------------------------------------------------------
# Regression tests for the loader bugs the fuzzing found (all fixed)
# ---------------------------------------------------------------------------------------------------------------


def _tariff(per_unit: Any) -> dict[str, Any]:
    return {"name": "x", "instruments": [{"kind": "tariff", "per_unit": per_unit}]}


@pytest.mark.parametrize("text", ["1/0 USD/t", "(", "1 USD/t)", "2**100000 USD/t"])
def test_unreadable_quantity_is_a_scenario_error(text: str) -> None:
    with pytest.raises(ScenarioError):
        scenario_from_dict(_tariff(text))


def test_power_tower_quantity_is_rejected_quickly() -> None:
    code = (
        "from critmin.simulate.scenario import scenario_from_dict\n"
        "from critmin.core.errors import ScenarioError\n"
        "try:\n"
        "    scenario_from_dict({'name': 'x', 'instruments': [{'kind': 'tariff', 'per_unit': '10**10**10 USD/t'}]})\n"
        "except ScenarioError:\n"
        "    pass\n"
    )
    try:
        subprocess.run([sys.executable, "-c", code], timeout=20, check=True, capture_output=True)
    except subprocess.TimeoutExpired:
        pytest.fail("parsing '10**10**10 USD/t' did not finish in 20 s")


@pytest.mark.parametrize("value", ["nan USD/t", float("nan"), float("inf"), "1e999 USD/t"])
def test_non_finite_quantity_is_a_scenario_error(value: Any) -> None:
    with pytest.raises(ScenarioError):
        scenario_from_dict(_tariff(value))


@pytest.mark.parametrize(
    "instrument",
    [
        {"kind": "outage", "regions": "CHN", "share": 0.5, "start": 10**20},
        {"kind": "tariff", "rate": 10**400},
        {"kind": "outage", "regions": "CHN", "share": 10**400},
    ],
)
def test_huge_integer_is_a_scenario_error(instrument: dict[str, Any]) -> None:
    with pytest.raises(ScenarioError):
        scenario_from_dict({"name": "x", "instruments": [instrument]})


@pytest.mark.parametrize("field, value", [("instruments", 5), ("sources", 5), ("blocs", [1]), ("dynamics", [1])])
def test_wrong_type_in_an_extending_file_is_a_scenario_error(field: str, value: Any) -> None:
    with pytest.raises(ScenarioError):
        _load_text(yaml.safe_dump({"name": "x", "extends": "baseline", field: value}))


def test_impossible_yaml_date_is_a_scenario_error() -> None:
    with pytest.raises(ScenarioError):
        _load_text("name: x\ninstruments:\n  - {kind: outage, regions: CHN, share: 0.5, start: 2026-02-30}\n")


def test_extends_a_directory_is_a_scenario_error() -> None:
    with pytest.raises(ScenarioError):
        _load_text("name: x\nextends: .\n")


def test_a_missing_parent_is_named_by_the_extending_file(tmp_path: Path) -> None:
    """The error names the file that says ``extends`` (the user's), the field, and what it could not find."""
    child = tmp_path / "child.yaml"
    child.write_text("name: child\nextends: nothere.yaml\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as found:
        load_scenario(child)
    assert found.value.file == str(child) and found.value.field == "extends"
    assert "'nothere.yaml': no such file (looked beside" in found.value.reason
    child.write_text("name: child\nextends: clubb-2026\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="'clubb-2026': no built-in scenario of that name; built-in: baseline"):
        load_scenario(child)


@pytest.mark.parametrize("half_life", [0, -1, "0 years"])
def test_zero_demand_half_life_is_a_scenario_error(half_life: Any) -> None:
    with pytest.raises(ScenarioError):
        scenario_from_dict({"name": "x", "dynamics": {"demand_half_life": half_life}})


# ---------------------------------------------------------------------------------------------------------------
# Files that extend others: errors name the file that wrote the entry and its place there
# ---------------------------------------------------------------------------------------------------------------


def _chain(tmp_path: Path, middle_tariff: str, top_tariff: dict[str, Any]) -> Path:
    (tmp_path / "middle.yaml").write_text(
        "name: middle\nextends: club-2026\ninstruments:\n"
        f"  - {{kind: tariff, name: m1, per_unit: {middle_tariff}, importer: USA, exporter: CHN}}\n",
        encoding="utf-8",
    )
    top = tmp_path / "top.yaml"
    top.write_text(yaml.safe_dump({"name": "top", "extends": "middle.yaml", "instruments": [top_tariff]}))
    return top


def test_an_invalid_instrument_of_an_extending_file_is_named_by_its_place_in_that_file(tmp_path: Path) -> None:
    good = {"kind": "tariff", "name": "t1", "per_unit": "3 USD/t", "importer": "USA", "exporter": "CHN"}
    top = _chain(tmp_path, "xyz", good)
    with pytest.raises(ScenarioError) as err:
        load_scenario(top)
    assert (err.value.file, err.value.field) == (str(tmp_path / "middle.yaml"), "instruments.0.per_unit")
    top = _chain(tmp_path, "2 USD/t", {**good, "per_unit": "abc"})
    with pytest.raises(ScenarioError) as err:
        load_scenario(top)
    assert (err.value.file, err.value.field) == (str(top), "instruments.0.per_unit")


def test_an_unknown_region_in_an_extending_file_is_named_by_its_place_in_that_file(tmp_path: Path) -> None:
    from critmin.simulate.run import check_scenario, resolve_world

    bad = {"kind": "tariff", "name": "t1", "per_unit": "3 USD/t", "importer": "XXX", "exporter": "CHN"}
    top = _chain(tmp_path, "2 USD/t", bad)
    spec = load_scenario(top)
    with pytest.raises(ScenarioError) as err:
        check_scenario(spec, resolve_world(spec.world), file=str(top))
    assert (err.value.file, err.value.field) == (str(top), "instruments.0.importer")
    assert "XXX" in err.value.reason


def test_an_invalid_uncertain_input_of_an_extending_file_is_named_by_its_place_in_that_file(tmp_path: Path) -> None:
    top = tmp_path / "top.yaml"
    top.write_text(
        "name: top\nextends: club-vs-ban\nuncertainty:\n  parameters:\n"
        "    - {path: dynamics.expectation_weight, dist: uniform, low: 0.3, high: 0.8}\n"
        "    - {path: dynamics.demand_half_life, dist: normal, mean: 3}\n",
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(top)
    assert (err.value.file, err.value.field) == (str(top), "uncertainty.parameters.1")


def test_an_uncertain_input_of_an_extending_file_replaces_the_parents_for_the_same_path(tmp_path: Path) -> None:
    parent = load_scenario("club-vs-ban")
    assert parent.uncertainty is not None
    path = "instruments.cn-ban-on-club.leakage_share"
    top = tmp_path / "top.yaml"
    top.write_text(
        f"name: top\nextends: club-vs-ban\nuncertainty:\n  parameters:\n"
        f"    - {{path: {path}, dist: uniform, low: 0.1, high: 0.6}}\n",
        encoding="utf-8",
    )
    spec = load_scenario(top)
    assert spec.uncertainty is not None
    drawn = [p for p in spec.uncertainty.parameters if p.path == path]
    assert len(drawn) == 1 and drawn[0].high == 0.6
    others = [p.path for p in parent.uncertainty.parameters if p.path != path]
    assert [p.path for p in spec.uncertainty.parameters] == [*others, path]


def test_the_union_member_is_not_part_of_an_instruments_field() -> None:
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict({"name": "x", "instruments": [{"kind": "tariff", "per_unit": "abc"}]})
    assert err.value.field == "instruments.0.per_unit"


def test_validate_checks_the_uncertain_inputs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from critmin.cli import app

    result = CliRunner().invoke(app, ["validate", "club-vs-ban"])
    assert result.exit_code == 0, result.output
    assert "uncertainty: 6 inputs (lhs), every path found" in " ".join(result.output.split())
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nextends: club-vs-ban\nuncertainty:\n  parameters:\n"
        "    - {path: world.ndpr.demand_elasticity.nosector, dist: uniform, low: -0.5, high: -0.1}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "bad.yaml" in text and "world.ndpr" in text and "no sector 'nosector'" in text


def test_where_entries_were_written_is_not_part_of_a_scenarios_content(tmp_path: Path) -> None:
    from critmin.simulate.scenario import scenario_data

    good = {"kind": "tariff", "name": "t1", "per_unit": "3 USD/t", "importer": "USA", "exporter": "CHN"}
    spec = load_scenario(_chain(tmp_path, "2 USD/t", good))
    assert spec.locate("top.yaml", "instruments.0.rate") != ("top.yaml", "instruments.0.rate")
    assert scenario_from_dict(scenario_data(spec)) == spec


def test_a_run_time_check_names_the_file_the_scenario_was_read_from(tmp_path: Path) -> None:
    from critmin.simulate.run import run_scenario

    path = tmp_path / "early.yaml"
    path.write_text("name: early\nextends: baseline\nstart: 2020\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        run_scenario(load_scenario(path))
    assert (err.value.file, err.value.field) == (str(path), "start")
    with pytest.raises(ScenarioError) as err:
        run_scenario(scenario_from_dict({"name": "early", "start": 2020}))
    assert err.value.file == "early"  # given as data: its name
