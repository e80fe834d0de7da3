"""``syncs/*.yml``: typed config for one sync, and its mapping compiled to SQL.

A mapping value is one of:

- ``column_name`` — a column of the source;
- ``{sql: "lower(email)"}`` — a SQL expression over the source's columns (parsed with sqlglot);
- ``"{{ first_name }} {{ last_name }}"`` — a Jinja template over the row's columns, rendered per sent row.

The fingerprint of a row is md5 over every mapped value (for templates: over the columns they use),
computed in the warehouse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TriggerConfig(_Strict):
    """When a sync runs besides ``opsloop sync``: after its model builds, on a cron schedule, on an event."""

    after_build: bool = False
    cron: str | None = None
    event: str | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from croniter import croniter

            if not croniter.is_valid(value):
                raise ValueError(f"{value!r} is not a cron expression (e.g. '*/15 * * * *')")
        return value


class RateLimitConfig(_Strict):
    per_second: float | None = Field(default=None, gt=0)
    """Requests per second to the destination (pacing)."""
    per_day: int | None = Field(default=None, gt=0)
    """Requests per UTC day; when used up the run stops and the rest waits for the next run."""


class SyncConfig(_Strict):
    name: str
    model: str | None = None
    table: str | None = None
    sql: str | None = None
    key: str
    destination: dict[str, object]
    mapping: dict[str, object]
    mode: Literal["upsert", "update", "insert", "mirror"] = "upsert"
    trigger: TriggerConfig | Literal["manual", "after_build"] = "manual"
    null_policy: Literal["skip", "overwrite"] = "skip"
    batch_size: int | None = Field(default=None, gt=0, le=10000)
    """Rows per request; default: 100, or the destination's limit when lower."""
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    max_retries: int = Field(default=5, ge=0)
    """Runs that retry a failed row (with unchanged data) before giving up on it until its data changes."""
    max_delete_share: float = Field(default=0.2, ge=0, le=1)
    """A mirror run deleting more than this share of the records opsloop created stops (use --confirm-deletes)."""
    system: str | None = None
    """Origin guard: a mapped column ``col`` is not sent when the row's ``col__source`` equals this system."""
    enforce: bool = True
    """With ``system:`` naming a system of identity.yml: correct a record of that system that holds a losing
    value (a value other than the golden record's), even when the golden value did not change."""
    alert: dict[str, object] | None = None
    """A destination (slack, email, outbox) told once per status change: failing, then recovered."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(f"sync name {value!r} must be lowercase letters, digits and _ (rename the file)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> SyncConfig:
        given = [k for k in ("model", "table", "sql") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of model:, table: or sql: as the source of the rows")
        if not self.mapping:
            raise ValueError("mapping: is empty; map at least one destination field to a column")
        return self

    @property
    def triggers(self) -> TriggerConfig:
        if isinstance(self.trigger, TriggerConfig):
            return self.trigger
        return TriggerConfig(after_build=self.trigger == "after_build")


@dataclass
class FieldSpec:
    """One compiled mapping entry."""

    name: str
    kind: Literal["column", "sql", "jinja"]
    source: str
    columns: list[str] = field(default_factory=list)
    """Source columns the value depends on."""


def compile_mapping(mapping: dict[str, object],
                    dialect: str = "duckdb") -> tuple[list[FieldSpec], list[tuple[str, str]]]:
    """Compile ``mapping`` into FieldSpecs; returns (specs, [(field, problem)]). ``sql:`` expressions are
    written in the warehouse's own SQL (``dialect``, a sqlglot dialect name)."""
    specs: list[FieldSpec] = []
    problems: list[tuple[str, str]] = []
    for name, value in mapping.items():
        if isinstance(value, dict):
            if set(value) != {"sql"} or not isinstance(value["sql"], str):
                problems.append((name, "a mapping object takes one key, sql: \"<expression>\""))
                continue
            try:
                import sqlglot

                expr = sqlglot.parse_one(value["sql"], read=dialect)
            except Exception as exc:
                problems.append((name, f"the SQL expression does not parse: {exc}".splitlines()[0]))
                continue
            from sqlglot import exp

            if isinstance(expr, exp.Query) or not isinstance(expr, exp.Expression):
                problems.append((name, "sql: must be one expression over the source's columns, not a query"))
                continue
            columns = sorted({c.name for c in expr.find_all(exp.Column)})
            specs.append(FieldSpec(name, "sql", expr.sql(dialect), columns))
        elif isinstance(value, str) and ("{{" in value or "{%" in value):
            from jinja2 import TemplateSyntaxError, meta
            from jinja2.sandbox import SandboxedEnvironment

            try:
                ast = SandboxedEnvironment().parse(value)
            except TemplateSyntaxError as exc:
                problems.append((name, f"the template does not parse: {exc.message}"))
                continue
            specs.append(FieldSpec(name, "jinja", value, sorted(meta.find_undeclared_variables(ast))))
        elif isinstance(value, str) and value.strip():
            specs.append(FieldSpec(name, "column", value.strip(), [value.strip()]))
        else:
            problems.append((name, "map a destination field to a column name, {sql: ...} or a {{ template }}"))
    return specs, problems
