"""``target/manifest.json`` and ``target/run_results.json`` in dbt's schemas (manifest v12, run results v6).

Enough of them for the tools that read dbt's artifacts and for ``state:modified``: every model, seed,
snapshot, test and source with its ``unique_id``, ``resource_type``, ``checksum`` (sha256 of the file, as
dbt computes it), ``depends_on``, ``config``, ``fqn``, relation and SQL; and one result per node run.
Data tests' ids are ``test.<project>.<name>`` (dbt adds a hash of the test's arguments).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from ..narrow import mapping
from ._config import as_list
from .compiler import Compiler
from .nodes import DataTest, Model, Seed, Snapshot
from .unit_tests import Fixture, unit_spec

if TYPE_CHECKING:
    from .runner import NodeResult

MANIFEST_SCHEMA = "https://schemas.getdbt.com/dbt/manifest/v12.json"
RUN_RESULTS_SCHEMA = "https://schemas.getdbt.com/dbt/run-results/v6.json"
DBT_VERSION = "1.11.0"
"""The dbt version whose artifacts these match."""


def dbt_uid(c: Compiler, uid: str) -> str:
    """opsloop's node id (``model.orders``) as dbt writes it (``model.shop.orders``)."""
    kind, _, rest = uid.partition(".")
    test = c.mp.tests.get(rest) if kind == "test" else None
    if test is not None and test.test == "unit":
        return f"unit_test.{c.mp.name}.{test.attached.split('.', 1)[1]}.{rest}"
    return f"{kind}.{c.mp.name}.{rest}"


def _sha(text: str) -> dict[str, str]:
    """dbt's FileHash of a file: sha256 of its stripped contents."""
    return {"name": "sha256", "checksum": hashlib.sha256(text.strip().encode("utf-8")).hexdigest()}


def _file_text(c: Compiler, path: str, fallback: str) -> str:
    try:
        return (c.mp.root / path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return fallback


def _config(node: Model | Seed | Snapshot, kind: str) -> dict[str, object]:
    cfg = {k: v for k, v in node.config.items() if k not in ("pre_hook", "post_hook")}
    out: dict[str, object] = {
        "enabled": True, "alias": cfg.pop("alias", None), "schema": cfg.pop("schema", None), "database": None,
        "tags": node.tags, "meta": cfg.pop("meta", {}),
        "materialized": "seed" if isinstance(node, Seed) else node.materialized,
        "persist_docs": {}, "quoting": {}, "column_types": cfg.pop("column_types", {}),
        "full_refresh": cfg.pop("full_refresh", None), "unique_key": cfg.pop("unique_key", None),
        "on_schema_change": cfg.pop("on_schema_change", "ignore"),
    }
    for key in ("pre_hook", "post_hook"):
        hooks = as_list(node.config.get(key))
        out[key.replace("_", "-")] = [{"sql": h, "transaction": True, "index": i} for i, h in enumerate(hooks)]
    cfg.pop("tags", None)
    cfg.pop("materialized", None)
    out.update(cfg)
    return out


def _parents(c: Compiler, uid: str) -> list[str]:
    """The node's parents' dbt unique_ids, sorted (its ``depends_on.nodes``)."""
    return sorted(dbt_uid(c, p) for p in c.parents.get(uid, set()))


def _node(c: Compiler, node: Model | Seed | Snapshot, kind: str) -> dict[str, object]:
    schema, alias = c.node_relation(node)
    raw = node.raw_sql if isinstance(node, Model | Snapshot) else ""
    text = raw if isinstance(node, Model) else _file_text(c, node.path, raw)  # a model's raw_sql is its file
    parents = _parents(c, node.uid)
    fqn = getattr(node, "fqn", None) or [c.mp.name, node.name]
    return {
        "database": None, "schema": schema, "name": node.name, "resource_type": kind,
        "package_name": c.mp.name, "path": node.path.split("/", 1)[-1], "original_file_path": node.path,
        "unique_id": dbt_uid(c, node.uid), "fqn": fqn, "alias": alias, "checksum": _sha(text),
        "config": _config(node, kind), "tags": node.tags, "description": getattr(node, "description", ""),
        "columns": {name: {"name": name, "description": str(col.get("description") or ""),
                           "meta": mapping(col.get("meta")), "data_type": col.get("data_type"),
                           "tags": as_list(col.get("tags"))}
                    for name, col in getattr(node, "columns", {}).items()},
        "meta": mapping(node.config.get("meta")), "relation_name": c.rel_text(schema, alias),
        "raw_code": raw.strip(),
        "language": getattr(node, "language", "sql"),
        "refs": [{"name": p.split(".")[-1], "package": None, "version": None} for p in parents
                 if not p.startswith("source.")],
        "sources": [p.split(".")[2:] for p in parents if p.startswith("source.")],
        "depends_on": {"macros": [], "nodes": parents},
        "unrendered_config": {}, "created_at": 0.0,
    }


def _test_node(c: Compiler, test: DataTest) -> dict[str, object]:
    parents = _parents(c, test.uid)
    node: dict[str, object] = {
        "database": None, "schema": c.target.schema, "name": test.name, "resource_type": "test",
        "package_name": c.mp.name, "path": test.file, "original_file_path": test.file,
        "unique_id": dbt_uid(c, test.uid), "fqn": [c.mp.name, test.name], "alias": test.name,
        "checksum": _sha(test.raw_sql) if test.raw_sql else {"name": "none", "checksum": ""},
        "config": {"enabled": True, "severity": test.severity.upper(), "where": test.where, "tags": test.tags,
                   "materialized": "test"},
        "tags": test.tags, "raw_code": test.raw_sql, "language": "sql",
        "depends_on": {"macros": [], "nodes": parents}, "column_name": test.column or None,
        "attached_node": dbt_uid(c, test.attached) if test.attached and not test.attached.startswith("source.")
        else None,
    }
    if test.test != "singular":
        kwargs = {k: v for k, v in test.kwargs.items() if not k.startswith("_")}
        ns, _, name = str(test.kwargs.get("_macro") or test.test).rpartition(".")
        node["test_metadata"] = {"name": name, "kwargs": {"column_name": test.column or None, **kwargs},
                                 "namespace": ns or None}
    return node


def _unit_test_node(c: Compiler, test: DataTest) -> dict[str, object]:
    spec = unit_spec(test)

    def fixture(f: Fixture) -> dict[str, object]:
        return {"rows": f.rows, "format": f.format, "fixture": None}

    given = [{"input": ("this" if key[0] == "this" else f"ref('{key[1]}')" if key[0] == "ref"
                        else f"source('{key[1]}', '{key[2]}')"), **fixture(f)} for key, f in spec.given.items()]
    return {
        "name": test.name, "resource_type": "unit_test", "package_name": c.mp.name, "path": test.file,
        "original_file_path": test.file, "unique_id": dbt_uid(c, test.uid), "model": spec.model,
        "fqn": [c.mp.name, spec.model, test.name], "given": given, "expect": fixture(spec.expect),
        "overrides": {"macros": spec.macros, "vars": spec.vars, "env_vars": spec.env_vars},
        "depends_on": {"macros": [], "nodes": [dbt_uid(c, test.attached)]},
        "config": {"tags": test.tags, "meta": {}, "enabled": True}, "schema": c.target.schema,
    }


def _nodes(c: Compiler) -> dict[str, tuple[str, dict[str, object]]]:
    """The manifest's ``nodes`` (models, seeds, snapshots, data tests) by dbt unique_id, each with its
    opsloop uid."""
    mp = c.mp
    nodes: dict[str, tuple[str, dict[str, object]]] = {}
    for model in mp.models.values():
        nodes[dbt_uid(c, model.uid)] = model.uid, _node(c, model, "model")
    for seed in mp.seeds.values():
        nodes[dbt_uid(c, seed.uid)] = seed.uid, _node(c, seed, "seed")
    for snap in mp.snapshots.values():
        nodes[dbt_uid(c, snap.uid)] = snap.uid, _node(c, snap, "snapshot")
    for test in mp.tests.values():
        if test.test != "unit":
            nodes[dbt_uid(c, test.uid)] = test.uid, _test_node(c, test)
    return nodes


def _sources(c: Compiler) -> dict[str, dict[str, object]]:
    """The manifest's ``sources`` by dbt unique_id (the built-in ``raw.events`` left out)."""
    mp = c.mp
    sources: dict[str, dict[str, object]] = {}
    for src in mp.sources.values():
        if src.file == "(built in)":
            continue
        uid = dbt_uid(c, src.uid)
        config: dict[str, object] = {"enabled": True}
        if src.event_time:
            config["event_time"] = src.event_time
        sources[uid] = {
            "database": None, "schema": src.schema, "name": src.name, "source_name": src.source_name,
            "resource_type": "source", "package_name": mp.name, "path": src.file, "original_file_path": src.file,
            "unique_id": uid, "fqn": [mp.name, src.source_name, src.name], "identifier": src.identifier,
            "relation_name": c.rel_text(src.schema, src.identifier), "description": src.description,
            "columns": {n: {"name": n, "data_type": t or None} for n, t in src.columns.items()},
            "config": config, "loader": "", "tags": [], "meta": {},
        }
    return sources


def flat_graph(c: Compiler) -> dict[str, object]:
    """dbt's ``graph`` Jinja variable: the manifest's nodes (models, seeds, snapshots, data tests) and
    sources by unique_id, as dicts shaped as in manifest.json, and its (here empty) other parts."""
    return {"nodes": {uid: node for uid, (_, node) in _nodes(c).items()}, "sources": _sources(c),
            "exposures": {}, "functions": {}, "groups": {}, "metrics": {}, "semantic_models": {},
            "saved_queries": {}}


def manifest(c: Compiler, invocation_id: str, generated_at: str) -> dict[str, object]:
    mp = c.mp
    found = _nodes(c)
    nodes = {uid: node for uid, (_, node) in found.items()}
    unit_tests = {dbt_uid(c, test.uid): _unit_test_node(c, test) for test in mp.tests.values() if test.test == "unit"}
    sources = _sources(c)
    parent_map: dict[str, list[str]] = {uid: [] for uid in [*nodes, *sources]}
    child_map: dict[str, list[str]] = {uid: [] for uid in [*nodes, *sources]}
    for uid, (ours, _) in found.items():
        for parent in _parents(c, ours):
            parent_map[uid].append(parent)
            child_map.setdefault(parent, []).append(uid)
    return {
        "metadata": {"dbt_schema_version": MANIFEST_SCHEMA, "dbt_version": DBT_VERSION, "generated_at": generated_at,
                     "invocation_id": invocation_id, "env": {}, "project_name": mp.name,
                     "adapter_type": c.target.type, "generator": "opsloop"},
        "nodes": nodes, "sources": sources, "macros": {}, "docs": {}, "exposures": {}, "metrics": {},
        "groups": {}, "selectors": {}, "disabled": {}, "parent_map": parent_map,
        "child_map": {k: sorted(v) for k, v in child_map.items()}, "group_map": {}, "saved_queries": {},
        "semantic_models": {}, "unit_tests": unit_tests,
    }


def run_results(c: Compiler, results: list[NodeResult], invocation_id: str, generated_at: str,
                elapsed: float) -> dict[str, object]:
    out = []
    for r in results:
        uid = dbt_uid(c, r.uid) if r.kind != "operation" else f"operation.{c.mp.name}.{r.name}"
        out.append({
            "status": r.status, "timing": [], "thread_id": "Thread-1", "execution_time": round(r.seconds, 4),
            "adapter_response": {"_message": "OK", "rows_affected": r.changed_rows} if r.changed_rows is not None
            else {}, "message": r.message or None,
            "failures": r.rows if r.kind == "test" else None, "unique_id": uid,
            "compiled": r.kind in ("model", "test", "snapshot"), "relation_name": r.relation or None,
            "batch_results": None,
        })
    return {
        "metadata": {"dbt_schema_version": RUN_RESULTS_SCHEMA, "dbt_version": DBT_VERSION,
                     "generated_at": generated_at, "invocation_id": invocation_id, "env": {}},
        "results": out, "elapsed_time": round(elapsed, 4), "args": {"which": "build"},
    }


def write_artifacts(c: Compiler, results: list[NodeResult], elapsed: float) -> Path | None:
    """Write both files into the dbt project's ``target/``; None when the folder is not writable."""
    invocation_id = str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    folder = c.mp.root / "target"
    try:
        folder.mkdir(exist_ok=True)
        (folder / "manifest.json").write_text(json.dumps(manifest(c, invocation_id, now), default=str))
        (folder / "run_results.json").write_text(json.dumps(run_results(c, results, invocation_id, now, elapsed),
                                                            default=str))
    except OSError:
        return None
    return folder


def modified_nodes(c: Compiler, state_dir: Path) -> tuple[set[str], set[str]]:
    """(new, modified) opsloop uids against the manifest in ``state_dir`` (``--state``), as dbt's
    ``state:new`` / ``state:modified`` decide: a node not in it, or whose file or config changed."""
    try:
        old = json.loads((state_dir / "manifest.json").read_text())["nodes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        from .selection import SelectionError

        raise SelectionError(f"--state {state_dir}: cannot read manifest.json there ({exc}); point --state at the "
                             "target/ folder of an earlier build") from exc
    new, modified = set(), set()
    for uid, (ours, node) in _nodes(c).items():
        if ours not in c.parents:
            continue
        before = old.get(uid)
        if before is None:
            new.add(ours)
        elif before.get("checksum") != node["checksum"] or before.get("config") != json.loads(
                json.dumps(node["config"], default=str)):
            modified.add(ours)
    return new, new | modified
