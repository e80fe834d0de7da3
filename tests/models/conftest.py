"""Fixtures for the model engine: the `shop` project, raw events, and dbt's own build of it (cached)."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

SHOP = Path(__file__).parent / "shop"
REPO = Path(__file__).resolve().parents[2]
DBT = REPO / ".venv-dbt" / "bin" / "dbt"
RAW_DDL = ("CREATE TABLE IF NOT EXISTS raw.events (event_id VARCHAR PRIMARY KEY, seq BIGINT, endpoint VARCHAR, "
           "name VARCHAR, received_at TIMESTAMPTZ, idempotency_key VARCHAR, source VARCHAR, payload JSON)")
PAGES = ["/", "/pricing", "/docs"]


def event_rows(first: int, last: int) -> list[tuple[Any, ...]]:
    """Events seq first..last: page views and signups spread over customers 1..5."""
    rows = []
    for i in range(first, last + 1):
        received = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=i)
        payload = {"customer_id": i % 5 + 1, "page": PAGES[i % 3]}
        rows.append((f"evt_{i:03d}", i, "web", "page.viewed" if i % 3 else "signup", received, None, "webhook",
                     json.dumps(payload)))
    return rows


def load_events_duckdb(path: Path, rows: list[tuple[Any, ...]]) -> None:
    import duckdb

    con = duckdb.connect(str(path))
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS raw")
        con.execute(RAW_DDL)
        con.executemany("INSERT INTO raw.events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    finally:
        con.close()


def norm(value: Any) -> Any:
    if isinstance(value, float | decimal.Decimal):
        return round(float(value), 6)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return bool(value)
    return value


def snapshot_duckdb(path: Path, schema: str = "main") -> dict[str, Any]:
    """Every relation in ``schema``: columns, types, and sorted normalised rows."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY 1", [schema]).fetchall()]
        out: dict[str, Any] = {}
        for name in names:
            cols = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
                               "AND table_name = ? ORDER BY ordinal_position", [schema, name]).fetchall()
            rows = con.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall()
            out[name] = {"columns": [[c, t] for c, t in cols],
                         "rows": sorted(([norm(v) for v in r] for r in rows), key=lambda r: json.dumps(r, default=str))}
        return out
    finally:
        con.close()


def _project_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(SHOP.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(SHOP)).encode())
            digest.update(path.read_bytes())
    digest.update(str(event_rows(1, 30)).encode())
    return digest.hexdigest()[:16]


def _dbt_results(folder: Path) -> dict[str, str]:
    """(test type, model, column, where) -> status from dbt's manifest and run results."""
    manifest = json.loads((folder / "target" / "manifest.json").read_text())
    results = json.loads((folder / "target" / "run_results.json").read_text())
    out = {}
    for res in results["results"]:
        node = manifest["nodes"].get(res["unique_id"]) or {}
        if node.get("resource_type") != "test":
            continue
        meta = node.get("test_metadata") or {}
        attached = (node.get("attached_node") or "").split(".")[-1] or node["sources"][0][-1]
        key = "|".join([meta.get("name", ""), attached, str(node.get("column_name")),
                        str(node["config"].get("where")), json.dumps((meta.get("kwargs") or {}).get("values"))])
        out[key] = res["status"]
    return out


@pytest.fixture(scope="session")
def dbt_reference(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What dbt-core + dbt-duckdb build for the shop project: after one build, and after new events
    and a second build. Built once per session and cached in pytest's cache by the project's hash."""
    key = f"opsloop_models/dbt_reference/{_project_hash()}"
    cache = getattr(request.config, "cache", None)
    cached = cache.get(key, None) if cache is not None else None
    if cached:
        return dict(cached)
    if not DBT.exists():
        pytest.skip("dbt-core is not installed: run scripts/setup (it creates .venv-dbt)")
    folder = tmp_path_factory.mktemp("dbt") / "shop"
    shutil.copytree(SHOP, folder)
    db = folder / "dbt.duckdb"
    (folder / "profiles.yml").write_text(
        f"shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: {db}\n      schema: main\n"
        "      threads: 4\n")
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false",
           "DBT_PROFILES_DIR": str(folder)}
    load_events_duckdb(db, event_rows(1, 20))
    ref: dict[str, Any] = {}
    for run, (first, last) in enumerate([(0, -1), (21, 30)], 1):
        if last >= first:
            load_events_duckdb(db, event_rows(first, last))
        proc = subprocess.run([str(DBT), "build", "--project-dir", str(folder)], env=env, cwd=folder,
                              capture_output=True, text=True, timeout=300)
        assert "Done." in proc.stdout, proc.stdout[-3000:]
        ref[f"run{run}"] = snapshot_duckdb(db)
        ref[f"tests{run}"] = _dbt_results(folder)
    if cache is not None:
        cache.set(key, ref)
    return ref
