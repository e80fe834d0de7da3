"""CLI start-up: whole-process times of `opsloop` verbs next to `dbt` on the same jaffle-shop-sized project.

    .venv/bin/python bench/cli.py [--runs 5] [--no-dbt]
    .venv/bin/python bench/cli.py --smoke      # one run of each command (the CI smoke test)

It writes a small shop project (3 seeds, 3 staging views, 2 mart tables, a schema.yml with data tests:
the shape of dbt's jaffle_shop example) and times, as whole processes, medians of --runs:

- `opsloop --help`, `opsloop build --help`, `opsloop validate`, `opsloop build`, `opsloop query`
- `dbt --help`, `dbt build` (dbt-core + dbt-duckdb from .venv-dbt) on the same folder

The goals (issue 21): `--help` under 0.3 s, any verb's first output under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import ratio, skipped

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
DBT = REPO / ".venv-dbt" / "bin" / "dbt"
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("OPSLOOP_")},
       "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false"}

STAGING = {
    "stg_customers": "select id as customer_id, first_name, last_name from {{ ref('raw_customers') }}",
    "stg_orders": "select id as order_id, user_id as customer_id, order_date, status from {{ ref('raw_orders') }}",
    "stg_payments": "select id as payment_id, order_id, payment_method, amount / 100.0 as amount\n"
                    "from {{ ref('raw_payments') }}",
}
ORDERS = """{{ config(materialized='table') }}
select o.order_id, o.customer_id, o.order_date, o.status,
       coalesce(sum(p.amount), 0) as amount,
       coalesce(sum(case when p.payment_method = 'card' then p.amount end), 0) as card_amount
from {{ ref('stg_orders') }} o
left join {{ ref('stg_payments') }} p on p.order_id = o.order_id
group by 1, 2, 3, 4
"""
CUSTOMERS = """{{ config(materialized='table') }}
select c.customer_id, c.first_name, c.last_name,
       min(o.order_date) as first_order, max(o.order_date) as most_recent_order,
       count(o.order_id) as number_of_orders, coalesce(sum(o.amount), 0) as lifetime_value
from {{ ref('stg_customers') }} c
left join {{ ref('orders') }} o on o.customer_id = c.customer_id
group by 1, 2, 3
"""
SCHEMA = """version: 2
models:
  - name: customers
    columns:
      - name: customer_id
        tests: [unique, not_null]
  - name: orders
    columns:
      - name: order_id
        tests: [unique, not_null]
      - name: status
        tests:
          - accepted_values:
              values: ['placed', 'shipped', 'completed', 'returned']
  - name: stg_payments
    columns:
      - name: payment_id
        tests: [unique, not_null]
"""


def make_project(folder: Path) -> None:
    """A shop project in the dbt layout that both tools build: 100 customers, 99 orders, 113 payments."""
    rng = random.Random(7)
    (folder / "models" / "staging").mkdir(parents=True)
    (folder / "seeds").mkdir()
    (folder / "dbt_project.yml").write_text(
        "name: shop\nversion: '1.0'\nprofile: shop\nmodels:\n  shop:\n    staging:\n      +materialized: view\n")
    (folder / "profiles.yml").write_text(
        f"shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: {folder / 'dbt.duckdb'}\n"
        "      schema: main\n      threads: 4\n")
    (folder / "seeds" / "raw_customers.csv").write_text(
        "id,first_name,last_name\n" + "".join(f"{i},F{i},L{i % 26}\n" for i in range(1, 101)))
    (folder / "seeds" / "raw_orders.csv").write_text("id,user_id,order_date,status\n" + "".join(
        f"{i},{rng.randint(1, 100)},2018-{1 + i % 12:02d}-{1 + i % 28:02d},"
        f"{rng.choice(['placed', 'shipped', 'completed', 'returned'])}\n" for i in range(1, 100)))
    (folder / "seeds" / "raw_payments.csv").write_text("id,order_id,payment_method,amount\n" + "".join(
        f"{i},{1 + i % 99},{rng.choice(['card', 'coupon', 'bank_transfer'])},{rng.randint(0, 3000)}\n"
        for i in range(1, 114)))
    for name, sql in STAGING.items():
        (folder / "models" / "staging" / f"{name}.sql").write_text(sql + "\n")
    (folder / "models" / "orders.sql").write_text(ORDERS)
    (folder / "models" / "customers.sql").write_text(CUSTOMERS)
    (folder / "models" / "schema.yml").write_text(SCHEMA)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one whole process."""
    cpu, start = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed, _children_cpu() - cpu


def medians(cmd: list[str], cwd: Path, runs: int) -> tuple[float, float]:
    samples = [timed(cmd, cwd) for _ in range(runs)]
    return statistics.median(w for w, _ in samples), statistics.median(c for _, c in samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-dbt", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="one run of each command: checks the whole path")
    args = parser.parse_args()
    runs = 1 if args.smoke else args.runs
    use_dbt = DBT.exists() and not args.no_dbt
    if not use_dbt:
        skipped("dbt", "--no-dbt" if args.no_dbt else f"{DBT} not found (bash scripts/setup installs it)")
    work = Path(tempfile.mkdtemp(prefix="opsloop-bench-cli-"))
    folder = work / "shop"
    make_project(folder)
    ops = [PY, "-m", "opsloop"]
    where = ["--project", str(folder)]
    dbt = [str(DBT)]
    dbt_where = ["--project-dir", str(folder), "--profiles-dir", str(folder)]
    commands: list[tuple[str, list[str], str]] = [
        ("opsloop --help", [*ops, "--help"], "help"),
        ("opsloop build --help", [*ops, "build", "--help"], "help"),
        ("opsloop validate", [*ops, "validate", *where], "verb"),
        ("opsloop build", [*ops, "build", *where], "build"),
        ("opsloop query", [*ops, "query", *where, "select count(*) from customers"], "verb"),
    ]
    if use_dbt:
        commands += [("dbt --help", [*dbt, "--help"], "peer"), ("dbt build", [*dbt, "build", *dbt_where], "peer")]
    times: dict[str, float] = {}
    timed([*ops, "build", *where], folder)  # the warehouse exists before `query` is timed
    print(f"# whole processes, medians of {runs} run(s); project {folder}; os.getloadavg() "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (CPU seconds hold on a busy machine, wall does not)")
    print(f"{'command':<24} {'wall s':>8} {'cpu s':>8}  goal (wall, quiet machine)")
    commands.append(("python -c pass", [PY, "-c", "pass"], "bare"))  # what every process pays
    for label, cmd, kind in commands:
        wall, times[label] = medians(cmd, folder, runs)
        goal = {"help": "< 0.30 s", "verb": "< 0.50 s"}.get(kind, "")
        print(f"{label:<24} {wall:>8.3f} {times[label]:>8.3f}  {goal}", flush=True)
    # ratios of CPU seconds: the share of the machine each command takes
    help_cpu = times["opsloop --help"]
    if use_dbt:
        ratio("dbt --help / opsloop --help (cpu)", times["dbt --help"] / help_cpu)
        ratio("dbt build / opsloop build (cpu)", times["dbt build"] / times["opsloop build"])
    ratio("opsloop --help / bare python (cpu)", help_cpu / max(times["python -c pass"], 1e-3))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
