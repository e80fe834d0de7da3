"""dbt 1.8+ unit tests (``unit_tests:`` in a schema file): a model's SQL run on fixture rows, compared
with the expected rows.

As dbt does it: each ``given`` input (``ref('x')``, ``source('s', 't')``, ``this``) becomes a
``__dbt__cte__<name>`` CTE of its rows (``rows:`` as a list of mappings, ``format: csv`` or
``format: sql``), each value cast to the type of the input relation's column in the warehouse (so the
inputs must have been built once; a column a row leaves out is NULL). The model is rendered with
``overrides`` (``macros: {is_incremental: true}``, ``vars:``, ``env_vars:``), and its output, restricted
to the columns ``expect`` names, must hold the expected rows (in any order). A unit test runs before its
model in ``build``; a failing one skips the model, as in dbt.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import Problem
from ..project.yaml_files import LocatedYaml
from ..warehouse import Warehouse
from .nodes import DataTest

if TYPE_CHECKING:
    from .compiler import Compiler
    from .project import ModelProject

FORMATS = ("dict", "csv", "sql")
_INPUT_RE = re.compile(r"""^\s*(?:(ref)\(\s*['"]([^'"]+)['"]\s*(?:,\s*['"]([^'"]+)['"]\s*)?\)|"""
                       r"""(source)\(\s*['"]([^'"]+)['"]\s*,\s*['"]([^'"]+)['"]\s*\)|(this))\s*$""")


@dataclass
class Fixture:
    """Rows for one input of a unit test (or its expected output)."""

    format: str
    rows: list[dict[str, object]] | str
    """A list of mappings (``format: dict``), or the text of the CSV or SQL."""
    line: int | None = None


@dataclass
class UnitSpec:
    """What a ``unit_tests:`` entry says, kept on its DataTest (``kwargs['_unit']``)."""

    model: str
    given: dict[tuple[str, ...], Fixture] = field(default_factory=dict)
    expect: Fixture = field(default_factory=lambda: Fixture("dict", []))
    macros: dict[str, object] = field(default_factory=dict)
    vars: dict[str, object] = field(default_factory=dict)
    env_vars: dict[str, object] = field(default_factory=dict)

    def __str__(self) -> str:  # as the model page shows a test's arguments
        return f"{len(self.given)} input(s), {len(self.expect.rows)} expected row(s)" if \
            self.expect.format == "dict" else f"{len(self.given)} input(s)"


class UnitTestError(Exception):
    """A unit test cannot run (a missing input, an input relation not built yet)."""


def input_key(text: str) -> tuple[str, ...] | None:
    """``ref('x')`` -> ('ref', 'x'); ``source('s', 't')`` -> ('source', 's', 't'); ``this`` -> ('this',)."""
    match = _INPUT_RE.match(text)
    if not match:
        return None
    if match.group(1):
        return ("ref", match.group(3) or match.group(2))
    if match.group(4):
        return ("source", match.group(5), match.group(6))
    return ("this",)


def _fixture(mp: ModelProject, doc: LocatedYaml, rel: str, loc: tuple[str | int, ...], entry: object, what: str,
             problems: list[Problem]) -> Fixture | None:
    line = doc.line_of(loc)
    if not isinstance(entry, dict):
        problems.append(Problem(rel, line, f"{what} should be a mapping with rows: (and format:)"))
        return None
    fmt = str(entry.get("format") or "dict")
    if fmt not in FORMATS:
        problems.append(Problem(rel, doc.line_of((*loc, "format")) or line, f"{what}: unknown format {fmt!r}",
                                "use dict (the default), csv or sql"))
        return None
    rows = entry.get("rows")
    if entry.get("fixture"):  # dbt's fixture files: tests/fixtures/<name>.csv (or .sql with format: sql)
        fline = doc.line_of((*loc, "fixture")) or line
        if fmt == "dict":
            problems.append(Problem(rel, fline, f"{what}: a fixture file needs format: csv or sql"))
            return None
        name = f"{entry['fixture']}.{fmt}"
        found = [p for folder in mp.test_paths for p in sorted((mp.root / folder).rglob(name))
                 if "fixtures" in p.relative_to(mp.root / folder).parts[:-1]]
        if not found:
            problems.append(Problem(rel, fline, f"{what}: no fixture file {name} in a fixtures/ folder of "
                                    f"{', '.join(mp.test_paths)}", f"add {mp.test_paths[0]}/fixtures/{name}"))
            return None
        rows = found[0].read_text(encoding="utf-8")
    if fmt == "dict":
        rows = rows or []
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            problems.append(Problem(rel, doc.line_of((*loc, "rows")) or line, f"{what}: rows: should be a list of "
                                    "mappings ({column: value})", "or set format: csv / sql"))
            return None
    elif not isinstance(rows, str):
        problems.append(Problem(rel, doc.line_of((*loc, "rows")) or line, f"{what}: with format: {fmt}, rows: "
                                "should be text (a block with |)"))
        return None
    return Fixture(fmt, rows, line)


def read_unit_test(mp: ModelProject, doc: LocatedYaml, rel: str, i: int, entry: object,
                   problems: list[Problem]) -> None:
    """One ``unit_tests:`` entry into ``mp.tests`` (checked against the model once models are parsed)."""
    loc: tuple[str | int, ...] = ("unit_tests", i)
    line = doc.line_of(loc)
    if not isinstance(entry, dict) or not entry.get("name") or not entry.get("model"):
        problems.append(Problem(rel, line, "each entry under unit_tests: needs name:, model:, given: and expect:"))
        return
    name = str(entry["name"])
    spec = UnitSpec(model=str(entry["model"]))
    given = entry.get("given") or []
    if not isinstance(given, list):
        problems.append(Problem(rel, doc.line_of((*loc, "given")) or line, f"unit test {name!r}: given: should be "
                                "a list of inputs (- input: ref('x'))"))
        return
    ok = True
    for g_i, item in enumerate(given):
        gloc = (*loc, "given", g_i)
        text = str(item.get("input", "")) if isinstance(item, dict) else ""
        key = input_key(text)
        if key is None:
            problems.append(Problem(rel, doc.line_of(gloc) or line, f"unit test {name!r}: each given entry needs "
                                    f"input: ref('model'), source('src', 'table') or this, not {text!r}"))
            ok = False
            continue
        fixture = _fixture(mp, doc, rel, gloc, item, f"unit test {name!r}, input {text}", problems)
        if fixture is None:
            ok = False
            continue
        spec.given[key] = fixture
    if "expect" not in entry:
        problems.append(Problem(rel, line, f"unit test {name!r} needs expect: (the rows the model should give)"))
        return
    expect = _fixture(mp, doc, rel, (*loc, "expect"), entry.get("expect"), f"unit test {name!r}, expect",
                      problems)
    if expect is None or not ok:
        return
    spec.expect = expect
    overrides = entry.get("overrides") or {}
    if isinstance(overrides, dict):
        for part in ("macros", "vars", "env_vars"):
            value = overrides.get(part) or {}
            if not isinstance(value, dict):
                problems.append(Problem(rel, doc.line_of((*loc, "overrides", part)) or line,
                                        f"unit test {name!r}: overrides.{part} should be a mapping"))
                return
            setattr(spec, part, dict(value))
    config = entry.get("config") or {}
    if isinstance(config, dict) and config.get("enabled") is False:
        return
    tags = config.get("tags", []) if isinstance(config, dict) else []
    if name in mp.tests:
        other = mp.tests[name]
        problems.append(Problem(rel, line, f"two tests are named {name!r} (the other is at {other.file}:{other.line})",
                                "rename the unit test"))
        return
    mp.tests[name] = DataTest(name=name, test="unit", attached=f"model.{spec.model}", column="",
                              kwargs={"_unit": spec}, file=rel, line=line,
                              tags=[tags] if isinstance(tags, str) else [str(t) for t in tags])


def unit_spec(test: DataTest) -> UnitSpec:
    """The given/expect rows and overrides of a unit test."""
    spec = test.kwargs["_unit"]
    if not isinstance(spec, UnitSpec):
        raise TypeError(f"{test.name} is not a unit test")
    return spec


def parse_problems(c: Compiler, test: DataTest) -> list[Problem]:
    """Checks once the models are parsed: the model exists; an incremental one says is_incremental."""
    spec = unit_spec(test)
    model = c.mp.models.get(spec.model)
    if model is None:
        return [Problem(test.file, test.line, f"unit test {test.name!r} is on model {spec.model!r}, which does "
                        "not exist", "fix model: (the name of a SQL model)")]
    if model.language != "sql":
        return [Problem(test.file, test.line, f"unit test {test.name!r}: {spec.model} is a Python model; unit tests "
                        "are for SQL models (as in dbt)")]
    if model.materialized == "incremental" and not isinstance(spec.macros.get("is_incremental"), bool):
        return [Problem(test.file, test.line, f"unit test {test.name!r}: {spec.model} is incremental, so the "
                        "test must say which way it runs", "add overrides: {macros: {is_incremental: true}} "
                        "(or false)")]
    for key in spec.given:
        if key[0] == "ref" and not (key[1] in c.mp.models or key[1] in c.mp.seeds or key[1] in c.mp.snapshots):
            return [Problem(test.file, spec.given[key].line, f"unit test {test.name!r}: input ref({key[1]!r}) "
                            "names no model, seed or snapshot")]
        if key[0] == "source" and (key[1], key[2]) not in c.mp.sources:
            return [Problem(test.file, spec.given[key].line, f"unit test {test.name!r}: input source({key[1]!r}, "
                            f"{key[2]!r}) is not declared in a sources: block")]
    return []


# -- running -------------------------------------------------------------------------------------
def _literal(value: object) -> str:
    from ..warehouse.sql import literal

    if isinstance(value, dt.date | dt.datetime | dt.time):
        return literal(value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat(), "duckdb")
    if isinstance(value, bool | int | float | decimal.Decimal) or value is None:
        return "null" if value is None else (("true" if value else "false") if isinstance(value, bool)
                                             else str(value))
    return literal(str(value), "duckdb")


def _rows(fixture: Fixture) -> list[dict[str, object]]:
    if isinstance(fixture.rows, list):  # format: dict
        return [dict(r) for r in fixture.rows]
    reader = csv.DictReader(io.StringIO(str(fixture.rows).strip() + "\n"))
    return [{k.strip(): (None if v is None or v.strip() == "" else v.strip()) for k, v in row.items() if k}
            for row in reader]


def _typed_select(rows: list[dict[str, object]], columns: list[tuple[str, str]], what: str) -> str:
    """``select cast(v as T) as "c", ...`` per row, union all (``limit 0`` for no rows), as dbt's fixtures."""
    from ..warehouse.sql import quote

    known = {c.lower() for c, _ in columns}
    for row in rows:
        extra = [k for k in row if str(k).lower() not in known]
        if extra:
            raise UnitTestError(f"{what}: column {extra[0]!r} is not one of its columns "
                                f"({', '.join(c for c, _ in columns)})")
    if not rows:
        cols = ", ".join(f"cast(null as {t}) as {quote(c, 'duckdb')}" for c, t in columns)
        return f"select {cols} limit 0"
    selects = []
    for row in rows:
        lowered = {str(k).lower(): v for k, v in row.items()}
        cols = ", ".join(f"cast({_literal(lowered.get(c.lower()))} as {t}) as {quote(c, 'duckdb')}"
                         for c, t in columns)
        selects.append(f"select {cols}")
    return "\nunion all\n".join(selects)


def _describe(wh: Warehouse, sql: str) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in wh.query(f"DESCRIBE (\n{sql}\n)").rows]


def run_unit_test(c: Compiler, test: DataTest, wh: Warehouse) -> tuple[int, str]:
    """(number of differing rows, the diff) for one unit test, on ``wh``'s session."""
    from ..warehouse.sql import quote
    from ._render import Relation, RenderContext, RenderError
    from .compiler import _inject_ctes

    if wh.dialect != "duckdb":
        raise UnitTestError(f"unit tests run on DuckDB only for now (this warehouse is {wh.dialect})")
    spec = unit_spec(test)
    model = c.mp.models[spec.model]
    ctes: dict[str, str] = {}
    used: set[tuple[str, ...]] = set()

    def fixture_rel(key: tuple[str, ...], label: str, schema: str, ident: str) -> Relation:
        fixture = spec.given.get(key)
        if fixture is None:
            raise RenderError(f"{spec.model} reads {label}, and given: has no input for "
                              f"it; add `- input: {label}` with its rows")
        cte = f"__dbt__cte__{ident}" if key[0] != "this" else f"__dbt__cte__{ident}__this"
        if cte not in ctes:
            if fixture.format == "sql":
                ctes[cte] = str(fixture.rows).strip().rstrip(";")
            else:
                node = c.mp.models.get(key[1]) if key[0] == "ref" else None
                if node is not None and node.materialized == "ephemeral":
                    raise UnitTestError(f"{label} is ephemeral (it has no table to take column types from): give "
                                        "its rows with format: sql")
                columns = wh.columns(schema, ident)
                if not columns:
                    raise UnitTestError(f"cannot read the columns of {label} ({schema}.{ident} does not exist "
                                        f"yet): build it once first (`opsloop run -s +{spec.model}`; run skips "
                                        "unit tests), or give its rows with format: sql")
                ctes[cte] = _typed_select(_rows(fixture), columns, f"input {label}")
        used.add(key)
        return Relation(schema, ident, cte)

    def ref(*args: str, **kwargs: object) -> Relation:
        name = str(kwargs.get("name") or args[-1])
        node = c.mp.models.get(name) or c.mp.seeds.get(name) or c.mp.snapshots.get(name)
        if node is None:
            raise RenderError(f"ref({name!r}) names no model or seed")
        schema, ident = c.node_relation(node)
        return fixture_rel(("ref", name), f"ref('{name}')", schema, ident)

    def source(source_name: str, table_name: str) -> Relation:
        src = c.mp.sources[(source_name, table_name)]
        return fixture_rel(("source", source_name, table_name), f"source('{source_name}', '{table_name}')",
                           src.schema, src.identifier)

    schema, ident = c.node_relation(model)
    this = (fixture_rel(("this",), "this", schema, ident) if ("this",) in spec.given
            else Relation(schema, ident, c.rel_text(schema, ident)))
    renderer = c.renderer
    extra: dict[str, object] = {
        "var": lambda name, *default: spec.vars[name] if name in spec.vars else renderer._var(name, *default),
        "env_var": lambda name, *default: (str(spec.env_vars[name]) if name in spec.env_vars
                                           else renderer._env_var(name, *default)),
    }
    for macro, value in spec.macros.items():
        if macro != "is_incremental":
            extra[macro] = lambda *a, _v=value, **k: _v
    ctx = RenderContext(ref, source, this, bool(spec.macros.get("is_incremental")), dict(model.config),
                        query=wh.query, extra=extra)
    try:
        sql, _ = renderer.render(model.file, model.raw_sql, ctx)
    except RenderError as exc:
        raise UnitTestError(str(exc)) from exc
    sql = sql.strip().rstrip(";").strip()
    actual_sql = _inject_ctes(sql, ctes) if ctes else sql
    out_types = _describe(wh, actual_sql)
    types = {name.lower(): (name, type_) for name, type_ in out_types}
    if spec.expect.format == "sql":
        expected_sql = str(spec.expect.rows).strip().rstrip(";")
        columns = [name for name, _ in _describe(wh, expected_sql)]
    else:
        rows = _rows(spec.expect)
        columns = []
        for row in rows:
            for key in row:
                if str(key) not in columns:
                    columns.append(str(key))
        if spec.expect.format == "csv" and not columns:
            columns = next(csv.reader(io.StringIO(str(spec.expect.rows).strip())), [])
        if not columns:
            columns = [name for name, _ in out_types]
        missing = [col for col in columns if col.lower() not in types]
        if missing:
            raise UnitTestError(f"expect: column {missing[0]!r} is not in {spec.model}'s output (its columns: "
                                f"{', '.join(n for n, _ in out_types)})")
        expected_sql = _typed_select(rows, [types[col.lower()] for col in columns], "expect")
    picked = ", ".join(quote(types[col.lower()][0] if col.lower() in types else col, "duckdb") for col in columns)
    actual = [tuple(r) for r in wh.query(f"select {picked} from (\n{actual_sql}\n) dbt_internal_unit_test_actual")
              .rows]
    expected = [tuple(r) for r in wh.query(f"select {picked} from (\n{expected_sql}\n) "
                                            "dbt_internal_unit_test_expected").rows]
    return _diff(columns, actual, expected)


def _diff(columns: list[str], actual: list[tuple[object, ...]],
          expected: list[tuple[object, ...]]) -> tuple[int, str]:
    """Rows only in the actual output (``+++``) and only in the expected (``---``), with the rows both have,
    in a daff-like table as dbt prints it; (0, "") when they hold the same rows in any order."""
    have, want = Counter(actual), Counter(expected)
    if have == want:
        return 0, ""
    extra, missing = have - want, want - have
    lines: list[tuple[str, tuple[object, ...]]] = []
    for row in sorted(have & want, key=repr):
        lines.append(("", row))
    for row in sorted(extra.elements(), key=repr):
        lines.append(("+++", row))
    for row in sorted(missing.elements(), key=repr):
        lines.append(("---", row))

    def show(v: object) -> str:
        return "NULL" if v is None else str(v)

    table = [["@@", *columns], *[[mark, *map(show, row)] for mark, row in lines]]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    text = "\n".join(",".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table)
    count = max(sum(extra.values()), sum(missing.values()))  # a changed row counts once, as in dbt's diff
    return count, ("actual differs from expected (+++ only in actual, --- only in expected):\n" + text)
