"""What a caller's query (``opsloop query``, ``POST /api/query``) may do: read the warehouse's tables.

A query is checked before it runs and refused (``QueryRefused``, a 400 with the reason) when it would
reach past the warehouse's own tables: host files (``read_text('.env')``, ``FROM 'file.csv'``, ``glob``),
the network (``read_parquet('http://...')``, ``dblink``), settings (``SET``, ``PRAGMA threads``,
``set_config``, ``current_setting``), extensions (``INSTALL``/``LOAD``), other databases (``ATTACH``),
or anything that writes. Which statements and functions pass:

- DuckDB: the engine's own parser decides (``extract_statements`` for the statement kind,
  ``json_serialize_sql`` for the tree), so there is no second parser whose reading could differ. One
  SELECT-like statement (SELECT, WITH, FROM, VALUES, SHOW, DESCRIBE, SUMMARIZE) or an allow-listed PRAGMA;
  table functions from an allow-list (``range``, ``unnest``, ``duckdb_tables`` ...); no scalar
  function that reads settings or the environment; no table name that is a file name (DuckDB's
  replacement scans read ``FROM "x.csv"`` from disk).
- Postgres: sqlglot parses; one SELECT/UNION/VALUES statement, no function from the file/admin/settings
  deny-list (``pg_read_file``, ``lo_import``, ``dblink``, ``set_config`` ...) and no catalog relation that
  holds secrets (``pg_authid``). The query then runs in a ``READ ONLY`` transaction with a
  ``statement_timeout``.

Why parse at all on DuckDB, rather than ``enable_external_access = false`` on the connection that
serves queries: in DuckDB (2.0) that setting and ``lock_configuration`` belong to the database
instance, not to a connection, so setting them on a query cursor turns them off for the server's
loader, seed loads (``read_csv``) and dlt pulls as well (tests/hostile/test_query_sandbox.py shows it),
and a second instance of the same file in one process is refused. A process that only queries (the CLI
without a server) locks its own instance down on top of the checks (``DuckDBWarehouse.lock_down``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from .._durations import parse_duration
from .._json import JsonValue
from ..errors import ConfigError, Problem, WarehouseError

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

DEFAULT_TIMEOUT = 30.0
"""Seconds a query may run before it is stopped (``OPSLOOP_QUERY_TIMEOUT``)."""
DEFAULT_LIMIT = 1000
"""Rows a query returns at most unless the caller asks for another limit."""
MAX_LIMIT = 1_000_000
"""The most rows a caller may ask one query for (more belongs in a model, a sync or an export)."""


def query_timeout(env: Mapping[str, str]) -> float:
    """Seconds a caller's query may run: ``OPSLOOP_QUERY_TIMEOUT`` (``30s``, ``2m``, a number of seconds)."""
    value = env.get("OPSLOOP_QUERY_TIMEOUT")
    if value is None or not value.strip():
        return DEFAULT_TIMEOUT
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ConfigError([Problem("OPSLOOP_QUERY_TIMEOUT", None, str(exc), "e.g. OPSLOOP_QUERY_TIMEOUT=30s")]) from exc
    if seconds <= 0:
        raise ConfigError([Problem("OPSLOOP_QUERY_TIMEOUT", None, f"{value!r} is not a positive duration",
                                   "e.g. OPSLOOP_QUERY_TIMEOUT=30s")])
    return seconds


class QueryRefused(WarehouseError):
    """A caller's query would do more than read the warehouse's tables; the message says what and why."""


class QueryTimeout(WarehouseError):
    """A caller's query ran longer than the query timeout and was stopped."""


WHAT_QUERIES_MAY_DO = ("a query may read the warehouse's tables only: one SELECT, WITH, FROM, VALUES, SHOW, "
                       "DESCRIBE or SUMMARIZE statement")

TOO_DEEP = ("the query is nested too deeply to be checked (hundreds of levels of parentheses or subqueries); "
            "flatten it")
HOST_FILES = "reading host files is not allowed in a query"
SETTINGS = "reading or changing the warehouse's settings is not allowed in a query"

# -- DuckDB ---------------------------------------------------------------------------------------

DUCKDB_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree",
    "duckdb_tables", "duckdb_views", "duckdb_columns", "duckdb_schemas", "duckdb_types", "duckdb_constraints",
    "duckdb_indexes", "duckdb_sequences", "duckdb_functions", "duckdb_keywords", "duckdb_dependencies",
    "pragma_table_info", "pragma_show", "pragma_version", "pragma_platform", "pragma_collations",
    "pg_timezone_names", "icu_calendar_names", "test_all_types",
})
"""Table functions that read only values or the catalog; every other one (read_csv, glob, query ...) is refused."""

DUCKDB_SCALAR_DENIED = {
    "current_setting": SETTINGS,
    "getvariable": SETTINGS,
    "getenv": "reading the server's environment is not allowed in a query",
    "which_secret": "reading the warehouse's secrets is not allowed in a query",
    "write_log": "writing to the warehouse's log is not allowed in a query",
}

DUCKDB_READABLE_SETTINGS = frozenset({
    "threads", "worker_threads", "memory_limit", "max_memory", "timezone", "calendar", "default_collation",
    "default_order", "default_null_order", "preserve_insertion_order", "enable_external_access",
    "lock_configuration", "python_enable_replacements", "autoload_known_extensions",
    "autoinstall_known_extensions", "enable_profiling", "schema", "search_path",
})
"""Settings ``current_setting('...')`` may read: none of them names a path, a secret or a URL."""

DUCKDB_PRAGMAS = {
    "table_info": "SELECT * FROM pragma_table_info({args})",
    "show": "SELECT * FROM pragma_show({args})",
    "version": "SELECT * FROM pragma_version()",
    "platform": "SELECT * FROM pragma_platform()",
    "collations": "SELECT * FROM pragma_collations()",
    "show_tables": "SHOW TABLES",
    "show_tables_expanded": "SHOW ALL TABLES",
}
"""The read-only PRAGMAs a query may use, as the SELECT each one runs as."""

DUCKDB_SHOW_SPECIAL = frozenset({'"tables"', "__show_tables_expanded", '"databases"'})

_STATEMENT_REASONS = {
    "SET": "changes the warehouse's settings",
    "PRAGMA": "changes or reads the warehouse's settings",
    "ATTACH": "opens another database file",
    "DETACH": "changes the warehouse's attached databases",
    "COPY": "reads or writes host files",
    "EXPORT": "writes host files",
    "LOAD": "installs or loads an extension",
    "CALL": "runs a procedure",
    "EXPLAIN": "is not one of the statements a query may run",
    "TRANSACTION": "controls transactions",
    "INSERT": "writes",
    "UPDATE": "writes",
    "DELETE": "writes",
    "CREATE": "writes",
    "DROP": "writes",
    "ALTER": "writes",
    "MERGE_INTO": "writes",
    "VACUUM": "writes",
    "ANALYZE": "writes statistics",
}

_FILE_LIKE = re.compile(r"[./\\:~*?]")
"""A table name with one of these is a file name or pattern to DuckDB's replacement scans."""


def _refuse_statement(kind: str, text: str) -> QueryRefused:
    word = _first_word(text) or kind
    reason = _STATEMENT_REASONS.get(kind, "is not one of the statements a query may run")
    if reason == "writes":
        return QueryRefused(f"a query is read-only; {word} writes: change data with a model instead "
                            f"({WHAT_QUERIES_MAY_DO})")
    return QueryRefused(f"{word} is not allowed in a query: it {reason} ({WHAT_QUERIES_MAY_DO})")


def _first_word(text: str) -> str:
    stripped = re.sub(r"(--[^\n]*\n?|/\*.*?\*/|\s|\()+", " ", text, flags=re.S).strip()
    return stripped.split(" ", 1)[0].upper() if stripped else ""


def duckdb_checked(cursor: DuckDBPyConnection, sql: str) -> str:
    """The statement to run for ``sql`` on a DuckDB ``cursor``; raises ``QueryRefused`` for anything
    but a read of the warehouse's tables (see the module docstring)."""
    import duckdb

    _valid_text(sql)
    try:
        statements = cursor.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"cannot parse the query: {_first_line(exc)}") from exc
    stmt = _only_statement(statements)
    kind = str(stmt.type).rsplit(".", 1)[-1]
    text = str(stmt.query)
    if kind == "PRAGMA":
        text = _duckdb_pragma(text)
    elif kind != "SELECT":
        raise _refuse_statement(kind, text)
    [(serialized, database)] = cursor.execute("SELECT json_serialize_sql(?), current_database()", [text]).fetchall()
    tree: JsonValue
    try:
        tree = json.loads(serialized)
    except RecursionError:  # deeper than Python's decoder goes (a chain of ~500 operators): DuckDB decodes it
        tree = _json_without_recursion(cursor, serialized)
    if not isinstance(tree, dict):
        raise QueryRefused(f"cannot check the query; {WHAT_QUERIES_MAY_DO}")
    if tree.get("error"):
        raise QueryRefused(f"cannot check the query: {tree.get('error_message')}; {WHAT_QUERIES_MAY_DO}")
    catalogs = {"", "system", "temp", str(database)}
    _walk_duckdb(tree, catalogs)
    return text


def _duckdb_pragma(text: str) -> str:
    import sqlglot
    from sqlglot import exp

    try:
        parsed = sqlglot.parse_one(text, read="duckdb")
    except sqlglot.errors.SqlglotError as exc:
        raise QueryRefused(f"cannot parse the query: {_first_line(exc)}") from exc
    except RecursionError as exc:
        raise QueryRefused(TOO_DEEP) from exc
    target = parsed.this if isinstance(parsed, exp.Pragma) else None
    name, args = "", ""
    if isinstance(target, exp.Func):
        name = (target.name if isinstance(target, exp.Anonymous) else target.sql_name()).lower()
        args = ", ".join(a.sql("duckdb") for a in target.expressions)
    elif isinstance(target, exp.Column | exp.Var | exp.Identifier):
        name = target.name.lower()
    if name not in DUCKDB_PRAGMAS:
        shown = name or _first_word(text)
        allowed = ", ".join(sorted(DUCKDB_PRAGMAS))
        raise QueryRefused(f"PRAGMA {shown} is not allowed in a query: PRAGMAs change or read the warehouse's "
                           f"settings; the read-only ones a query may use are {allowed}")
    return DUCKDB_PRAGMAS[name].format(args=args)


def _json_without_recursion(cursor: DuckDBPyConnection, serialized: str) -> JsonValue:
    """``serialized`` decoded by DuckDB's ``json_tree`` (no recursion limit) and rebuilt in a loop."""
    rows = cursor.execute("SELECT id, parent, key, type, atom FROM json_tree(?::JSON) ORDER BY id",
                          [serialized]).fetchall()
    nodes: dict[int, JsonValue] = {}
    root: JsonValue = None
    for node_id, parent, key, kind, atom in rows:
        value: JsonValue = {} if kind == "OBJECT" else [] if kind == "ARRAY" else json.loads(atom or "null")
        nodes[node_id] = value
        container = None if parent is None else nodes[parent]
        if parent is None:
            root = value
        elif isinstance(container, dict):
            container[key] = value
        elif isinstance(container, list):
            container.append(value)
    return root


def _walk_duckdb(tree: JsonValue, catalogs: set[str]) -> None:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            _check_duckdb_node(node, catalogs)
            stack.extend(v for v in node.values() if isinstance(v, dict | list))


def _check_duckdb_node(node: dict[str, JsonValue], catalogs: set[str]) -> None:
    kind, cls = node.get("type"), node.get("class")
    if cls == "FUNCTION":
        name = str(node.get("function_name", "")).lower()
        if name == "current_setting" and _readable_setting(node):
            return
        if name in DUCKDB_SCALAR_DENIED:
            readable = ", ".join(sorted(DUCKDB_READABLE_SETTINGS))
            allowed = f" (it may read {readable})" if name == "current_setting" else ""
            raise QueryRefused(f"{DUCKDB_SCALAR_DENIED[name]}: {name}{allowed}")
    elif kind == "TABLE_FUNCTION":
        function = node.get("function")
        name = str(function.get("function_name", "")).lower() if isinstance(function, dict) else ""
        if name not in DUCKDB_TABLE_FUNCTIONS:
            raise QueryRefused(_table_function_reason(name))
    elif kind == "BASE_TABLE":
        _check_table_name(str(node.get("table_name", "")), str(node.get("schema_name", "")),
                          str(node.get("catalog_name", "")), catalogs)
    elif kind == "SHOW_REF":
        table = str(node.get("table_name", ""))
        if table and node.get("show_type") == "SHOW_SPECIAL" and table not in DUCKDB_SHOW_SPECIAL:
            raise QueryRefused(f"SHOW {table.strip(chr(34)).upper()} is not allowed in a query: it reads the "
                               "warehouse's settings; SHOW TABLES, SHOW ALL TABLES and DESCRIBE are allowed")


def _readable_setting(function: dict[str, JsonValue]) -> bool:
    arguments = function.get("arguments") or function.get("children") or []
    if not isinstance(arguments, list) or len(arguments) != 1 or not isinstance(arguments[0], dict):
        return False
    argument = arguments[0].get("expression", arguments[0])
    if not isinstance(argument, dict):
        return False
    literal = argument.get("literal")
    if argument.get("class") != "CONSTANT" or not isinstance(literal, dict) or literal.get("kind") != "STRING":
        return False
    return str(literal.get("text", "")).lower() in DUCKDB_READABLE_SETTINGS


def _table_function_reason(name: str) -> str:
    if name in ("query", "query_table", "json_execute_serialized_sql"):
        return f"running SQL or reading a table named in a string is not allowed in a query: {name}"
    if name.startswith(("read_", "parquet_", "sniff_", "glob", "iceberg", "delta", "sqlite", "postgres",
                        "mysql", "arrow", "pandas", "python", "json_execute")) or name.endswith("_scan"):
        return f"{HOST_FILES}: {name} (a query may read the warehouse's own tables; load files as seeds or sources)"
    if name in ("duckdb_settings", "duckdb_databases", "duckdb_extensions", "duckdb_secrets",
                "duckdb_temporary_files", "duckdb_extension_repositories", "which_secret"):
        return f"{SETTINGS}: {name}"
    return (f"the table function {name} is not allowed in a query; the allowed ones are "
            f"{', '.join(sorted(DUCKDB_TABLE_FUNCTIONS))}")


def _check_table_name(table: str, schema: str, catalog: str, catalogs: set[str]) -> None:
    if _FILE_LIKE.search(table) or _FILE_LIKE.search(schema):
        shown = ".".join(p for p in (schema, table) if p)
        raise QueryRefused(f"{HOST_FILES}: {shown!r} is a file name, not a table in the warehouse")
    if catalog and catalog not in catalogs:
        raise QueryRefused(f"a query may read the warehouse's own tables only, not the database {catalog!r}")


def _valid_text(sql: str) -> None:
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise QueryRefused(f"the query is not valid text: {sql[exc.start:exc.end]!r} at character {exc.start} is "
                           "half of a character (a lone surrogate); remove it") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- Postgres -------------------------------------------------------------------------------------

POSTGRES_DENIED_FUNCTIONS = re.compile(
    r"^(pg_read_(binary_)?file|pg_ls_\w+|pg_stat_file|pg_file_\w+|pg_logdir_ls|lo_\w+|loread|lowrite"
    r"|dblink\w*|pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile\w*|pg_promote"
    r"|pg_switch_wal|pg_create_\w+|pg_drop_\w+|pg_replication_\w+|pg_logical_\w+|pg_backup_\w+|pg_start_backup"
    r"|pg_stop_backup|pg_import_system_collations|pg_advisory\w*|pg_try_advisory\w*|pg_notify|pg_wal_replay_\w+"
    r"|set_config|current_setting|pg_show_all_settings|pg_show_all_file_settings|pg_hba_file_rules"
    r"|pg_ident_file_mappings|pg_config|pg_current_logfile|pg_conf_load_time"
    r"|query_to_xml\w*|cursor_to_xml\w*|table_to_xml\w*|schema_to_xml\w*|database_to_xml\w*"
    r"|pg_get_keywords_x|pg_sleep_for_x)$"
)
"""Functions that read host files, reach other servers, change settings or run a SQL string."""

POSTGRES_DENIED_RELATIONS = frozenset({
    "pg_authid", "pg_shadow", "pg_user_mapping", "pg_user_mappings", "pg_file_settings", "pg_hba_file_rules",
    "pg_ident_file_mappings", "pg_settings", "pg_config", "pg_largeobject", "pg_statistic",
})
"""Catalog relations that hold password hashes, server files or settings."""


def _postgres_reason(name: str) -> str:
    if name.startswith(("pg_read", "pg_ls", "pg_stat_file", "pg_file", "lo_", "lo", "pg_logdir", "pg_current_logfile")):
        return HOST_FILES
    if name.startswith("dblink"):
        return "reaching other servers is not allowed in a query"
    if name in ("set_config", "current_setting") or "setting" in name or name in ("pg_config", "pg_conf_load_time"):
        return SETTINGS
    if name.endswith("to_xml") or "_to_xml" in name:
        return "running a SQL string is not allowed in a query"
    return "server administration functions are not allowed in a query"


def postgres_check(sql: str) -> None:
    """Raise ``QueryRefused`` unless ``sql`` is one read-only statement using no file/admin function."""
    import sqlglot
    from sqlglot import exp

    _valid_text(sql)
    if re.search(r"\bU&", sql, flags=re.I):
        raise QueryRefused("Unicode escapes (U&'...' / U&\"...\") are not allowed in a query; write the "
                           "characters themselves")
    try:
        statements = [s for s in sqlglot.parse(sql, read="postgres") if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        raise QueryRefused(f"cannot parse the query: {_first_line(exc)}") from exc
    except RecursionError as exc:
        raise QueryRefused(TOO_DEEP) from exc
    stmt = _only_statement(statements)
    if not isinstance(stmt, exp.Select | exp.Union | exp.Intersect | exp.Except | exp.Values):
        kind = _first_word(sql)
        writes = isinstance(stmt, exp.Insert | exp.Update | exp.Delete | exp.Create | exp.Drop | exp.Alter |
                            exp.Merge | exp.TruncateTable)
        if writes:
            raise QueryRefused(f"a query is read-only; {kind} writes: change data with a model instead "
                               f"({WHAT_QUERIES_MAY_DO})")
        raise QueryRefused(f"{kind} is not allowed in a query ({WHAT_QUERIES_MAY_DO})")
    for node in stmt.walk():
        if isinstance(node, exp.Insert | exp.Update | exp.Delete | exp.Create | exp.Drop | exp.Alter | exp.Merge):
            raise QueryRefused(f"a query is read-only; this one writes ({WHAT_QUERIES_MAY_DO})")
        if isinstance(node, exp.Lock):
            raise QueryRefused("a query may not lock rows (FOR UPDATE / FOR SHARE)")
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if POSTGRES_DENIED_FUNCTIONS.match(name):
                raise QueryRefused(f"{_postgres_reason(name)}: {name}")
        if (isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier)
                and node.name.lower() in POSTGRES_DENIED_RELATIONS):
            raise QueryRefused(f"reading the server's passwords, files or settings is not allowed in a query: "
                               f"{node.name.lower()}")
    # a name sqlglot read as something else (a quoted identifier called like a function) is still refused
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_$]*", sql):
        if POSTGRES_DENIED_FUNCTIONS.match(word.lower()) and re.search(rf"{re.escape(word)}\"?\s*\(", sql):
            raise QueryRefused(f"{_postgres_reason(word.lower())}: {word.lower()}")


# -- any other engine ------------------------------------------------------------------------------

GENERIC_DENIED_FUNCTIONS = re.compile(r"^(read_\w+|file|url|s3\w*|hdfs|gcs|azure\w*|remote\w*|mysql|postgresql"
                                      r"|sqlite|jdbc|odbc|input|executable|getenv|current_setting|set_config)$")


def generic_check(sql: str, dialect: str) -> None:
    """The read-only check for engines without their own sandbox (ClickHouse, Snowflake, BigQuery)."""
    import sqlglot
    from sqlglot import exp

    _valid_text(sql)
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        raise QueryRefused(f"cannot parse the query: {_first_line(exc)}") from exc
    except RecursionError as exc:
        raise QueryRefused(TOO_DEEP) from exc
    if len(statements) != 1:
        raise QueryRefused(f"a query is exactly one statement ({WHAT_QUERIES_MAY_DO})")
    stmt = statements[0]
    allowed = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Describe, exp.Show, exp.Values)
    if not isinstance(stmt, allowed):
        raise QueryRefused(f"a query is read-only; {_first_word(sql)} is not allowed ({WHAT_QUERIES_MAY_DO})")
    for node in stmt.walk():
        if isinstance(node, exp.Insert | exp.Delete | exp.Update | exp.Create | exp.Drop | exp.Alter):
            raise QueryRefused(f"a query is read-only; this one writes ({WHAT_QUERIES_MAY_DO})")
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if GENERIC_DENIED_FUNCTIONS.match(name):
                raise QueryRefused(f"{HOST_FILES}: {name}")


_S = TypeVar("_S")


def _only_statement(statements: Sequence[_S]) -> _S:
    """The one statement of a query, or ``QueryRefused`` saying there is none or more than one."""
    if not statements:
        raise QueryRefused(f"the query is empty; {WHAT_QUERIES_MAY_DO}")
    if len(statements) > 1:
        raise QueryRefused(f"a query is one statement; this one has {len(statements)} (remove the extra ';' "
                           "and what follows)")
    return statements[0]
