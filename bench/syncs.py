"""Reverse-ETL benchmark: the diff step against its floor, and delivery rates.

1. The diff for 1M rows (5 mapped fields) with 1% changed, through opsloop's own code path (fingerprint,
   FULL OUTER JOIN against the last delivered fingerprints, the plan table, counts, duplicate check), next to
   the floor: the same md5-fingerprint-and-compare query run bare on DuckDB. Time is the median of several
   runs; peak memory is the max RSS of a child process that does only that step (so both include Python).
2. Rows/s through the outbox destination and through the webhook destination to a local HTTP server.

With ``--pg-url postgresql://...`` the project's warehouse is that Postgres database (it must be empty; the
bench creates ``public.src`` and ``opsloop_sync``) and the floor is the same query run bare on Postgres.
Peak memory is not reported there: the work runs in the Postgres server, not in the measured process.

    .venv/bin/python bench/syncs.py [--rows 1000000] [--repeat 5] [--pg-url URL]
    .venv/bin/python bench/syncs.py --smoke     # 10,000 rows, 2,000 delivered, one run each (the CI smoke test)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _report import ratio

FIELDS = ["email", "name", "phone", "plan", "mrr"]
SYNC = """
table: {schema}.src
key: id
destination: {destination}
mapping: {{email: email, name: name, phone: phone, plan: plan, mrr: mrr}}
batch_size: {batch}
"""


PG_URL: str | None = None
"""Set by --pg-url: the warehouse is this Postgres database instead of the project's DuckDB file."""


def schema() -> str:
    return "public" if PG_URL else "main"


def make_project(root: Path, rows: int, destination: str = "{type: outbox}", batch: int = 1000) -> None:
    from opsloop.project.scaffold import init_project

    init_project(root)
    (root / "syncs").mkdir(exist_ok=True)
    (root / "syncs" / "big.yml").write_text(SYNC.format(destination=destination, batch=batch, schema=schema()))
    select = """SELECT i AS id, 'user' || i || '@example.com' AS email, 'Name ' || i AS name,
        '+1555' || lpad(CAST(i AS VARCHAR), 7, '0') AS phone,
        CASE i % 3 WHEN 0 THEN 'free' WHEN 1 THEN 'pro' ELSE 'enterprise' END AS plan, (i % 1000) * 1.5 AS mrr"""
    if PG_URL:
        import psycopg
        from _warehouse import use_postgres

        use_postgres(root, PG_URL)
        with psycopg.connect(PG_URL, autocommit=True) as pg:
            pg.execute("DROP SCHEMA IF EXISTS opsloop_sync CASCADE")
            pg.execute("DROP TABLE IF EXISTS public.src")
            pg.execute(f"CREATE TABLE public.src AS {select} FROM generate_series(0, {rows - 1}) t(i)")
        return
    import duckdb

    con = duckdb.connect(str(root / "warehouse.duckdb"))
    con.execute(f"CREATE OR REPLACE TABLE main.src AS {select} FROM range({rows}) t(i)")
    con.close()


def _app(root: Path) -> Any:
    from opsloop import load_project
    from opsloop.app import App
    from opsloop.settings import resolve_settings

    project = load_project(root)
    return App(project, resolve_settings(project, {"fsync_on_commit": False}))


def prepare_diff(root: Path, rows: int) -> None:
    """A synced state for every row, then 1% of the rows changed."""
    from opsloop.syncs import SyncRunner
    from opsloop.syncs.diff import SyncTables
    from opsloop.syncs.project_files import source_sql

    make_project(root, rows)
    app = _app(root)
    sync = SyncRunner(app).get("big")
    tables = SyncTables(app.warehouse, "big")
    tables.ensure()
    source = source_sql(app.project, sync, app.warehouse)
    pc = tables.plan_columns(sync.specs, tables.columns(source), None)
    tables.reset(source, "id", pc)
    app.warehouse.execute(f"UPDATE {schema()}.src SET phone = phone || '9' WHERE id % 100 = 0")
    app.close()


def _diff_step(root: Path) -> Any:
    from opsloop.syncs import SyncRunner
    from opsloop.syncs.diff import SyncTables
    from opsloop.syncs.project_files import source_sql

    app = _app(root)
    sync = SyncRunner(app).get("big")
    tables = SyncTables(app.warehouse, "big")
    source = source_sql(app.project, sync, app.warehouse)
    pc = tables.plan_columns(sync.specs, tables.columns(source), None)

    def step() -> dict[str, int]:
        tables.build_plan(source, "id", pc, "upsert", False, 5)
        tables.duplicate_keys()
        counts = tables.plan_counts()
        tables.drop_plan()
        return counts

    return app, step


def _floor_step(warehouse: Any) -> Any:
    """The same fingerprint-and-compare, bare: on DuckDB's own connection, or one SQL script on Postgres."""
    from opsloop.syncs.diff import SyncTables

    fp = SyncTables.fingerprint_sql([f'"{f}"' for f in FIELDS])
    sql = f"""DROP TABLE IF EXISTS floor; CREATE TEMP TABLE floor AS
        SELECT coalesce(s.k, st.key) AS key, s.fp FROM (SELECT CAST(id AS VARCHAR) AS k, {fp} AS fp
                                                       FROM {schema()}.src) s
        FULL OUTER JOIN opsloop_sync.state__big st ON s.k = st.key
        WHERE s.k IS NULL OR st.key IS NULL OR st.fp IS DISTINCT FROM s.fp"""
    run = warehouse.con.execute if not PG_URL else warehouse.execute

    def step() -> int:
        run(sql)
        return int(warehouse.query("SELECT count(*) FROM floor").rows[0][0])

    return step


def child(kind: str, root: Path, repeat: int) -> dict[str, Any]:
    """``diff`` / ``floor``: one step (for peak memory); ``both``: the two interleaved (for time)."""
    app, diff = _diff_step(root)
    floor = _floor_step(app.warehouse)
    out: dict[str, Any] = {"diff": [], "floor": []}
    for _ in range(repeat):
        for name, step in (("floor", floor), ("diff", diff)):
            if kind in (name, "both"):
                t0 = time.perf_counter()
                out[f"{name}_result"] = step()
                out[name].append(time.perf_counter() - t0)
    app.close()
    return out


def run_child(kind: str, root: Path, repeat: int) -> dict[str, Any]:
    pg = ["--pg-url", PG_URL] if PG_URL else []
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--root", str(root), "--repeat", str(repeat),
                          *pg], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()


def _serve(port_queue: Any) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    port_queue.put(httpd.server_address[1])
    httpd.serve_forever()


def delivery(rows: int, destination: str, batch: int, repeat: int) -> list[float]:
    from opsloop.syncs import SyncRunner

    rates = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "p"
            make_project(root, rows, destination, batch)
            app = _app(root)
            result = SyncRunner(app).run("big")
            app.close()
            assert result.status == "ok" and result.sent == rows, result
            rates.append(rows / result.seconds)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--delivery-rows", type=int, default=50_000)
    parser.add_argument("--child")
    parser.add_argument("--root")
    parser.add_argument("--pg-url", help="an empty Postgres database to use as the warehouse")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the whole path runs")
    args = parser.parse_args()
    deliveries = 3
    if args.smoke:
        args.rows, args.repeat, args.delivery_rows, deliveries = 10_000, 1, 2000, 1
    global PG_URL
    PG_URL = args.pg_url
    if args.child:
        result = child(args.child, Path(args.root), args.repeat)
        result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p"
        prepare_diff(root, args.rows)
        times = run_child("both", root, args.repeat)
        floor_mem = run_child("floor", root, 1)["peak_mb"] if not PG_URL else None
        diff_mem = run_child("diff", root, 1)["peak_mb"] if not PG_URL else None
    f_med, d_med = statistics.median(times["floor"]), statistics.median(times["diff"])
    engine = "Postgres" if PG_URL else "DuckDB"
    print(f"diff of {args.rows:,} rows on {engine} (5 mapped fields, 1% changed; planned {times['diff_result']}, "
          f"floor found {times['floor_result']:,}); runs interleaved, median of {args.repeat}")

    def mem(mb: float | None) -> str:
        return f", peak {mb:.0f} MB (process max RSS)" if mb is not None else ""

    print(f"  floor (bare md5-and-compare on {engine}): {f_med:.3f} s{mem(floor_mem)}")
    print(f"  opsloop diff step:{' ' * (len(engine) + 16)}{d_med:.3f} s{mem(diff_mem)}")
    ratio("diff / floor", d_med / f_med, "goal <= 1.25x" + (
        f"; memory goal < 500 MB: {'met' if diff_mem < 500 else 'NOT met'}" if diff_mem is not None else ""))

    outbox = delivery(args.delivery_rows, "{type: outbox}", 1000, deliveries)
    queue: Any = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(queue,), daemon=True)
    server.start()
    port = queue.get(timeout=30)
    try:
        http = delivery(args.delivery_rows, f'{{type: webhook, url: "http://127.0.0.1:{port}/in"}}', 1000,
                        deliveries)
    finally:
        server.terminate()
    print(f"delivery of {args.delivery_rows:,} rows (first run, batches of 1000), median of {deliveries}:")
    print(f"  outbox destination:               {statistics.median(outbox):,.0f} rows/s")
    print(f"  webhook to a local HTTP server:   {statistics.median(http):,.0f} rows/s (goal >= 5,000)")
    ratio("webhook rows/s / outbox rows/s", statistics.median(http) / statistics.median(outbox))


if __name__ == "__main__":
    main()
