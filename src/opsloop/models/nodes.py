"""The nodes of a model project: models, seeds, sources and data tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._config import as_list

MATERIALIZATIONS = ("view", "table", "incremental", "ephemeral", "external")
INCREMENTAL_STRATEGIES = ("append", "merge", "delete+insert", "microbatch")
ON_SCHEMA_CHANGE = ("ignore", "fail", "append_new_columns", "sync_all_columns")


@dataclass
class Source:
    """One table of a ``sources:`` block; ``source('raw', 'events')`` resolves to ``schema.identifier``."""

    source_name: str
    name: str
    schema: str
    identifier: str
    file: str
    line: int | None
    columns: dict[str, str] = field(default_factory=dict)
    description: str = ""
    freshness: dict[str, object] | None = None
    """``warn_after`` / ``error_after`` (``{count, period}``) and ``filter``; None: not checked."""
    loaded_at_field: str | None = None
    external: str | None = None
    """dbt-duckdb's ``external_location``, formatted: the SQL that reads the files (``'data/x.parquet'``,
    ``read_csv('data/x.csv')``), used wherever ``source()`` names this table."""
    event_time: str | None = None
    """``config: {event_time: col}`` (the table's, else the source's): a microbatch model reads its batch's window."""

    @property
    def uid(self) -> str:
        return f"source.{self.source_name}.{self.name}"


@dataclass
class Model:
    name: str
    file: str
    """Path shown in messages (relative to the opsloop project folder)."""
    path: str
    """Path relative to the dbt project folder (``models/staging/stg_orders.sql``), for ``path:``."""
    raw_sql: str
    fqn: list[str]
    config: dict[str, object] = field(default_factory=dict)
    yaml_config: dict[str, object] = field(default_factory=dict)
    depends_on: set[str] = field(default_factory=set)
    ref_lines: dict[str, int] = field(default_factory=dict)
    captured: dict[str, object] = field(default_factory=dict)
    """What the model's own ``config(...)`` call set (cached with the parse)."""
    columns: dict[str, dict[str, object]] = field(default_factory=dict)
    description: str = ""
    schema: str = "main"
    alias: str = ""
    language: str = "sql"
    """``python`` for a ``.py`` model (``raw_sql`` then holds its code)."""

    @property
    def uid(self) -> str:
        return f"model.{self.name}"

    @property
    def materialized(self) -> str:
        return str(self.config.get("materialized", "view"))

    @property
    def tags(self) -> list[str]:
        return as_list(self.config.get("tags"))


@dataclass
class Seed:
    name: str
    file: str
    path: str
    config: dict[str, object] = field(default_factory=dict)
    schema: str = "main"
    alias: str = ""

    @property
    def uid(self) -> str:
        return f"seed.{self.name}"

    @property
    def tags(self) -> list[str]:
        return as_list(self.config.get("tags"))


@dataclass
class Snapshot:
    """A dbt snapshot: a ``{% snapshot %}`` block in ``snapshots/*.sql`` or a YAML entry with ``relation:``."""

    name: str
    file: str
    line: int | None
    path: str
    raw_sql: str
    """The query (the block's body, padded with newlines so its lines are the file's)."""
    fqn: list[str]
    config: dict[str, object] = field(default_factory=dict)
    depends_on: set[str] = field(default_factory=set)
    ref_lines: dict[str, int] = field(default_factory=dict)
    description: str = ""
    schema: str = "main"
    alias: str = ""

    @property
    def uid(self) -> str:
        return f"snapshot.{self.name}"

    @property
    def materialized(self) -> str:
        return "snapshot"

    @property
    def tags(self) -> list[str]:
        return as_list(self.config.get("tags"))


@dataclass
class DataTest:
    """A built-in generic test on a model, seed or source column, a singular test (``tests/*.sql``), or a
    unit test (``unit_tests:``; its given/expect rows in ``kwargs['_unit']``)."""

    name: str
    test: str
    """unique | not_null | accepted_values | relationships | singular | unit | generic (a ``test_<name>``
    macro)"""
    attached: str
    """uid of the model/seed/source the test checks."""
    column: str
    kwargs: dict[str, object]
    file: str
    line: int | None
    severity: str = "error"
    where: str | None = None
    depends_on: set[str] = field(default_factory=set)
    tags: list[str] = field(default_factory=list)
    raw_sql: str = ""
    """A singular test's SQL (selects the failing rows); for a custom generic test, the call of its macro."""
    fail_calc: str = "count(*)"
    warn_if: str = "!= 0"
    error_if: str = "!= 0"
    store_failures: bool | None = None
    store_failures_as: str | None = None
    """``table`` / ``view`` (stored whatever ``store_failures`` says) or ``ephemeral`` (not stored)."""
    alias: str = ""
    """The audit table's name when ``name`` is too long for one (as dbt shortens it, with an md5)."""

    @property
    def stores_failures(self) -> bool:
        """dbt's rule: ``store_failures_as`` wins when set; else ``store_failures``."""
        if self.store_failures_as:
            return self.store_failures_as in ("table", "view")
        return bool(self.store_failures)

    @property
    def uid(self) -> str:
        return f"test.{self.name}"

    def describe(self) -> str:
        """What a failure message names: ``unique on orders.id`` or ``singular test assert_positive``."""
        if self.test == "singular":
            return f"singular test {self.name}"
        if self.test == "unit":
            return f"unit test {self.name} on {self.attached.split('.', 1)[1]}"
        if self.test == "generic":
            on = self.attached.split('.', 1)[1] + (f".{self.column}" if self.column else "")
            return f"{self.kwargs.get('_macro')} on {on}"
        return f"{self.test} on {self.attached.split('.', 1)[1]}.{self.column}"
