"""Python models (`def model(dbt, session)`) build on DuckDB as dbt-duckdb builds them: `dbt.ref` /
`dbt.source` give DuckDB relations, `session` is the connection, the returned relation (or DataFrame)
becomes a table that SQL models can ref — the same tables as dbt."""

from __future__ import annotations

from pathlib import Path

from ._dbt import build_both, opsloop, relations, side_by_side, write_project

FILES = {
    "seeds/payments.csv": """
        id,customer,amount
        1,ann,10
        2,bob,-5
        3,ann,7
    """,
    "models/totals.py": """
        def model(dbt, session):
            dbt.config(materialized="table", tags=["py"])
            payments = dbt.ref("payments")
            positive = payments.filter("amount > 0")
            return positive.aggregate("customer, sum(amount) as total", "customer")
    """,
    "models/counted.py": """
        def model(dbt, session):
            n = dbt.ref("totals").count("*").fetchall()[0][0]
            return session.sql(f"select {n} as n, '{dbt.config.get('materialized')}' as how")
    """,
    "models/new_payments.py": """
        def model(dbt, session):
            dbt.config(materialized="incremental", unique_key="id")
            rows = dbt.ref("payments")
            if dbt.is_incremental:
                top = session.sql(f"select max(id) from {dbt.this}").fetchall()[0][0]
                rows = rows.filter(f"id > {top}")
            return rows.project("id, amount")
    """,
    "models/report.sql": "select customer, total * 2 as doubled from {{ ref('totals') }}\n",
}


def test_python_models_build_the_tables_dbt_duckdb_builds(tmp_path: Path) -> None:
    ours, theirs = build_both(tmp_path, FILES)
    built = relations(ours / "warehouse.duckdb")
    assert built["main.report"][1] == [("ann", 34)]
    assert built["main.counted"][1] == [(1, "table")]
    assert built == relations(theirs / "dbt.duckdb")
    assert opsloop(ours, "build", "-s", "tag:py").returncode == 0  # the config() it sets is read without running it

    # an incremental Python model takes only the new ids the second time, as in dbt-duckdb
    for root in (ours, theirs):
        (root / "seeds" / "payments.csv").write_text("id,customer,amount\n1,ann,99\n2,bob,-5\n3,ann,7\n4,cy,1\n")
    proc, ref = side_by_side(ours, theirs, "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ref.returncode == 0, ref.stdout
    built = relations(ours / "warehouse.duckdb")
    assert built["main.new_payments"][1] == [(1, 10), (2, -5), (3, 7), (4, 1)]
    # dbt-duckdb leaves its new rows' table (new_payments__dbt_tmp<timestamp>) behind; opsloop drops it
    assert built == {k: v for k, v in relations(theirs / "dbt.duckdb").items() if "__dbt_tmp" not in k}


def test_a_python_model_returning_an_arrow_table_and_its_errors(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", {
        "seeds/payments.csv": "id,amount\n1,10\n2,20\n",
        "models/frame.py": "import pyarrow as pa\n\n\ndef model(dbt, session):\n"
                           "    rows = dbt.ref('payments').fetchall()\n"
                           "    return pa.table({'total': [sum(r[1] for r in rows)]})\n",
        "models/from_source.py": "def model(dbt, session):\n    return dbt.source('raw', 'events').limit(0)\n",
    })
    proc = opsloop(root, "build")
    assert proc.returncode == 0, proc.stderr
    assert relations(root / "warehouse.duckdb")["main.frame"][1] == [(30,)]

    (root / "models" / "frame.py").write_text("def model(dbt, session):\n    x = 1\n    return 1 / 0\n")
    proc = opsloop(root, "build")
    assert proc.returncode == 1
    assert "models/frame.py:3: ZeroDivisionError: division by zero" in proc.stderr, proc.stderr
    (root / "models" / "frame.py").write_text("def model(dbt, session):\n    return dbt.ref('nope')\n")
    (root / "models" / "view.py").write_text("def model(dbt, session):\n    dbt.config(materialized='view')\n"
                                             "    return session.sql('select 1')\n")
    (root / "models" / "no_func.py").write_text("x = 1\n")
    proc = opsloop(root, "validate")
    assert proc.returncode == 1
    for line in ["models/frame.py:2: ref('nope') names no model or seed",
                 "models/view.py:2: Python model 'view': materialized 'view' is not supported for Python models",
                 "models/no_func.py:1: a Python model needs a top-level def model(dbt, session)"]:
        assert line in proc.stderr, (line, proc.stderr)
