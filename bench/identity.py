"""Identity resolution at scale: 1M identifier records (~300k people) in three systems, on DuckDB.

    .venv/bin/python bench/identity.py [--people 300000] [--runs 3]
    .venv/bin/python bench/identity.py --smoke     # 2,000 people, one run (the CI smoke test)

Measures, each run in a fresh subprocess so that peak memory (max RSS) is per measurement:

- baseline: one scan of all source rows into a table (the least any resolution must do);
- full: the first build (empty normaliser cache, every record resolved, golden record built);
- incremental: the next build after 1% of records changed (phones edited, emails edited, records added).

Prints medians of the runs and ratios against the baseline. Goals: full < 10 s and < 2 GB; incremental < 2 s.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import ratio

IDENTITY = {
    "identifiers": {
        "email": {"normalize": "email"},
        "phone": {"normalize": "phone", "region": "US", "max_per_person": 3, "max_records_per_value": 25},
        "app_user_id": {"max_per_person": 1},
        "crm_id": {"max_per_person": 1},
        "support_id": {},
    },
    "merge_rules": ["app_user_id", "crm_id", "email", "phone"],
    "memory_limit": "1500MB",
    "sources": [
        {"system": "app", "relation": "src.app_users", "record_id": "id", "updated_at": "updated_at",
         "identifiers": {"app_user_id": "id", "email": "email", "phone": "phone"},
         "fields": {"phone": "phone", "name": "name", "plan": "plan"}},
        {"system": "crm", "relation": "src.crm_contacts", "record_id": "id", "updated_at": "updated_at",
         "identifiers": {"crm_id": "id", "email": "email", "phone": "phone", "app_user_id": "app_user_id"},
         "fields": {"phone": "phone", "name": "name", "company": "company"}},
        {"system": "support", "relation": "src.support_users", "record_id": "id", "updated_at": "updated_at",
         "identifiers": {"support_id": "id", "email": "email", "phone": "phone"},
         "fields": {"phone": "phone", "name": "name"}},
    ],
    "fields": {
        "phone": {"survivorship": "priority", "priority": ["app", "crm", "support"], "normalize": "phone"},
        "name": {"survivorship": "most_recent"},
        "company": {"survivorship": "most_frequent"},
        "plan": {"survivorship": "priority", "priority": ["app"]},
    },
}


NUMBER = ("((201 + i % 798)::VARCHAR || (201 + (i // 798) % 798)::VARCHAR "
          "|| lpad((hash(i) % 10000)::VARCHAR, 4, '0'))")
"""A valid North American number per person i (area and exchange codes start with 2-9)."""


def generate(db_path: str, people: int) -> int:
    """Source tables with ~3.33 records per person; formats vary as real systems' do."""
    import duckdb

    con = duckdb.connect(db_path)
    con.execute("CREATE SCHEMA src")
    n_support = int(people * 4 / 3)
    # phone numbers: a valid NANP number per person; the app stores E.164, the CRM and support tool
    # formatted national numbers; 1 in 50 people has no usable phone (blank or 'unknown').
    con.execute(f"""
        CREATE TABLE src.app_users AS
        SELECT 'u' || i AS id, 'user' || i || '@example.com' AS email,
               '+1' || n AS phone, 'User ' || i AS name,
               ['free', 'pro', 'enterprise'][1 + (hash(i) % 3)::INT] AS plan,
               TIMESTAMPTZ '2026-01-01' + to_seconds(hash(i, 'a') % 10000000) AS updated_at
        FROM (SELECT i, {NUMBER} AS n FROM range({people}) t(i))""")
    con.execute(f"""
        CREATE TABLE src.crm_contacts AS
        SELECT 'c' || i AS id,
               CASE WHEN hash(i, 'e') % 4 = 0 THEN upper('User' || i || '@Example.com ') ELSE 'user' || i
                    || '@example.com' END AS email,
               CASE WHEN hash(i, 'p') % 50 = 0 THEN 'unknown' ELSE
                 '(' || substr(n, 1, 3) || ') ' || substr(n, 4, 3) || '-' || substr(n, 7, 4) END AS phone,
               CASE WHEN hash(i, 'l') % 2 = 0 THEN 'u' || i END AS app_user_id,
               'User ' || i || ' (CRM)' AS name, 'Company ' || (i % 5000) AS company,
               TIMESTAMPTZ '2026-01-01' + to_seconds(hash(i, 'c') % 10000000) AS updated_at
        FROM (SELECT i, {NUMBER} AS n FROM range({people}) t(i))""")
    con.execute(f"""
        CREATE TABLE src.support_users AS
        SELECT 's' || j AS id,
               CASE WHEN hash(j, 'e') % 3 = 0 THEN NULL ELSE 'user' || i || '@example.com' END AS email,
               CASE WHEN hash(j, 'p') % 3 = 0 THEN substr(n, 1, 3) || '.' || substr(n, 4, 3) || '.'
                    || substr(n, 7, 4) ELSE NULL END AS phone,
               'user ' || i AS name,
               TIMESTAMPTZ '2026-01-01' + to_seconds(hash(j, 's') % 10000000) AS updated_at
        FROM (SELECT j, i, {NUMBER} AS n FROM (SELECT j, j % {people} AS i FROM range({n_support}) t(j)))""")
    total = sum(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                for t in ("src.app_users", "src.crm_contacts", "src.support_users"))
    con.close()
    return int(total)


def change_one_percent(db_path: str, people: int) -> int:
    """1% of records change: app phones, CRM emails, and new support records."""
    import duckdb

    con = duckdb.connect(db_path)
    k = people // 100
    con.execute("UPDATE src.app_users SET phone = '+1' || (3000000000 + hash(id) % 999999999)::VARCHAR, "
                "updated_at = TIMESTAMPTZ '2026-06-01' WHERE hash(id, 'chg') % 100 = 0")
    con.execute("UPDATE src.crm_contacts SET email = 'new.' || email, updated_at = TIMESTAMPTZ '2026-06-01' "
                "WHERE hash(id, 'chg') % 100 = 0")
    con.execute(f"INSERT INTO src.support_users SELECT 'new' || i, 'user' || (i * 13 % {people}) || '@example.com', "
                f"NULL, 'new', TIMESTAMPTZ '2026-06-01' FROM range({k}) t(i)")
    changed = con.execute("SELECT (SELECT count(*) FROM src.app_users WHERE updated_at = TIMESTAMPTZ '2026-06-01') + "
                          "(SELECT count(*) FROM src.crm_contacts WHERE updated_at = TIMESTAMPTZ '2026-06-01') + "
                          f"{k}").fetchone()[0]  # type: ignore[index]
    con.close()
    return int(changed)


def worker(mode: str, db_path: str) -> None:
    from opsloop.identity._sql import Conn
    from opsloop.identity.config import IdentityConfig
    from opsloop.identity.resolve import Resolver
    from opsloop.warehouse.duckdb import DuckDBWarehouse

    wh = DuckDBWarehouse(db_path)
    cfg = IdentityConfig.model_validate(IDENTITY)
    fields = ["phone", "name", "company", "plan"]
    db = Conn(wh)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    out: dict[str, object] = {}
    if mode == "baseline":
        db.x("CREATE OR REPLACE TABLE scan AS SELECT id, email, phone, updated_at FROM src.app_users UNION ALL "
             "SELECT id, email, phone, updated_at FROM src.crm_contacts UNION ALL "
             "SELECT id, email, phone, updated_at FROM src.support_users")
    else:
        result = Resolver(db, cfg, fields).build()
        out = result.as_dict() | {"timings": result.timings}
    seconds = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    db.close()
    wh.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rss_mb": rss_mb, **out}))


def run_worker(mode: str, db_path: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, __file__, "--worker", mode, "--db", db_path], capture_output=True,
                          text=True, check=True)
    data: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker")
    parser.add_argument("--db")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the whole path runs")
    args = parser.parse_args()
    if args.smoke:
        args.people, args.runs = 2000, 1
    if args.worker:
        worker(args.worker, args.db)
        return
    tmp = Path(tempfile.mkdtemp(prefix="opsloop-bench-identity-"))
    try:
        template = str(tmp / "template.duckdb")
        t0 = time.perf_counter()
        records = generate(template, args.people)
        print(f"generated {records:,} records for {args.people:,} people in {time.perf_counter() - t0:.1f}s")
        base, full, inc = [], [], []
        for run in range(args.runs):
            db = str(tmp / f"run{run}.duckdb")
            shutil.copy(template, db)
            base.append(run_worker("baseline", db))
            full.append(run_worker("full", db))
            changed = change_one_percent(db, args.people)
            inc.append(run_worker("incremental", db))
            print(f"run {run + 1}: baseline {base[-1]['seconds']:.2f}s, full {full[-1]['seconds']:.2f}s "
                  f"({full[-1]['rss_mb']:.0f} MB, {full[-1]['persons']:,} people), incremental after "
                  f"{changed:,} changed records {inc[-1]['seconds']:.2f}s ({inc[-1]['rss_mb']:.0f} MB, "
                  f"{inc[-1]['scope']:,} re-resolved, {inc[-1]['profile_updates']:,} profile updates)")
            print(f"  full stages: {full[-1]['timings']}")
            print(f"  incremental stages: {inc[-1]['timings']}")
            Path(db).unlink()

        def med(rows: list[dict[str, object]], key: str) -> float:
            return statistics.median(float(r[key]) for r in rows)  # type: ignore[arg-type]

        b, f, i = med(base, "seconds"), med(full, "seconds"), med(inc, "seconds")
        fm, im = med(full, "rss_mb"), med(inc, "rss_mb")
        bc, fc, ic = med(base, "cpu"), med(full, "cpu"), med(inc, "cpu")
        load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
        print(f"\nmedians of {args.runs} runs ({records:,} records; load average now {load}):")
        print("                    wall        CPU (user+sys)   peak RSS   wall vs baseline")
        print(f"  baseline scan     {b:6.2f} s   {bc:6.2f} s         {med(base, 'rss_mb'):6.0f} MB")
        print(f"  full resolution   {f:6.2f} s   {fc:6.2f} s         {fm:6.0f} MB   {f / b:5.1f}x   "
              f"goal < 10 s, < 2048 MB: {'met' if f < 10 and fm < 2048 else 'NOT met'}")
        print(f"  incremental (1%)  {i:6.2f} s   {ic:6.2f} s         {im:6.0f} MB   {i / b:5.1f}x   "
              f"goal < 2 s: {'met' if i < 2 else 'NOT met'}")
        ratio("full resolution / baseline scan", f / b)
        ratio("incremental (1%) / baseline scan", i / b)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
