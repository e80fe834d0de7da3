"""dbt's helper globals in opsloop's Jinja context: ``api.Relation``, ``flags``, ``{% call statement() %}``,
``set``/``set_strict``/``tojson``/``fromjson``/``modules``, and the small SQL helpers (``_lit``, ``_ask``,
``_schema_and_name``) that these and the ``adapter`` object share. Each is a plain function or a small class
reading the node being rendered from ``_Current``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import TYPE_CHECKING

from ._jinja_objects import Relation, _This
from ._render_errors import RenderError

if TYPE_CHECKING:
    from ..warehouse.base import QueryResult
    from ._jinja_objects import RenderContext, _Current
    from ._render import Renderer


def _lit(value: object) -> str:
    return "'" + str(value or "").replace("'", "''") + "'"


def _schema_and_name(relation: object) -> tuple[str, str]:
    if isinstance(relation, Relation):
        return relation.schema, relation.identifier
    if isinstance(relation, _This):
        this = relation._get()
        return this.schema, this.identifier
    text = str(relation).replace('"', "")
    schema, _, name = text.rpartition(".")
    return schema.rpartition(".")[2] or "main", name


def _ask(ctx: RenderContext, what: str, sql: str) -> QueryResult:
    if ctx.query is None:
        raise RenderError(f"{what} needs the warehouse, which this command does not open",
                          hint="run it with `opsloop build` / `opsloop compile`")
    try:
        return ctx.query(sql)
    except RenderError:
        raise
    except Exception as exc:
        raise RenderError(f"{what}: the warehouse refused the query: {str(exc).strip().splitlines()[0]}") from exc


class _RelationApi:
    """``api.Relation.create(database=, schema=, identifier=)``."""

    def __init__(self, renderer: Renderer) -> None:
        self._r = renderer

    def create(self, database: object = None, schema: object = None, identifier: object = None,
               type: object = None, **_: object) -> Relation:
        return self._r.relation(str(schema or self._r.target.get("schema") or ""), str(identifier or ""), database,
                                type)


class _Api:
    def __init__(self, renderer: Renderer) -> None:
        self.Relation = _RelationApi(renderer)


class _Flags:
    """dbt's ``flags``: what packages read of the invocation (``flags.WHICH``, ``flags.FULL_REFRESH``)."""

    WHICH = "build"
    FULL_REFRESH = False
    STORE_FAILURES = False
    EMPTY = False
    WARN_ERROR = False
    DEBUG = False

    def __getattr__(self, item: str) -> None:
        if item.startswith("__"):
            raise AttributeError(item)
        return None


class _Statement:
    """``{% call statement('name', fetch_result=True) %} sql {% endcall %}``: runs the SQL when executing."""

    def __init__(self, cur: _Current) -> None:
        self._cur = cur

    def __call__(self, name: str | None = None, fetch_result: bool = False, auto_begin: bool = True,
                 language: str = "sql", caller: Callable[[], object] | None = None, **_: object) -> str:
        from ._jinja_db import StatementResults, Table

        ctx = self._cur.ctx
        if caller is None or ctx is None:
            return ""
        sql = str(caller()).strip().rstrip(";")  # rendered while parsing too: its refs are dependencies
        if not ctx.execute:
            return ""
        found = _ask(ctx, "statement", sql)
        if name:
            if ctx.statements is None:
                ctx.statements = StatementResults()
            ctx.statements.store(name, Table(list(found.columns), list(found.rows)) if fetch_result else None)
        return ""


def _set(value: Iterable[object], default: object = None) -> object:
    try:
        return set(value)
    except TypeError:
        return default


def _set_strict(value: Iterable[object]) -> set[object]:
    return set(value)


def _fromjson(text: str, default: object = None) -> object:
    import json

    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return default


def _tojson(value: object, default: object = None) -> object:
    import json

    try:
        return json.dumps(value, sort_keys=False)
    except (TypeError, ValueError):
        return default


def _modules() -> SimpleNamespace:
    import datetime
    import itertools

    mods: dict[str, object] = {"datetime": datetime, "re": re, "itertools": itertools}
    try:
        import pytz

        mods["pytz"] = pytz
    except ImportError:  # pragma: no cover - pytz ships with dlt
        pass
    return SimpleNamespace(**mods)
