"""Compile-time column checks with sqlglot, before anything runs.

Each model's compiled SQL is qualified against the columns of what it reads (seeds from their CSV
header, sources from their YAML or the warehouse, models from the output of this same pass, in DAG
order). A column that does not exist upstream is reported with the model's file:line. A model whose
inputs are not all known is not checked (never a false alarm), and neither are its children.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TypedDict

from ..errors import Problem
from ..warehouse import Warehouse
from ._seeds import read_csv
from .compiler import Compiler

_UNRESOLVED = re.compile(r"Column '\"?([^'\"]+)\"?' could not be resolved|Unknown column: \"?([^\s\"]+)")


def known_columns(compiler: Compiler, warehouse: Warehouse | None) -> dict[str, list[str] | None]:
    """Columns of every seed and source (None when unknown)."""
    cols: dict[str, list[str] | None] = {}
    mp = compiler.mp
    for seed in mp.seeds.values():
        try:
            header, _ = read_csv(mp.root / seed.path, str(seed.config.get("delimiter") or ","))
            cols[seed.uid] = header
        except OSError:
            cols[seed.uid] = None
    existing = None
    from .compiler import RAW_EVENTS_COLUMNS

    for source in mp.sources.values():
        if source.uid == "source.raw.events" and warehouse is None:
            cols[source.uid] = list(RAW_EVENTS_COLUMNS)
            continue
        if warehouse is not None:  # the table itself, when it exists: YAML often lists only some columns
            if existing is None:
                existing = warehouse.relations()
            if (source.schema.lower(), source.identifier.lower()) in existing:
                found = warehouse.columns(source.schema, source.identifier)
                cols[source.uid] = [c for c, _ in found] or None
                continue
        # without the table, YAML columns count only when every one is typed (a declared contract)
        typed = bool(source.columns) and all(source.columns.values()) and source.uid != "source.raw.events"
        cols[source.uid] = list(source.columns) if typed else None
    return cols


def _mapping(compiler: Compiler, cols: dict[str, list[str] | None],
             uids: set[str]) -> dict[str, object] | None:
    """sqlglot's schema for the relations ``uids`` ({schema: {table: {column: type}}}); None when one of
    them has unknown columns."""
    tables: dict[str, dict[str, dict[str, str]]] = {}
    for uid in uids:
        names = cols.get(uid)
        if names is None:
            return None
        rel = compiler.relation_of(uid)
        db, _, table = rel.partition(".")
        tables.setdefault(db, {})[table] = {n: "text" for n in names}
    schema: dict[str, object] = {}
    schema.update(tables)
    return schema


def output_columns(compiler: Compiler, warehouse: Warehouse | None,
                   problems: list[Problem] | None = None) -> dict[str, list[str] | None]:
    """Columns of every node, with problems for columns that do not exist upstream."""
    cols = known_columns(compiler, warehouse)
    cache = _Cache(compiler)
    d = compiler.target.source_dialect
    for uid in compiler.order:
        if not uid.startswith("model."):
            continue
        model = compiler.mp.models[uid[6:]]
        if model.language == "python":  # its columns are known once it has run
            cols[uid] = None
            continue
        parents = _data_parents(compiler, uid)
        mapping = _mapping(compiler, cols, parents)
        if mapping is None:
            cols[uid] = None
            continue
        try:
            with compiler.using(None):  # no run_query / statement here: they run once, in the build
                sql = compiler.sql(model, dialect=d)
        except Exception:
            cols[uid] = None
            continue
        key = hashlib.sha256(json.dumps([sql, mapping], sort_keys=True).encode()).hexdigest()
        hit = cache.get(model.name, key)
        if hit is not None:
            cols[uid] = hit.get("columns")
            if "problem" in hit and problems is not None:
                problems.append(Problem(model.file, *hit["problem"]))
            continue
        import sqlglot
        from sqlglot.errors import OptimizeError, ParseError
        from sqlglot.optimizer.qualify import qualify

        result: _Checked = {"columns": None}
        try:
            expr = sqlglot.parse_one(sql, read=d)
            qualified = qualify(expr, schema=mapping, dialect=d, validate_qualify_columns=True,
                                quote_identifiers=False)
            names = [s.alias_or_name for s in qualified.selects]  # type: ignore[attr-defined]
            result["columns"] = names if names and "*" not in names else None
        except OptimizeError as exc:
            match = _UNRESOLVED.search(str(exc))
            if match:
                column = match.group(1) or match.group(2)
                upstream = ", ".join(sorted(compiler.relation_of(p).split(".")[-1] for p in parents))
                result["problem"] = (_line_of(model.raw_sql, column), f"column {column!r} does not exist in "
                                     f"{upstream or 'the tables this model reads'}",
                                     "check the spelling against the upstream model's columns")
                if problems is not None:
                    problems.append(Problem(model.file, *result["problem"]))
        except (ParseError, Exception):  # noqa: S110 - SQL sqlglot cannot read is left to the warehouse
            pass
        cache.put(model.name, key, result)
        cols[uid] = result.get("columns")
    cache.save()
    return cols


def check_columns(compiler: Compiler, warehouse: Warehouse | None) -> list[Problem]:
    problems: list[Problem] = []
    output_columns(compiler, warehouse, problems)
    return problems


def _data_parents(compiler: Compiler, uid: str) -> set[str]:
    """The relations a model reads, looking through ephemeral models (which are inlined as CTEs)."""
    out: set[str] = set()
    for parent in compiler.parents.get(uid, set()):
        if parent.startswith("model.") and compiler.mp.models[parent[6:]].materialized == "ephemeral":
            out |= _data_parents(compiler, parent)
        else:
            out.add(parent)
    return out


def _line_of(text: str, word: str) -> int | None:
    pattern = re.compile(r"(?<![\w.])" + re.escape(word) + r"\b|\." + re.escape(word) + r"\b")
    for i, line in enumerate(text.splitlines(), 1):
        if "ref(" in line and word not in line.split("ref(")[0]:
            continue
        if pattern.search(line):
            return i
    return None


class _Checked(TypedDict, total=False):
    """What checking a model's SQL found: its output columns (None: unknown), and a column it reads that
    does not exist upstream (line, message, hint)."""

    columns: list[str] | None
    problem: tuple[int | None, str, str]


class _Cache:
    """Check results by model and content hash, in state/model_checks.json (skips re-checking unchanged SQL)."""

    def __init__(self, compiler: Compiler) -> None:
        self.path: Path = compiler.mp.display_root / "state" / "model_checks.json"
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = {}
        self.data: dict[str, object] = data if isinstance(data, dict) else {}
        self.dirty = False

    def get(self, name: str, key: str) -> _Checked | None:
        entry = self.data.get(name)
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
        found = entry["result"]
        checked: _Checked = {"columns": found.get("columns")}
        if found.get("problem"):
            line, message, hint = found["problem"]
            checked["problem"] = (line, message, hint)
        return checked

    def put(self, name: str, key: str, result: _Checked) -> None:
        self.data[name] = {"key": key, "result": result}
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data))
        except OSError:
            pass
