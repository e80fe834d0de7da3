"""Reads ``identity.yml`` and ``segments/*.yml`` into the project's ``IDENTITY`` section with located problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem
from ..project.loader import Project, ProjectLoader, Section, validate_model
from ..project.yaml_files import LocatedYaml, YamlProblem, load_yaml, yaml_mappings
from .config import ConditionGroup, IdentityConfig, SegmentConfig


@dataclass
class IdentityProject:
    """What the identity subsystem read from the project folder."""

    config: IdentityConfig | None = None
    segments: dict[str, SegmentConfig] = field(default_factory=dict)
    segment_files: dict[str, str] = field(default_factory=dict)

    @property
    def field_names(self) -> list[str]:
        """Golden-record fields in a stable order: configured ones first, then the rest sources map."""
        if self.config is None:
            return []
        names = list(self.config.fields)
        for source in self.config.sources:
            for name in source.fields:
                if name not in names:
                    names.append(name)
        return names


IDENTITY: Section[IdentityProject | None] = Section("identity", lambda: None)
"""What ``identity.yml`` and ``segments/`` hold (``IDENTITY.of(project)``); None when not loaded."""


def identity_of(project: Project) -> IdentityProject:
    return IDENTITY.of(project) or IdentityProject()


def _parse_expression(text: str, doc: LocatedYaml, rel: str, loc: tuple[str | int, ...],
                      problems: list[Problem]) -> None:
    import sqlglot
    from sqlglot.errors import ParseError

    try:
        sqlglot.parse_one(text, dialect="duckdb", into=None)
    except ParseError as exc:
        first = exc.errors[0]["description"] if exc.errors else str(exc)
        problems.append(Problem(rel, doc.line_of(loc), f"{'.'.join(str(p) for p in loc)}: not valid SQL: {first}",
                                "write a column name or a DuckDB SQL expression"))


def _check_identity(cfg: IdentityConfig, doc: LocatedYaml, rel: str, problems: list[Problem]) -> None:
    types = set(cfg.identifiers)
    for i, rule in enumerate(cfg.merge_rules):
        for t in cfg.rule_types(rule):
            if t not in types:
                problems.append(Problem(rel, doc.line_of(("merge_rules", i)),
                                        f"merge rule uses unknown identifier {t!r}",
                                        f"declare it under identifiers: (known: {', '.join(sorted(types))})"))
    systems = []
    for i, source in enumerate(cfg.sources):
        systems.append(source.system)
        for t, cols in source.identifiers.items():
            if t not in types:
                problems.append(Problem(rel, doc.line_of(("sources", i, "identifiers", t)),
                                        f"source {source.system!r} maps unknown identifier {t!r}",
                                        f"declare it under identifiers: (known: {', '.join(sorted(types))})"))
            for j, col in enumerate([cols] if isinstance(cols, str) else cols):
                loc = ("sources", i, "identifiers", t) if isinstance(cols, str) else ("sources", i, "identifiers", t, j)
                _parse_expression(col, doc, rel, loc, problems)
        for name, col in source.fields.items():
            if "__" in name:
                problems.append(Problem(rel, doc.line_of(("sources", i, "fields", name)),
                                        f"field name {name!r} may not contain '__'", "rename it"))
            _parse_expression(col, doc, rel, ("sources", i, "fields", name), problems)
        for key in ("record_id", "updated_at", "relation", "sql"):
            value = getattr(source, key)
            if value is not None:
                _parse_expression(value, doc, rel, ("sources", i, key), problems)
    for name, fcfg in cfg.fields.items():
        for system in fcfg.priority:
            if system not in systems:
                problems.append(Problem(rel, doc.line_of(("fields", name, "priority")),
                                        f"field {name!r}: priority names unknown system {system!r}",
                                        f"systems in sources: {', '.join(systems)}"))
        if not any(name in s.fields for s in cfg.sources):
            problems.append(Problem(rel, doc.line_of(("fields", name)), f"field {name!r} is not mapped by any source",
                                    "add it under fields: of a source, or remove it"))
        if fcfg.normalize is not None and fcfg.normalize not in types:
            problems.append(Problem(rel, doc.line_of(("fields", name, "normalize")),
                                    f"field {name!r}: normalize names unknown identifier {fcfg.normalize!r}",
                                    f"use an identifier type: {', '.join(sorted(types))}"))
        if fcfg.sql:
            _parse_expression(fcfg.sql, doc, rel, ("fields", name, "sql"), problems)
    links = {frozenset(p) for p in cfg.links}
    for i, pair in enumerate(cfg.unlinks):
        if frozenset(pair) in links:
            problems.append(Problem(rel, doc.line_of(("unlinks", i)), f"{pair[0]} and {pair[1]} are both linked "
                                    "and unlinked", "keep only one of the two overrides"))
    for key in ("links", "unlinks"):
        for i, pair in enumerate(getattr(cfg, key)):
            for node in pair:
                if node.split(":", 1)[0] not in systems:
                    problems.append(Problem(rel, doc.line_of((key, i)), f"{node!r}: unknown system "
                                            f"{node.split(':', 1)[0]!r}", f"systems in sources: {', '.join(systems)}"))


def _condition_fields(group: ConditionGroup) -> list[str]:
    out: list[str] = []
    for item in [*(group.all or []), *(group.any or [])]:
        if isinstance(item, ConditionGroup):
            out.extend(_condition_fields(item))
        else:
            out.append(item.field)
    return out


def load_identity(project: Project, problems: list[Problem]) -> None:
    result = IdentityProject()
    path = next((p for p in (project.root / "identity.yml", project.root / "identity.yaml") if p.is_file()), None)
    if path is not None:
        rel = path.name
        try:
            doc = load_yaml(path, project.root)
        except YamlProblem as exc:
            problems.append(exc.problem)
            doc = None
        if doc is not None:
            if not isinstance(doc.data, dict):
                problems.append(Problem(rel, 1, "expected a mapping (identifiers:, merge_rules:, sources:, fields:)"))
            else:
                cfg = validate_model(IdentityConfig, doc, rel, doc.data, problems)
                if cfg is not None:
                    _check_identity(cfg, doc, rel, problems)
                    result.config = cfg
    expected = "expected a mapping describing one segment (where:, sql: or conditions:)"
    for seg_path, rel, doc in yaml_mappings(project.root / "segments", project.root, expected, problems):
        _load_segment(seg_path, rel, doc, result, problems)
    IDENTITY.put(project, result)


def _load_segment(path: Path, rel: str, doc: LocatedYaml, result: IdentityProject, problems: list[Problem]) -> None:
    seg = validate_model(SegmentConfig, doc, rel, {"name": path.stem, **doc.data}, problems)
    if seg is None:
        return
    if seg.name in result.segments:
        problems.append(Problem(rel, doc.line_of(("name",)), f"segment {seg.name!r} is defined twice",
                                f"also in {result.segment_files[seg.name]}; rename one"))
        return
    if seg.where is not None:
        _parse_expression(seg.where, doc, rel, ("where",), problems)
    if seg.sql is not None:
        _parse_expression(seg.sql, doc, rel, ("sql",), problems)
    if seg.conditions is not None and result.config is not None:
        names = IdentityProject(config=result.config).field_names
        known = {"person_id", "record_count", "resolved_at", *names, *(f"{n}__source" for n in names),
                 *(f"{n}__updated_at" for n in names)}
        for name in _condition_fields(seg.conditions):
            if name not in known:
                problems.append(Problem(rel, doc.line_of(("conditions",)), f"condition on unknown field {name!r}",
                                        f"golden-record fields: {', '.join(sorted(names))} (and their "
                                        "__source / __updated_at columns)"))
    result.segments[seg.name] = seg
    result.segment_files[seg.name] = rel


LOADER = ProjectLoader("identity", load=load_identity)
"""What the composition root (``opsloop._subsystems``) lists to load and check this subsystem's files."""
