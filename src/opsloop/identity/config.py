"""Typed models of ``identity.yml`` and ``segments/*.yml``. Unknown keys are errors, so typos are caught."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._durations import parse_duration, parse_size

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
DEFAULT_BLOCK = ("", "unknown", "none", "null", "n/a", "na", "-", "test", "test@example.com")
"""Values never used to link records, for every identifier type (after normalising)."""

BUILTIN_NORMALIZERS = ("email", "phone", "lower", "trim", "digits", "none")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _check_name(value: str, what: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(f"{what} {value!r} must be lower_snake_case (letters, digits, _; a letter first)")
    if "__" in value:
        raise ValueError(f"{what} {value!r} may not contain '__' (reserved for <field>__source columns)")
    return value


class IdentifierConfig(_Strict):
    """One identifier type (email, phone, crm_id ...): how to normalise it and the limits on it."""

    normalize: str = "trim"
    """email | phone | lower | trim | digits | none, or a Jinja template using ``value`` ("{{ value | upper }}")."""
    region: str = "US"
    """Default region for phone numbers written without a country code (ISO 3166 alpha-2)."""
    block: list[str] = Field(default_factory=list)
    """Values of this type that never link records (normalised before comparing)."""
    max_per_person: int | None = Field(default=None, ge=1)
    """At most this many distinct values of this type in one person; a merge that would exceed it is refused."""
    max_records_per_value: int | None = Field(default=None, ge=2)
    """A value held by more records than this is treated as shared (a front-desk number) and never links."""

    @field_validator("normalize")
    @classmethod
    def _normalize(cls, value: str) -> str:
        if value not in BUILTIN_NORMALIZERS and "{{" not in value:
            raise ValueError(
                f"unknown normaliser {value!r}; use one of {', '.join(BUILTIN_NORMALIZERS)} "
                "or a Jinja template such as '{{ value | trim | upper }}'"
            )
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.match(r"^[A-Z]{2}$", value):
            raise ValueError(f"region {value!r} must be a two-letter ISO country code such as US or GB")
        return value


class SourceConfig(_Strict):
    """One table or model of records from one system (app, crm, support ...)."""

    system: str
    relation: str | None = None
    """A warehouse table, view or model relation (``schema.table``)."""
    sql: str | None = None
    """Or a SELECT giving the rows."""
    record_id: str = "id"
    """Column (or SQL expression) with the record's id in that system."""
    updated_at: str | None = None
    """Column (or SQL expression) with when the system last changed the record; provenance reads it."""
    identifiers: dict[str, str | list[str]] = Field(default_factory=dict)
    """Identifier type -> column or SQL expression (a list for several columns of one type)."""
    fields: dict[str, str] = Field(default_factory=dict)
    """Golden-record field -> column or SQL expression."""

    @field_validator("system")
    @classmethod
    def _system(cls, value: str) -> str:
        return _check_name(value, "system")

    @model_validator(mode="after")
    def _one_of(self) -> SourceConfig:
        if (self.relation is None) == (self.sql is None):
            raise ValueError("give exactly one of relation: (a table or model) or sql: (a SELECT)")
        if not self.identifiers:
            raise ValueError("a source needs identifiers: (identifier type -> column), or it cannot be linked")
        return self


Survivorship = Literal["priority", "most_recent", "most_frequent", "sql"]
FieldType = Literal["varchar", "integer", "bigint", "double", "boolean", "date", "timestamp"]


class FieldConfig(_Strict):
    """How the golden record chooses one value for a field among the linked records."""

    survivorship: Survivorship = "most_recent"
    priority: list[str] = Field(default_factory=list)
    """Systems in order of trust (first wins). With priority survivorship, a lower-ranked system never overrides
    a non-null value from a higher-ranked one; with other rules it breaks ties."""
    sql: str | None = None
    """An aggregate over ``value``, ``system`` and ``updated_at`` for survivorship: sql, e.g. ``max(value)``."""
    type: FieldType = "varchar"
    normalize: str | None = None
    """Normalise values like this identifier type (``phone`` stores E.164 in the golden record)."""

    @model_validator(mode="after")
    def _needs(self) -> FieldConfig:
        if self.survivorship == "priority" and not self.priority:
            raise ValueError("survivorship: priority needs priority: [system, ...] (most trusted first)")
        if self.survivorship == "sql" and not self.sql:
            raise ValueError("survivorship: sql needs sql: an aggregate over value, e.g. max(value)")
        if self.survivorship != "sql" and self.sql:
            raise ValueError("sql: is only used with survivorship: sql")
        return self


class IdentityConfig(_Strict):
    """``identity.yml``."""

    identifiers: dict[str, IdentifierConfig]
    merge_rules: list[str | list[str]]
    """Identifier types that link records, strongest first; a list links records that share all of them."""
    sources: list[SourceConfig]
    fields: dict[str, FieldConfig] = Field(default_factory=dict)
    block: list[str] = Field(default_factory=lambda: list(DEFAULT_BLOCK))
    """Values that never link records, for every identifier type."""
    links: list[tuple[str, str]] = Field(default_factory=list)
    """Manual overrides: pairs of ``system:record_id`` that are the same person."""
    unlinks: list[tuple[str, str]] = Field(default_factory=list)
    """Manual overrides: pairs of ``system:record_id`` that are never the same person."""
    schedule: str | None = None
    """Rebuild this often (``15m``, ``1h``) besides after the models it reads are rebuilt."""
    memory_limit: str | None = None
    """DuckDB's memory_limit during builds (``1GB``): DuckDB spills to disk rather than grow past it."""

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)
        return value

    @field_validator("identifiers", "fields")
    @classmethod
    def _names(cls, value: dict[str, object]) -> dict[str, object]:
        for name in value:
            _check_name(name, "name")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("links", "unlinks")
    @classmethod
    def _pairs(cls, value: list[tuple[str, str]]) -> list[tuple[str, str]]:
        for a, b in value:
            for node in (a, b):
                if ":" not in node:
                    raise ValueError(f"{node!r} must be system:record_id, e.g. crm:1001")
        return value

    @property
    def schedule_seconds(self) -> float | None:
        return parse_duration(self.schedule) if self.schedule else None

    def rule_types(self, rule: str | list[str]) -> list[str]:
        return [rule] if isinstance(rule, str) else list(rule)


class Condition(_Strict):
    """One YAML condition on a golden-record field."""

    field: str
    equals: object = None
    not_equals: object = None
    in_: list[object] | None = Field(default=None, alias="in")
    not_in: list[object] | None = None
    gt: object = None
    gte: object = None
    lt: object = None
    lte: object = None
    contains: str | None = None
    is_null: bool | None = None
    within_last: str | None = None
    """The field is a time within this duration of now (``7d``)."""

    @model_validator(mode="after")
    def _one(self) -> Condition:
        ops = [k for k in ("equals", "not_equals", "in_", "not_in", "gt", "gte", "lt", "lte", "contains", "is_null",
                           "within_last") if getattr(self, k) is not None]
        if len(ops) != 1:
            raise ValueError(
                "a condition needs exactly one operator: equals, not_equals, in, not_in, gt, gte, lt, lte, "
                "contains, is_null, within_last"
            )
        if self.within_last is not None:
            parse_duration(self.within_last)
        return self

    @property
    def op(self) -> str:
        for k in ("equals", "not_equals", "in_", "not_in", "gt", "gte", "lt", "lte", "contains", "is_null",
                  "within_last"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated")


class ConditionGroup(_Strict):
    all: list[Condition | ConditionGroup] | None = None
    any: list[Condition | ConditionGroup] | None = None

    @model_validator(mode="after")
    def _one(self) -> ConditionGroup:
        if (self.all is None) == (self.any is None):
            raise ValueError("a condition group needs exactly one of all: or any:")
        return self


class SegmentConfig(_Strict):
    """``segments/<name>.yml``: an audience over the golden record (and models)."""

    name: str
    description: str = ""
    where: str | None = None
    """A SQL condition over the columns of identity.golden_records."""
    sql: str | None = None
    """A SELECT returning a ``person_id`` column; may join models."""
    conditions: ConditionGroup | None = None
    """YAML conditions over golden-record fields (all: / any:)."""
    schedule: str | None = None
    """Also re-evaluate this often (``15m``)."""
    initial_events: bool = False
    """Emit segment.entered for everyone already in the segment the first time it is evaluated."""
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "segment name")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _one_of(self) -> SegmentConfig:
        given = [k for k in ("where", "sql", "conditions") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a segment needs exactly one of where: (SQL condition), sql: (a SELECT of person_id) "
                             "or conditions: (all:/any: lists)")
        return self

    @property
    def schedule_seconds(self) -> float | None:
        return parse_duration(self.schedule) if self.schedule else None
