"""What each system holds for each person, as the last identity build saw it — the read side syncs use to
enforce the information hierarchy.

A sync that writes the golden record into a system (its ``system:``) compares, per person and field, the
value that system holds (from the records its latest pull loaded, normalised as the build normalises them:
phones in E.164) with the winning value, and corrects the system when it holds a losing one.

``holdings(project, "crm")`` is None when ``identity.yml`` has no source for that system; otherwise its
``select(fields)`` is one SELECT over ``identity.graph``, ``identity.records`` and ``identity.field_values``
(this package owns those tables) giving, per ``person_id``, for each field: the value the system holds, when
the system set it, and the system's record id. A record that exists but has no value for the field holds
NULL (set when the record last changed). When a person has several records in the system, the value set last
stands for the system.

``FieldRule`` carries the survivorship of a field (rule, priority list, type) for the correction events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._sql import literal, quote
from .project_files import identity_of

if TYPE_CHECKING:
    from ..project.loader import Project

_TYPES = {"varchar": "VARCHAR", "integer": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE",
          "boolean": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMPTZ"}


@dataclass(frozen=True)
class FieldRule:
    """The information hierarchy of one golden-record field."""

    field: str
    survivorship: str
    """priority | most_recent | most_frequent | sql"""
    priority: tuple[str, ...]
    """Systems in order of trust, most trusted first (may be empty)."""
    type: str
    """The field's type in identity.yml (``varchar`` by default)."""

    def rank(self, system: str | None) -> int | None:
        """1 for the most trusted system of ``priority``; None for a system not in the list."""
        if system is None or system not in self.priority:
            return None
        return self.priority.index(system) + 1

    def differs(self, held: str, value: str) -> str:
        """SQL: the held value (VARCHAR, as the build stored it) is not the value ``value`` (the sync's column),
        compared as the field's type so that ``5`` and ``5.0`` of a double are the same value."""
        sql_type = _TYPES[self.type]
        if sql_type == "VARCHAR":
            return f"({held} IS DISTINCT FROM CAST({value} AS VARCHAR))"
        return f"(TRY_CAST({held} AS {sql_type}) IS DISTINCT FROM TRY_CAST({value} AS {sql_type}))"

    def as_dict(self) -> dict[str, object]:
        return {"survivorship": self.survivorship, "priority": list(self.priority)}


@dataclass(frozen=True)
class Holdings:
    """The golden-record fields one system's sources map, and how to read what the system holds."""

    system: str
    rules: dict[str, FieldRule]
    """Golden field -> its rule, for every field some source of ``system`` maps (``fields:`` in identity.yml)."""

    def select(self, fields: Sequence[str]) -> str:
        """One row per person with a record in the system: ``person_id``, and per field ``f`` (of ``rules``)
        the columns ``"f"`` (the value held), ``"f__at"`` (when the system set it) and ``"f__record"``."""
        wanted = [f for f in dict.fromkeys(fields) if f in self.rules]
        if not wanted:
            raise ValueError(f"system {self.system!r} maps none of {list(fields)}")
        system = literal(self.system)
        per_record, per_person = [], []
        for i, f in enumerate(wanted):
            lit = literal(f)
            per_record += [f"max(v.value) FILTER (WHERE v.field = {lit}) AS v{i}",
                           f"max(v.updated_at) FILTER (WHERE v.field = {lit}) AS a{i}"]
            # the record's own time for a field it has no value for (it was cleared, or never set)
            at = f"coalesce(a{i}, record_at)"
            # arg_max_null keeps a NULL value of the latest record (arg_max would skip to an older one)
            per_person += [f"arg_max_null(v{i}, {at}) AS {quote(f)}", f"max({at}) AS {quote(f + '__at')}",
                           f"arg_max_null(record_id, {at}) AS {quote(f + '__record')}"]
        fields = ", ".join(literal(f) for f in wanted)
        # two hash aggregations, no sort: per record (a pivot of its values), then per person (the latest)
        return f"""
            SELECT person_id, {', '.join(per_person)} FROM (
              SELECT g.person_id, r.record_id, r.updated_at AS record_at, {', '.join(per_record)}
              FROM identity.graph g
              JOIN identity.records r ON r.nid = g.nid
              LEFT JOIN identity.field_values v
                ON v.nid = g.nid AND v.system = {system} AND v.field IN ({fields})
              WHERE g.system = {system}
              GROUP BY g.person_id, g.nid, r.record_id, r.updated_at
            ) AS by_record GROUP BY person_id"""


def rules(project: Project) -> dict[str, FieldRule]:
    """Every golden field's rule (fields that identity.yml does not configure are ``most_recent`` varchar)."""
    ip = identity_of(project)
    if ip.config is None:
        return {}
    out = {}
    for name in ip.field_names:
        cfg = ip.config.fields.get(name)
        out[name] = FieldRule(name, cfg.survivorship if cfg else "most_recent",
                              tuple(cfg.priority) if cfg else (), cfg.type if cfg else "varchar")
    return out


def systems(project: Project) -> list[str]:
    """The systems identity.yml reads, in file order."""
    ip = identity_of(project)
    if ip.config is None:
        return []
    return list(dict.fromkeys(s.system for s in ip.config.sources))


def holdings(project: Project, system: str) -> Holdings | None:
    """What ``system`` holds, or None when identity.yml reads no source of that system."""
    ip = identity_of(project)
    if ip.config is None:
        return None
    sources = [s for s in ip.config.sources if s.system == system]
    if not sources:
        return None
    every = rules(project)
    mapped = [f for s in sources for f in s.fields]
    return Holdings(system, {f: every[f] for f in dict.fromkeys(mapped) if f in every})
