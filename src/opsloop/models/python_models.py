"""Python models (``models/**/*.py`` with ``def model(dbt, session)``) as dbt-duckdb runs them.

Parsing reads the file's ``dbt.ref(...)``, ``dbt.source(...)`` and ``dbt.config(...)`` calls with Python's
``ast`` (constant arguments, as dbt requires), so the DAG and configs are known without running it. At
build time the module runs in this process on the model's DuckDB session: ``dbt.ref('x')`` and
``dbt.source('s', 't')`` return DuckDB relations, ``session`` is the DuckDB connection, and what
``model()`` returns (a DuckDB relation, a pandas or polars DataFrame, an Arrow table) becomes the
model's table (``create or replace table ... as select * from`` it). ``incremental`` models get
``dbt.is_incremental`` true once their table exists, and their rows are merged as SQL models' are.
"""

from __future__ import annotations

import ast
import traceback
from typing import TYPE_CHECKING

from ..errors import Problem
from ..warehouse import Warehouse
from .nodes import Model

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection, DuckDBPyRelation

    from .compiler import Compiler


class PythonModelError(Exception):
    """A Python model failed; ``line`` is the line of the model file where it did."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def _const(node: ast.expr) -> object:
    return ast.literal_eval(node)


def parse(compiler: Compiler, model: Model) -> list[Problem]:
    """The model's refs, sources and config, read from its code; problems with file:line."""
    from ._render import RenderError

    problems: list[Problem] = []
    model.depends_on = set()
    try:
        tree = ast.parse(model.raw_sql, filename=model.file)
    except SyntaxError as exc:
        return [Problem(model.file, exc.lineno, f"Python syntax error: {exc.msg}")]
    if not any(isinstance(n, ast.FunctionDef) and n.name == "model" for n in tree.body):
        return [Problem(model.file, 1, "a Python model needs a top-level def model(dbt, session): returning its "
                        "rows (a DuckDB relation or a DataFrame)")]
    captured: dict[str, object] = {}
    ref, source = compiler._resolvers("", model.depends_on, model.ref_lines)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "dbt"):
            continue
        what = node.func.attr
        if what not in ("ref", "source", "config"):
            continue
        try:
            args = [_const(a) for a in node.args]
            kwargs = {str(k.arg): _const(k.value) for k in node.keywords if k.arg}
        except ValueError:
            problems.append(Problem(model.file, node.lineno, f"dbt.{what}() takes constant arguments only (strings, "
                                    "numbers, lists), as in dbt"))
            continue
        try:
            if what == "ref":
                ref(*args, **kwargs)
                uid = next((u for u in model.depends_on if u.split(".", 1)[1] == str(kwargs.get("name") or args[-1])),
                           None)
                if uid:
                    model.ref_lines[uid] = node.lineno
            elif what == "source":
                source(*args, **kwargs)
            else:
                captured.update(kwargs)
        except RenderError as exc:
            problems.append(Problem(model.file, node.lineno, str(exc), exc.hint))
        except TypeError as exc:
            problems.append(Problem(model.file, node.lineno, f"dbt.{what}(): {exc}"))
    model.captured = dict(captured)
    from .project import merge_config

    model.config = merge_config(model.config, captured)
    if "materialized" not in captured and model.config.get("materialized", "view") == "view":
        model.config["materialized"] = "table"  # dbt's default for Python models
    mat = model.config.get("materialized")
    strategy = model.config.get("incremental_strategy")
    if mat == "incremental" and strategy in ("merge", "delete+insert") and not model.config.get("unique_key"):
        problems.append(Problem(model.file, 1, f"incremental_strategy {strategy!r} needs unique_key",
                                "add unique_key='id' to dbt.config()"))
    if mat not in ("table", "incremental"):
        line = next((n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                     and n.func.attr == "config"), 1)
        problems.append(Problem(model.file, line, f"Python model {model.name!r}: materialized {mat!r} is not "
                                "supported for Python models (dbt builds them as tables or incremental tables)",
                                "use materialized='table' or 'incremental'"))
    return problems


class _Config:
    def __init__(self, config: dict[str, object]) -> None:
        self._config = config

    def __call__(self, *args: object, **kwargs: object) -> str:
        return ""

    def get(self, key: str, default: object = None) -> object:
        return self._config.get(key, default)


class _Dbt:
    """The ``dbt`` argument of ``model(dbt, session)``."""

    def __init__(self, compiler: Compiler, model: Model, con: DuckDBPyConnection, this: str) -> None:
        self._c = compiler
        self._con = con
        self.config = _Config(dict(model.config))
        self.this = this
        self.is_incremental = False

    def ref(self, *args: str, **kwargs: object) -> DuckDBPyRelation:
        name = str(kwargs.get("name") or args[-1])
        mp = self._c.mp
        node = mp.models.get(name) or mp.seeds.get(name) or mp.snapshots.get(name)
        if node is None:
            raise PythonModelError(f"dbt.ref({name!r}) names no model or seed")
        return self._con.sql(f"select * from {self._c.rel_text(*self._c.node_relation(node))}")

    def source(self, source_name: str, table_name: str) -> DuckDBPyRelation:
        src = self._c.mp.sources[(source_name, table_name)]
        return self._con.sql(f"select * from {self._c.rel_text(src.schema, src.identifier)}")


def build(compiler: Compiler, model: Model, wh: Warehouse, target: str, this: str | None = None,
          is_incremental: bool = False) -> None:
    """Run the model's code and write what it returns into ``target`` (a table; for an incremental build,
    the new rows' temporary table, with ``this`` the model's own)."""
    con: DuckDBPyConnection | None = getattr(wh, "con", None)
    if wh.dialect != "duckdb" or con is None:
        raise PythonModelError(f"Python models run on DuckDB only for now (this warehouse is {wh.dialect})")
    namespace: dict[str, object] = {"__name__": f"opsloop_model_{model.name}"}
    try:
        exec(compile(model.raw_sql, model.file, "exec"), namespace)  # noqa: S102 - the project's own model code
        dbt = _Dbt(compiler, model, con, this or target)
        dbt.is_incremental = is_incremental
        model_fn = namespace["model"]
        if not callable(model_fn):
            raise TypeError("model is not a function; define def model(dbt, session):")
        result = model_fn(dbt, con)
    except PythonModelError:
        raise
    except Exception as exc:
        line = next((f.lineno for f in reversed(traceback.extract_tb(exc.__traceback__)) if f.filename == model.file),
                    None)
        raise PythonModelError(f"{type(exc).__name__}: {exc}", line) from exc
    if result is None:
        raise PythonModelError("model() returned None; return a DuckDB relation or a DataFrame")
    view = f"__opsloop_py_{model.name}"
    import duckdb

    if isinstance(result, duckdb.DuckDBPyRelation):
        result.create_view(view, replace=True)
        registered = False
    else:
        try:
            con.register(view, result)
        except Exception as exc:
            raise PythonModelError(f"model() returned a {type(result).__name__}; return a DuckDB relation, a pandas "
                                   f"or polars DataFrame or an Arrow table ({exc})") from exc
        registered = True
    try:
        con.execute(f"create or replace table {target} as select * from {view}")
    finally:
        if registered:
            con.unregister(view)
        else:
            con.execute(f"drop view if exists {view}")
