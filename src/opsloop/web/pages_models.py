"""The models pages: ``/models`` (a lineage graph of sources, seeds and models, and the list) and
``/models/<name>`` (description, columns, tests with their last results, raw and compiled SQL, the last
build, upstream and downstream).

The graph is laid out here, on the server, as SVG: each node's column is the length of the longest path
to it from a source; nodes in a column are ordered by the mean row of their parents (one barycentre pass),
and every node is a link to its page. No layout library and no script.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import OpsloopError

if TYPE_CHECKING:
    from ..models.compiler import Compiler
    from ..models.nodes import Model
    from ..models.runner import NodeResult
    from ..models.service import ModelService
    from .server import Web

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 170, 34, 70, 14, 12


@dataclass
class Node:
    uid: str
    kind: str  # source | seed | model
    name: str
    href: str | None
    parents: list[str] = field(default_factory=list)
    column: int = 0
    row: int = 0
    x: float = 0.0
    y: float = 0.0
    tests: int = 0
    failing: int = 0


@dataclass
class Graph:
    nodes: list[Node]
    edges: list[tuple[Node, Node]]
    width: float
    height: float


def lineage(compiler: Compiler, results: Mapping[str, NodeResult] | None = None) -> Graph:
    """Sources, seeds and models with their dependencies, laid out left to right."""
    mp = compiler.mp
    nodes: dict[str, Node] = {}
    for (source_name, table), src in mp.sources.items():
        nodes[src.uid] = Node(src.uid, "source", f"{source_name}.{table}", None)
    for seed in mp.seeds.values():
        nodes[seed.uid] = Node(seed.uid, "seed", seed.name, None)
    for model in mp.models.values():
        nodes[model.uid] = Node(model.uid, "model", model.name, f"/models/{model.name}",
                                parents=sorted(d for d in model.depends_on if d != model.uid))
    for test in mp.tests.values():
        node = nodes.get(test.attached)
        if node is not None:
            node.tests += 1
            result = (results or {}).get(test.uid)
            if result is not None and getattr(result, "status", "") in ("fail", "error"):
                node.failing += 1
    used = {p for n in nodes.values() for p in n.parents} | {n.uid for n in nodes.values() if n.kind == "model"}
    nodes = {uid: n for uid, n in nodes.items() if uid in used}  # sources nothing reads are left out
    for n in nodes.values():
        n.parents = [p for p in n.parents if p in nodes]

    def column(uid: str, seen: frozenset[str] = frozenset()) -> int:
        node = nodes[uid]
        if uid in seen or not node.parents:
            return 0
        return 1 + max(column(p, seen | {uid}) for p in node.parents)

    columns: dict[int, list[Node]] = {}
    for n in sorted(nodes.values(), key=lambda n: (n.kind != "source", n.name)):
        n.column = column(n.uid)
        columns.setdefault(n.column, []).append(n)
    for c in sorted(columns):
        if c > 0:  # order by the mean row of the parents, so edges cross less
            columns[c].sort(key=lambda n: (sum(nodes[p].row for p in n.parents) / max(1, len(n.parents)), n.name))
        for i, n in enumerate(columns[c]):
            n.row = i
    tallest = max((len(col) for col in columns.values()), default=0)
    for n in nodes.values():
        n.x = PAD + n.column * (NODE_W + GAP_X)
        n.y = PAD + n.row * (NODE_H + GAP_Y)
    edges = [(nodes[p], n) for n in nodes.values() for p in n.parents]
    width = PAD * 2 + max(len(columns), 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(tallest, 1) * (NODE_H + GAP_Y) - GAP_Y
    return Graph(sorted(nodes.values(), key=lambda n: (n.column, n.row)), edges, width, height)


def _last_build(web: Web, name: str) -> dict[str, object] | None:
    """The newest ``model.built`` event for ``name`` (the log is the record of builds)."""
    for event in web.app.store.list_events(name="model.built", limit=500):
        payload = event.payload if isinstance(event.payload, dict) else {}
        if payload.get("model") == name:
            return {"at": event.received_at, "rows": payload.get("rows"), "changed_rows": payload.get("changed_rows"),
                    "event_id": event.id}
    return None


class ModelsPage(TypedDict):
    """What ``models.html`` shows: the lineage graph and the models' list."""

    graph: Graph
    models: list[dict[str, object]]
    node_w: int
    node_h: int


class ModelPage(TypedDict):
    """What ``model.html`` shows of one model."""

    model: Model
    relation: str
    columns: list[dict[str, object]]
    tests: list[dict[str, object]]
    raw_sql: str
    compiled: str | None
    compile_error: str | None
    upstream: list[dict[str, str | None]]
    downstream: list[str]
    last_build: dict[str, object] | None
    last_result: dict[str, object] | None


def model_page_context(web: Web, service: ModelService, name: str) -> ModelPage | None:
    compiler = service.engine.compiler()
    model = compiler.mp.models.get(name)
    if model is None:
        return None
    results = service.last_results
    try:
        compiled, compile_error = service.engine.compile_sql(name), None
    except OpsloopError as exc:
        compiled, compile_error = None, str(exc)
    tests: list[dict[str, object]] = []
    for test in sorted(compiler.mp.tests.values(), key=lambda t: (t.column, t.name)):
        if test.attached != model.uid:
            continue
        result = results.get(test.uid)
        tests.append({"name": test.name, "test": test.test, "column": test.column, "kwargs": test.kwargs,
                      "severity": test.severity, "status": getattr(result, "status", None),
                      "message": getattr(result, "message", "") if result else "",
                      "failures": getattr(result, "rows", None) if result else None})
    columns: list[dict[str, object]] = [
        {"name": c, "description": (spec or {}).get("description", ""), "type": (spec or {}).get("data_type"),
         "tests": [t for t in tests if t["column"] == c]} for c, spec in model.columns.items()]
    downstream = sorted(m.name for m in compiler.mp.models.values() if model.uid in m.depends_on)

    def upstream_link(uid: str) -> dict[str, str | None]:
        kind, _, rest = uid.partition(".")
        return {"kind": kind, "name": rest, "href": f"/models/{rest}" if kind == "model" else None}

    build = results.get(model.uid)
    return {
        "model": model, "relation": compiler.relation_of(model.uid), "columns": columns, "tests": tests,
        "raw_sql": model.raw_sql, "compiled": compiled, "compile_error": compile_error,
        "upstream": [upstream_link(u) for u in sorted(model.depends_on)], "downstream": downstream,
        "last_build": _last_build(web, name),
        "last_result": {"status": build.status, "seconds": build.seconds, "rows": build.rows,
                        "message": build.message} if build is not None else None,
    }


def routes(web: Web) -> list[Route]:
    def service() -> ModelService:
        found = web.app.models
        return found

    async def models_page(request: Request) -> Response:
        def load() -> ModelsPage:
            compiler = service().engine.compiler()
            graph = lineage(compiler, service().last_results)
            models: list[dict[str, object]] = [
                {"name": m.name, "materialized": m.materialized, "relation": compiler.relation_of(m.uid),
                 "description": m.description, "file": m.file, "tags": m.tags}
                for m in sorted(compiler.mp.models.values(), key=lambda m: m.name)]
            return {"graph": graph, "models": models, "node_w": NODE_W, "node_h": NODE_H}

        try:
            context = await asyncio.to_thread(load)
        except OpsloopError as exc:
            return web.render(request, "missing.html", status_code=400, title="Models", message=str(exc),
                              back="/", back_label="home")
        return web.render(request, "models.html", **context)

    async def model_page(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            context = await asyncio.to_thread(model_page_context, web, service(), name)
        except OpsloopError as exc:
            return web.render(request, "missing.html", status_code=400, title=name, message=str(exc),
                              back="/models", back_label="all models")
        if context is None:
            return web.render(request, "missing.html", status_code=404, title="No such model",
                              message=f"There is no model named {name!r} under models/.", back="/models",
                              back_label="all models")
        return web.render(request, "model.html", **context)

    if "models" not in web.app.services:
        return []
    return [Route("/models", models_page), Route("/models/{name}", model_page)]
