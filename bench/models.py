"""Model builds: whole-process `opsloop build` vs `dbt build` vs the bare-engine floor.

    .venv/bin/python bench/models.py [--sizes 10,100,500] [--runs 3] [--rows 100000] [--no-dbt]
    .venv/bin/python bench/models.py --smoke     # 10 models over 1,000 rows, one run (the CI smoke test)

For each size N it generates a dbt project of N table models over one 100k-row source table (chains and
joins, several DAG levels), then times, as whole processes, medians of --runs:

- dbt:    `dbt build` (dbt-core 1.11 + dbt-duckdb from .venv-dbt)
- opsloop: `opsloop build --project DIR` on the same folder (a bare dbt project)
- floor:  a bare Python script that runs the same compiled CREATE TABLE statements on DuckDB in DAG
          order (what any runner must at least do)

With ``--variants plain,package`` (the default) each size runs twice: as above, and with every model
calling macros of a local package (``benchutils``: an ``adapter.dispatch``'d macro built on ``dbt.concat``
and ``dbt.safe_cast``, as dbt_utils' macros are), so the figures include packages in play.

And, in the largest project, the time to rebuild the downstream of one changed model
(`opsloop run -s MODEL+`, whole process, and the same through the warm Python API).
"""

from __future__ import annotations

import argparse
import json
import os
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
ENV = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false"}


PACKAGE_MACROS = """
{% macro tag(col, prefix) %}{{ return(adapter.dispatch('tag', 'benchutils')(col, prefix)) }}{% endmacro %}
{% macro default__tag(col, prefix) -%}
  {{ dbt.concat([dbt.string_literal(prefix), dbt.safe_cast(col, dbt.type_string())]) }}
{%- endmacro %}
{% macro duckdb__tag(col, prefix) %}{{ benchutils.default__tag(col, prefix) }}{% endmacro %}
"""


def make_package(folder: Path) -> None:
    """A small local package whose macro dispatches, as dbt_utils' macros do."""
    (folder / "benchutils" / "macros").mkdir(parents=True)
    (folder / "benchutils" / "dbt_project.yml").write_text("name: benchutils\nversion: '1.0'\nconfig-version: 2\n")
    (folder / "benchutils" / "macros" / "tag.sql").write_text(PACKAGE_MACROS)
    (folder / "packages.yml").write_text("packages:\n  - local: benchutils\n")


def make_project(folder: Path, n: int, rows: int, package: bool = False) -> None:
    (folder / "models").mkdir(parents=True)
    (folder / "dbt_project.yml").write_text(
        "name: bench\nversion: '1.0'\nprofile: bench\nmodels:\n  bench:\n    +materialized: table\n")
    if package:
        make_package(folder)
    (folder / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: raw\n    tables:\n      - name: src\n")
    width = max(1, n // 10)  # ten DAG levels
    for i in range(n):
        level = i // width
        if level == 0:
            body = (f"select id, grp, val + {i} as val, label from {{{{ source('raw', 'src') }}}}")
        elif i % 3 == 0 and level >= 1:
            a = (level - 1) * width + (i % width)
            b = (level - 1) * width + ((i + 1) % width)
            body = (f"select a.id, a.grp, a.val + b.val as val, a.label\nfrom {{{{ ref('m{a}') }}}} a\n"
                    f"join {{{{ ref('m{b}') }}}} b on a.id = b.id")
        else:
            p = (level - 1) * width + (i % width)
            body = (f"select id, (grp + {i}) % 97 as grp, val * 1.0001 as val, label\n"
                    f"from {{{{ ref('m{p}') }}}}\nwhere val > -1")
        if package:  # the label goes through the package's dispatched macro
            body = body.replace("a.label", "{{ benchutils.tag('a.label', 'x') }} as label", 1) if "a.label" in body \
                else body.replace(", label", ", {{ benchutils.tag('label', 'x') }} as label", 1)
        (folder / "models" / f"m{i}.sql").write_text(body + "\n")


def seed_source(db: Path, rows: int) -> None:
    import duckdb

    con = duckdb.connect(str(db))
    con.execute("create schema if not exists raw")
    con.execute(f"create or replace table raw.src as select range as id, range % 97 as grp, "
                f"(range * 7 % 1000)::double as val, 'label_' || (range % 13) as label from range({rows})")
    con.close()


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env or ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def floor_script(folder: Path) -> Path:
    """The compiled CREATE TABLE statements in DAG order, and a bare script that runs them."""
    sys.path.insert(0, str(REPO / "src"))
    from opsloop.models.compiler import Compiler, Target
    from opsloop.models.project import read_model_project

    mp = read_model_project(folder, None, [])
    assert mp is not None
    compiler = Compiler(mp, Target(schema="main"), {})
    assert not compiler.parse()
    statements = [f"CREATE OR REPLACE TABLE main.{uid[6:]} AS (\n{compiler.sql(mp.models[uid[6:]])}\n)"
                  for uid in compiler.order if uid.startswith("model.")]
    (folder / "floor.json").write_text(json.dumps(statements))
    script = folder / "floor.py"
    script.write_text(
        "import json, sys, duckdb\n"
        "con = duckdb.connect(sys.argv[1])\n"
        "for s in json.load(open(sys.argv[2])):\n    con.execute(s)\n"
        "con.close()\n")
    return script


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100,500")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--no-dbt", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the whole path runs")
    parser.add_argument("--variants", default="plain,package",
                        help="plain: the models alone; package: every model calls a local package's macros")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.runs, args.rows = "10", 1, 1000
    use_dbt = DBT.exists() and not args.no_dbt
    if not use_dbt:
        skipped("dbt", "--no-dbt" if args.no_dbt else f"{DBT} not found (bash scripts/setup installs it)")
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="opsloop-bench-models-"))
    print(f"# {args.rows} source rows, medians of {args.runs} runs, whole processes; work dir {work}")
    print(f"{'models':>6} {'variant':>8} {'dbt s':>8} {'opsloop s':>10} {'floor s':>8} {'dbt/opsloop':>12} "
          f"{'opsloop/floor':>14}")
    rebuild: dict[str, float] = {}
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for n, variant in [(n, v) for n in sizes for v in variants]:
        package = variant == "package"
        folder = work / f"p{n}{'_pkg' if package else ''}"
        make_project(folder, n, args.rows, package)
        (folder / "profiles.yml").write_text(
            f"bench:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: {folder / 'dbt.duckdb'}\n"
            "      schema: main\n      threads: 4\n")
        for db in ("dbt.duckdb", "warehouse.duckdb", "floor.duckdb"):
            seed_source(folder / db, args.rows)
        script = floor_script(folder)
        if package and use_dbt:  # dbt needs its deps step once (opsloop reads a local: package in place)
            timed([str(DBT), "deps", "--project-dir", str(folder), "--profiles-dir", str(folder)], folder)
        ops_cmd = [PY, "-m", "opsloop", "build", "--project", str(folder)]
        if args.threads:
            ops_cmd += ["--threads", str(args.threads)]
        dbt_t, ops_t, floor_t = [], [], []
        for _ in range(args.runs):
            floor_t.append(timed([PY, str(script), str(folder / "floor.duckdb"), str(folder / "floor.json")], folder))
            ops_t.append(timed(ops_cmd, folder))
            if use_dbt:
                dbt_t.append(timed([str(DBT), "build", "--project-dir", str(folder), "--profiles-dir", str(folder)],
                                   folder))
        d = median(dbt_t) if dbt_t else float("nan")
        o, f = median(ops_t), median(floor_t)
        print(f"{n:>6} {variant:>8} {d:>8.2f} {o:>10.2f} {f:>8.2f} {d / o:>11.1f}x {o / f:>13.2f}x", flush=True)
        label = f"{n} models" + (" with a package" if package else "")
        ratio(f"opsloop/floor at {label}", o / f)
        if use_dbt:
            ratio(f"dbt/opsloop at {label}", d / o)
        if n == max(sizes) and variant == variants[0]:
            # one changed model: rebuild it and everything downstream of it
            width = max(1, n // 10)
            target = f"m{8 * width}"  # two levels from the leaves
            touched = folder / "models" / f"{target}.sql"
            touched.write_text(touched.read_text().replace("where val > -1", "where val > -2"))
            cmd = [PY, "-m", "opsloop", "run", "--project", str(folder), "-s", f"{target}+", "--json"]
            whole = [timed(cmd, folder) for _ in range(args.runs)]
            proc = subprocess.run(cmd, cwd=folder, env=ENV, capture_output=True, text=True)
            count = len(json.loads(proc.stdout)["results"])
            sys.path.insert(0, str(REPO / "src"))
            from opsloop import load_project
            from opsloop.models import ModelEngine
            from opsloop.warehouse.duckdb import DuckDBWarehouse

            wh = DuckDBWarehouse(folder / "warehouse.duckdb")
            engine = ModelEngine(load_project(folder), wh)
            engine.build(select=[f"{target}+"], kinds=("model",))
            warm = []
            for _ in range(args.runs):
                start = time.perf_counter()
                engine.build(select=[f"{target}+"], kinds=("model",))
                warm.append(time.perf_counter() - start)
            wh.close()
            rebuild = {"models": count, "whole": median(whole), "warm": median(warm)}
    if rebuild:
        print(f"# downstream rebuild of one changed model in the {max(sizes)}-model project "
              f"({rebuild['models']:.0f} models): whole process {rebuild['whole']:.2f} s, "
              f"warm Python API (the server's path) {rebuild['warm']:.2f} s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
