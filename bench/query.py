"""`opsloop query` on a 1M-row table: the CLI without a server and `POST /api/query` on `opsloop up`,
against the same SQL run directly on DuckDB (connect, execute, fetch 1000 rows) in the same run.

    .venv/bin/python bench/query.py [--runs 5] [--rows 1000000] [--smoke]

Prints the median seconds per query, and the API's and the CLI's ratio to the bare-DuckDB figure.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _report import ratio

QUERIES = {
    "count+sum": "select count(*), sum(j) from big",
    "select * (1000 rows shown)": "select * from big",
    "point lookup": "select * from big where i = 500000",
    "group by 100": "select i % 100 as k, count(*), avg(j) from big group by 1 order by 1",
}


def median(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help="a few seconds: 10k rows, one run each")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.rows = 1, 10_000

    import duckdb
    import httpx

    from opsloop.project.scaffold import init_project

    root = Path(tempfile.mkdtemp()) / "proj"
    init_project(root)
    path = root / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute(f"create table big as select i, i * 2 as j, 'name ' || i as s from range({int(args.rows)}) t(i)")
    con.close()

    def bare(sql: str) -> None:
        c = duckdb.connect(str(path), read_only=True)
        c.execute(sql).fetchmany(1000)
        c.close()

    def cli(sql: str) -> None:
        proc = subprocess.run([sys.executable, "-m", "opsloop", "query", sql, "-p", str(root), "--json"],
                              capture_output=True, text=True, env=os.environ)
        assert proc.returncode == 0, proc.stderr

    print(f"{'query':28} {'bare DuckDB':>12} {'CLI, no server':>15} {'API on opsloop up':>18}")
    figures: dict[str, list[float]] = {}
    for name, sql in QUERIES.items():
        figures[name] = [median(lambda s=sql: bare(s), args.runs), median(lambda s=sql: cli(s), args.runs)]

    port = free_port()
    up = subprocess.Popen([sys.executable, "-m", "opsloop", "up", "-p", str(root), "--port", str(port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    token = next(line.split("=", 1)[1] for line in (root / ".env").read_text().splitlines()
                 if line.startswith("OPSLOOP_API_TOKEN="))
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                              timeout=120)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("opsloop up did not start")
            time.sleep(0.1)
        for name, sql in QUERIES.items():
            def api(s: str = sql) -> None:
                answer = client.post("/api/query", json={"sql": s})
                assert answer.status_code == 200, answer.text
            api()
            figures[name].append(median(api, args.runs))
    finally:
        up.terminate()
        up.wait(30)
    for name, (b, c, a) in figures.items():
        print(f"{name:28} {b:11.3f}s {c:14.3f}s {a:17.3f}s")
    bare_total = sum(f[0] for f in figures.values())
    ratio("API query / bare DuckDB (sum of the queries)", sum(f[2] for f in figures.values()) / bare_total)
    ratio("CLI query / bare DuckDB (sum of the queries)", sum(f[1] for f in figures.values()) / bare_total)


if __name__ == "__main__":
    main()
