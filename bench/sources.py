"""Sources benchmark: a local paginated REST API -> DuckDB, opsloop's `rest` source vs plain dlt.

    .venv/bin/python bench/sources.py [--records 1000000] [--runs 3] [--default-records 100000]
    .venv/bin/python bench/sources.py --smoke     # 5,000 records (1,000 for dlt's default), one run

The API (a separate process on 127.0.0.1) serves records with 10 fields and a nested list of 3 children,
1,000 per page, linked by a `next` URL. Contenders, each in its own process (peak RSS is the process's):

- opsloop: a project with `sources/bench.yml` (type: rest), `opsloop.sources.pull` into the project's DuckDB;
- dlt parquet: dlt's `rest_api_source` with the same client/paginator, `pipeline.run(...,
  loader_file_format="parquet")` into DuckDB, otherwise dlt's defaults;
- dlt default: the same with dlt's default settings (insert_values; slow, so run on --default-records).

Prints records/s and peak RSS per contender (medians of --runs) and the ratio against dlt parquet.
Goals: opsloop >= 5x dlt parquet, opsloop peak RSS < 1 GB.

The small-pull case (``--small-records 5``, on by default; ``--small-records 0`` skips it) times a pull of
a handful of records, where set-up is everything: the whole ``opsloop pull bench`` command (a fresh
process, as a user runs it) against a fresh process running plain dlt's ``rest_api_source`` over the same
pages, and a warm pull (the same App pulling again, as ``opsloop up`` does on a schedule) against plain
dlt's ``pipeline.run`` again in one process. Wall and CPU seconds, medians of --runs; the ratios are
opsloop's time over plain dlt's (1.0x: opsloop adds nothing to dlt's own set-up).

With ``--pg-url postgresql://...`` (an empty database) both load into that Postgres database instead; dlt
cannot load parquet into Postgres, so its fast contender is ``loader_file_format="csv"`` (COPY), which is
what opsloop's Arrow pages become there too. Peak RSS is then the client's; Postgres does the rest.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from _report import ratio

PAGE = 1000


def _page(start: int, count: int) -> list[dict]:
    out = []
    for i in range(start, start + count):
        out.append({
            "id": i, "name": f"customer {i}", "email": f"c{i}@example.com", "score": i * 0.5, "active": i % 3 != 0,
            "plan": ("free", "pro", "team")[i % 3], "country": ("NO", "SE", "DK", "FI")[i % 4], "seats": i % 50,
            "created_at": f"2024-01-{1 + i % 28:02d}T10:00:00Z", "updated_at": f"2024-02-{1 + i % 28:02d}T10:00:00Z",
            "children": [{"sku": f"sku-{i}-{k}", "qty": k + 1, "price": 9.5 * (k + 1)} for k in range(3)],
        })
    return out


def serve(port_queue: mp.Queue, total: int) -> None:
    import orjson

    # pages are rendered once, up front, so the API is not the bottleneck of any contender
    port_holder: list[int] = []
    bodies: list[bytes] = []

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            q = parse_qs(urlsplit(self.path).query)
            page = int(q.get("page", ["1"])[0])
            body = bodies[page - 1] if 0 < page <= len(bodies) else orjson.dumps({"data": [], "next": None})
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    port = httpd.server_address[1]
    pages = (total + PAGE - 1) // PAGE
    for page in range(1, pages + 1):
        start = (page - 1) * PAGE
        nxt = f"http://127.0.0.1:{port}/records?page={page + 1}" if page < pages else None
        bodies.append(orjson.dumps({"data": _page(start + 1, min(PAGE, total - start)), "next": nxt}))
    del port_holder
    port_queue.put(port)
    httpd.serve_forever()


OPSLOOP = """
import json, resource, sys, time
from opsloop.app import App
from opsloop import load_project
from opsloop.sources import pull
root = sys.argv[1]
project = load_project(root)
app = App(project)
t0 = time.perf_counter()
result = pull(app, "bench")
elapsed = time.perf_counter() - t0
rows = app.warehouse.query("SELECT count(*) FROM bench.records").rows[0][0]
app.close()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": rows, "seconds": elapsed, "rss_mb": rss}))
"""

PLAIN_DLT = """
import json, resource, sys, time
import dlt
from dlt.sources.rest_api import rest_api_source
base, workdir, fmt, pg_url = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
source = rest_api_source({
    "client": {"base_url": base, "paginator": {"type": "json_link", "next_url_path": "next"}},
    "resources": [{"name": "records", "endpoint": {"path": "records", "data_selector": "data"}}],
})
if pg_url:
    from dlt.destinations.impl.postgres.configuration import PostgresCredentials
    credentials = PostgresCredentials()
    credentials.parse_native_representation(pg_url)
    credentials.password = credentials.password or ""
    destination = dlt.destinations.postgres(credentials=credentials)
else:
    destination = dlt.destinations.duckdb(f"{workdir}/plain.duckdb")
pipeline = dlt.pipeline(pipeline_name="bench_plain", destination=destination,
                        dataset_name="bench", pipelines_dir=f"{workdir}/dlt")
t0 = time.perf_counter()
if fmt != "default":
    pipeline.run(source, loader_file_format=fmt)
else:
    pipeline.run(source)
elapsed = time.perf_counter() - t0
if pg_url:
    import psycopg
    with psycopg.connect(pg_url) as pg:
        rows = pg.execute("SELECT count(*) FROM bench.records").fetchone()[0]
else:
    import duckdb
    rows = duckdb.connect(f"{workdir}/plain.duckdb").execute("SELECT count(*) FROM bench.records").fetchone()[0]
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": rows, "seconds": elapsed, "rss_mb": rss}))
"""


PG_URL = ""
"""Set by --pg-url: every contender loads into this Postgres database."""


def _fresh_pg() -> None:
    if PG_URL:
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as pg:
            for schema in ("bench", "bench_staging"):
                pg.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _child(code: str, *args: str) -> dict:
    _fresh_pg()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=3600,
                         env={**os.environ, "RUNTIME__LOG_LEVEL": "ERROR"})
    if out.returncode != 0:
        raise SystemExit(f"contender failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _server(total: int) -> tuple[mp.Process, str]:
    q: mp.Queue = mp.Queue()
    proc = mp.Process(target=serve, args=(q, total), daemon=True)
    proc.start()
    return proc, f"http://127.0.0.1:{q.get(timeout=600)}"


def run_opsloop(base: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench_src_"))
    try:
        root = work / "proj"
        from opsloop.project.scaffold import init_project

        init_project(root)
        if PG_URL:
            from _warehouse import use_postgres

            use_postgres(root, PG_URL)
        (root / "sources").mkdir(exist_ok=True)
        (root / "sources" / "bench.yml").write_text(textwrap.dedent(f"""\
            type: rest
            client:
              base_url: {base}/
              paginator: {{type: json_link, next_url_path: next}}
            resources:
              - name: records
                primary_key: id
                write_disposition: append
                endpoint: {{path: records, data_selector: data}}
            """))
        return _child(OPSLOOP, str(root))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_plain(base: str, fmt: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench_dlt_"))
    try:
        return _child(PLAIN_DLT, f"{base}/", str(work), fmt, PG_URL)
    finally:
        shutil.rmtree(work, ignore_errors=True)


SMALL_WARM_OPSLOOP = """
import json, sys, time
from opsloop.app import App
from opsloop import load_project
from opsloop.sources import pull
app = App(load_project(sys.argv[1]))
runs = int(sys.argv[2])
pull(app, "bench", True)  # cold: imports, dlt's first pipeline
out = []
for _ in range(runs):
    w, c = time.perf_counter(), time.process_time()
    pull(app, "bench", True)
    out.append((time.perf_counter() - w, time.process_time() - c))
app.close()
print(json.dumps({"runs": out}))
"""

SMALL_WARM_DLT = """
import json, sys, time
import dlt
from dlt.sources.rest_api import rest_api_source
base, workdir, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
def source():
    return rest_api_source({
        "client": {"base_url": base, "paginator": {"type": "json_link", "next_url_path": "next"}},
        "resources": [{"name": "records", "primary_key": "id", "write_disposition": "merge",
                       "endpoint": {"path": "records", "data_selector": "data"}}],
    })
pipeline = dlt.pipeline(pipeline_name="bench_small", destination=dlt.destinations.duckdb(f"{workdir}/plain.duckdb"),
                        dataset_name="bench", pipelines_dir=f"{workdir}/dlt")
pipeline.run(source(), loader_file_format="parquet")
out = []
for _ in range(runs):
    w, c = time.perf_counter(), time.process_time()
    pipeline.run(source(), loader_file_format="parquet")
    out.append((time.perf_counter() - w, time.process_time() - c))
print(json.dumps({"runs": out}))
"""

SMALL_COLD_DLT = """
import sys
import dlt
from dlt.sources.rest_api import rest_api_source
base, workdir = sys.argv[1], sys.argv[2]
source = rest_api_source({
    "client": {"base_url": base, "paginator": {"type": "json_link", "next_url_path": "next"}},
    "resources": [{"name": "records", "primary_key": "id", "write_disposition": "merge",
                   "endpoint": {"path": "records", "data_selector": "data"}}],
})
pipeline = dlt.pipeline(pipeline_name="bench_small", destination=dlt.destinations.duckdb(f"{workdir}/plain.duckdb"),
                        dataset_name="bench", pipelines_dir=f"{workdir}/dlt")
pipeline.run(source, loader_file_format="parquet")
"""


def _cached_bytecode_env(cache: Path) -> dict[str, str]:
    """The environment of a user's shell: Python caches compiled modules (a development shell that sets
    PYTHONDONTWRITEBYTECODE recompiles every opsloop module on every command, ~0.4 s of CPU per start)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(cache), "RUNTIME__LOG_LEVEL": "ERROR"}


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, the process and its children) of one command."""
    import resource
    import time

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed:\n{out.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _small_project(work: Path, base: str) -> Path:
    from opsloop.project.scaffold import init_project

    root = work / "proj"
    init_project(root)
    (root / "sources" / "bench.yml").write_text(textwrap.dedent(f"""\
        type: rest
        client:
          base_url: {base}/
          paginator: {{type: json_link, next_url_path: next}}
        resources:
          - name: records
            primary_key: id
            endpoint: {{path: records, data_selector: data}}
        """))
    return root


def small_pull(records: int, runs: int) -> None:
    """The small-pull case: whole process and warm, opsloop against plain dlt (see the module docstring)."""
    proc, base = _server(records)
    work = Path(tempfile.mkdtemp(prefix="bench_small_"))
    try:
        root = _small_project(work, base)
        env = _cached_bytecode_env(work / "pycache")
        ours = [sys.executable, "-m", "opsloop", "pull", "bench", "--full-refresh", "--project", str(root)]
        cold: dict[str, list[tuple[float, float]]] = {"opsloop pull": [], "plain dlt": []}
        for i in range(runs + 1):  # the first round fills the bytecode cache and is not counted
            opsloop_run = _timed(ours, env)
            dlt_dir = work / f"dlt{i}"
            dlt_dir.mkdir()
            dlt_run = _timed([sys.executable, "-c", SMALL_COLD_DLT, f"{base}/", str(dlt_dir)], env)
            if i:
                cold["opsloop pull"].append(opsloop_run)
                cold["plain dlt"].append(dlt_run)
        warm = {
            "opsloop pull": _child(SMALL_WARM_OPSLOOP, str(root), str(runs))["runs"],
            "plain dlt": _child(SMALL_WARM_DLT, f"{base}/", str(work), str(runs))["runs"],
        }
    finally:
        proc.terminate()
        shutil.rmtree(work, ignore_errors=True)
    print(f"small pull of {records} records: {'':14} {'wall s':>8} {'CPU s':>8}  runs")
    medians: dict[tuple[str, str], tuple[float, float]] = {}
    for case, table in (("whole process", cold), ("warm", warm)):
        for name, times in table.items():
            wall = statistics.median(t[0] for t in times)
            cpu = statistics.median(t[1] for t in times)
            medians[(case, name)] = (wall, cpu)
            print(f"  {case:14} {name:14} {wall:>8.3f} {cpu:>8.3f}  {len(times)}")
    for case in ("whole process", "warm"):
        ours, theirs = medians[(case, "opsloop pull")], medians[(case, "plain dlt")]
        ratio(f"small pull {case}, opsloop / plain dlt (CPU)", ours[1] / theirs[1],
              f"wall {ours[0]:.2f}s vs {theirs[0]:.2f}s; opsloop's own CPU time "
              f"{ours[1] - theirs[1]:+.2f}s over dlt's")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--default-records", type=int, default=100_000,
                        help="records for dlt's default setup (it is ~100x slower; 0 skips it)")
    parser.add_argument("--only", choices=["opsloop", "parquet", "default", "small"], action="append")
    parser.add_argument("--pg-url", default="", help="an empty Postgres database to load into instead of DuckDB")
    parser.add_argument("--small-records", type=int, default=None,
                        help="records for the small-pull case (whole process and warm; default 5, 0 skips "
                             "it; --smoke skips it unless given: its fresh processes would take most of a smoke "
                             "run's time)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the whole path runs")
    args = parser.parse_args()
    if args.smoke:
        args.records, args.runs, args.default_records = 5000, 1, 1000
    if args.small_records is None:
        args.small_records = 0 if args.smoke else 5
    global PG_URL
    PG_URL = args.pg_url
    fast = "csv" if PG_URL else "parquet"
    wanted = args.only or ["opsloop", "parquet", "default", "small"]
    results: dict[str, list[dict]] = {}
    if wanted == ["small"]:
        small_pull(args.small_records or 5, max(args.runs, 3))
        return
    proc, base = _server(args.records)
    try:
        for _ in range(args.runs):
            if "opsloop" in wanted:
                results.setdefault("opsloop rest source", []).append(run_opsloop(base))
            if "parquet" in wanted:
                results.setdefault(f"plain dlt, {fast}", []).append(run_plain(base, fast))
    finally:
        proc.terminate()
    if "default" in wanted and args.default_records:
        proc, base = _server(args.default_records)
        try:
            results["plain dlt, default"] = [run_plain(base, "default") for _ in range(max(1, args.runs // 3))]
        finally:
            proc.terminate()
    print(f"{'contender':24} {'records':>9} {'records/s':>11} {'peak RSS':>10}  runs")
    rates = {}
    for name, runs in results.items():
        rate = statistics.median(r["rows"] / r["seconds"] for r in runs)
        rss = statistics.median(r["rss_mb"] for r in runs)
        rates[name] = rate
        print(f"{name:24} {runs[0]['rows']:>9,} {rate:>11,.0f} {rss:>8,.0f} MB  {len(runs)}")
    base_rate = rates.get(f"plain dlt, {fast}")
    if base_rate and "opsloop rest source" in rates:
        faster = rates["opsloop rest source"] / base_rate
        rss = statistics.median(r["rss_mb"] for r in results["opsloop rest source"])
        ratio(f"opsloop / dlt {fast} into {'Postgres' if PG_URL else 'DuckDB'}", faster,
              f"goal >= 5x: {'met' if faster >= 5 else 'NOT met'}; "
              f"opsloop peak RSS {rss:,.0f} MB (goal < 1024 MB: {'met' if rss < 1024 else 'NOT met'})")
    if "small" in wanted and args.small_records and not PG_URL:
        small_pull(args.small_records, max(args.runs, 3) if not args.smoke else 1)


if __name__ == "__main__":
    main()
