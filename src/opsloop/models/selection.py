"""Node selection as dbt writes it: ``name``, ``+name``, ``name+``, ``2+name``, ``tag:x``, ``path:dir``,
``*`` globs; space-separated terms are a union, comma-joined terms an intersection."""

from __future__ import annotations

import fnmatch
import re

from ..errors import OpsloopError
from .compiler import Compiler
from .nodes import Model, Seed, Snapshot

_TERM = re.compile(r"^(?P<up>\d*\+)?(?P<body>.+?)(?P<down>\+\d*)?$")


class SelectionError(OpsloopError):
    """A --select term matched nothing or could not be read."""


def _ancestors(c: Compiler, uid: str, depth: int | None) -> set[str]:
    out: set[str] = set()
    frontier, level = {uid}, 0
    while frontier and (depth is None or level < depth):
        frontier = {p for u in frontier for p in c.parents.get(u, set())} - out
        out |= frontier
        level += 1
    return out


def _descendants(c: Compiler, uid: str, depth: int | None) -> set[str]:
    out: set[str] = set()
    frontier, level = {uid}, 0
    while frontier and (depth is None or level < depth):
        frontier = {ch for u in frontier for ch in c.children.get(u, set())} - out
        out |= frontier
        level += 1
    return out


def _base(c: Compiler, body: str) -> set[str]:
    mp = c.mp
    if body.startswith("tag:"):
        tag = body[4:]
        return {m.uid for m in mp.models.values() if tag in m.tags} | \
               {s.uid for s in mp.seeds.values() if tag in s.tags} | \
               {s.uid for s in mp.snapshots.values() if tag in s.tags} | \
               {t.uid for t in mp.tests.values() if tag in t.tags}
    if body.startswith("path:"):
        prefix = body[5:].rstrip("/")
        nodes: list[Model | Seed | Snapshot] = [*mp.models.values(), *mp.seeds.values(), *mp.snapshots.values()]
        return {n.uid for n in nodes
                if n.path == prefix or n.path.startswith(prefix + "/") or fnmatch.fnmatch(n.path, prefix)}
    if body.startswith("source:"):
        wanted = body[7:]
        return {s.uid for s in mp.sources.values()
                if fnmatch.fnmatch(s.source_name, wanted) or fnmatch.fnmatch(f"{s.source_name}.{s.name}", wanted)}
    if body.startswith("state:"):
        return _state(c, body[6:])
    if body.startswith(("resource_type:", "test_type:")):
        kind = body.split(":", 1)[1]
        return {u for u in c.parents if u.startswith(kind + ".")}
    name = body.removeprefix("model:").removeprefix("seed:").removeprefix("snapshot:")
    found = {m.uid for m in mp.models.values() if fnmatch.fnmatch(m.name, name)}
    found |= {s.uid for s in mp.snapshots.values() if fnmatch.fnmatch(s.name, name)}
    found |= {s.uid for s in mp.seeds.values() if fnmatch.fnmatch(s.name, name)}
    found |= {t.uid for t in mp.tests.values() if fnmatch.fnmatch(t.name, name)}
    return found


def _state(c: Compiler, which: str) -> set[str]:
    """``state:new`` / ``state:modified`` against the manifest in ``--state``."""
    from .artifacts import modified_nodes

    if c.state_dir is None:
        raise SelectionError(f"state:{which} needs --state DIR (the target/ folder of an earlier build, with its "
                             "manifest.json)")
    new, modified = modified_nodes(c, c.state_dir)
    if which == "new":
        return new
    if which in ("modified", "modified.body", "modified.configs"):
        return modified
    raise SelectionError(f"unknown selector state:{which}; use state:modified or state:new")


def _term(c: Compiler, term: str) -> set[str]:
    match = _TERM.match(term)
    if not match:
        raise SelectionError(f"cannot read the selector {term!r}")
    up, body, down = match.group("up"), match.group("body"), match.group("down")
    base = _base(c, body)
    if not base and not body.startswith("state:"):  # nothing modified is an answer, not a typo
        raise SelectionError(f"--select {term!r} matches no model, seed or test; list them with `opsloop compile`")
    out = set(base)
    for uid in base:
        if up:
            out |= _ancestors(c, uid, int(up[:-1]) if up[:-1] else None)
        if down:
            out |= _descendants(c, uid, int(down[1:]) if down[1:] else None)
    return out


def select(c: Compiler, select: list[str] | None, exclude: list[str] | None = None,
           kinds: tuple[str, ...] = ("model", "seed", "snapshot", "test")) -> list[str]:
    """The uids to run, in DAG order. A test runs when every model or seed it reads is selected."""
    if select:
        chosen: set[str] = set()
        for chunk in select:
            for term in chunk.split():
                parts = [_term(c, p) for p in term.split(",")]
                chosen |= set.intersection(*parts)
    else:
        chosen = {u for u in c.parents if u.startswith(("model.", "seed.", "snapshot."))}
    excluded: set[str] = set()
    for chunk in exclude or []:
        for term in chunk.split():
            excluded |= _term(c, term)
    chosen -= excluded
    if "test" in kinds:
        for test in c.mp.tests.values():
            if test.uid in chosen or test.uid in excluded:
                continue
            if test.test == "unit":  # a unit test goes with its model (it needs only its inputs built)
                if test.attached in chosen:
                    chosen.add(test.uid)
                continue
            parents = c.parents.get(test.uid, set())
            model_parents = {p for p in parents if not p.startswith("source.")}
            on_sources = not model_parents and (bool(parents & chosen) or select is None)
            if (model_parents and model_parents <= chosen) or on_sources:
                chosen.add(test.uid)
    chosen = {u for u in chosen if u.split(".", 1)[0] in kinds and not u.startswith("source.")}
    return [u for u in c.order if u in chosen]
