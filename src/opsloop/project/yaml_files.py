"""YAML loading that remembers where each value came from, so errors can name file:line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import Problem

Loc = tuple[object, ...]
"""Where a value sits in a document: mapping keys (any scalar YAML allows, ``on:`` reads as True) and
list indexes."""


@dataclass
class LocatedYaml:
    """A parsed YAML document plus the line of every mapping key and sequence item."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """Line of ``loc``, or of its nearest located parent."""
        probe = tuple(loc)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), 1)


def _build(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> object:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[object, object] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node)) if not isinstance(key_node, yaml.ScalarNode) else (
                _scalar(key_node)
            )
            lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, (*loc, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*loc, i), lines) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> object:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def load_yaml(path: Path, root: Path | None = None) -> LocatedYaml:
    """Parse ``path``; a syntax error becomes a ``Problem`` raised inside ``YamlProblem``."""
    rel = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlProblem(Problem(rel, None, f"cannot read the file: {exc.strerror}")) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or exc.context or "invalid YAML"
        raise YamlProblem(
            Problem(rel, line, f"invalid YAML: {what}", "check indentation, colons and quoting on that line")
        ) from exc
    lines: dict[Loc, int] = {}
    data = _build(node, (), lines) if node is not None else None
    return LocatedYaml(path=path, data=data, lines=lines)


class YamlProblem(Exception):
    """Carries the one ``Problem`` of a file that could not be parsed."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def rel_path(root: Path, path: Path) -> str:
    """``path`` as errors show it: relative to the project ``root`` when inside it."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def yaml_mappings(folder: Path, root: Path, not_a_mapping: str, problems: list[Problem],
                  empty_ok: bool = False) -> Iterator[tuple[Path, str, LocatedYaml]]:
    """Each ``*.yml``/``*.yaml`` file of ``folder`` (sorted) whose top level is a mapping, with its path
    relative to ``root``. A file that cannot be parsed, or is not a mapping (``not_a_mapping`` says what
    was expected), becomes a problem instead; an empty file is skipped when ``empty_ok``."""
    if not folder.is_dir():
        return
    for path in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
        rel = rel_path(root, path)
        try:
            doc = load_yaml(path, root)
        except YamlProblem as exc:
            problems.append(exc.problem)
            continue
        if doc.data is None and empty_ok:
            continue
        if not isinstance(doc.data, dict):
            problems.append(Problem(rel, 1, not_a_mapping))
            continue
        yield path, rel, doc
