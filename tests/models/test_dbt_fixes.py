"""Bugs in what opsloop supports, each checked against dbt-duckdb: unique on an expression, a source YAML
listing only some columns, YAML entries dbt only warns about, and a runtime SQL error's file:line."""

from __future__ import annotations

from pathlib import Path

import duckdb

from ._dbt import dbt, opsloop, relations, write_project

PAIRS = "a,b\n1,x\n1,y\n2,x\n"


def _unique_on(expression: str) -> dict[str, str]:
    return {
        "seeds/pairs.csv": PAIRS,
        "models/pairs_v.sql": "select * from {{ ref('pairs') }}\n",
        "models/schema.yml": f"""
            version: 2
            models:
              - name: pairs_v
                data_tests:
                  - unique:
                      column_name: "{expression}"
        """,
    }


def test_unique_on_an_expression_is_not_quoted_as_a_column(tmp_path: Path) -> None:
    for i, (expression, code) in enumerate([("cast(a as varchar) || '-' || b", 0), ("a + 0", 1)]):
        files = _unique_on(expression)
        ours = write_project(tmp_path / f"ours{i}", files)
        theirs = write_project(tmp_path / f"theirs{i}", files)
        proc = opsloop(ours, "build")
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert "Binder Error" not in proc.stderr
        assert dbt(theirs, "build").returncode == code
    assert "models/schema.yml:5: 1 failing row(s) for unique on pairs_v.a + 0" in proc.stderr, proc.stderr


def test_a_source_yaml_listing_some_columns_does_not_hide_the_others(tmp_path: Path) -> None:
    files = {
        "models/sources.yml": """
            version: 2
            sources:
              - name: raw
                tables:
                  - name: orders
                    columns:
                      - name: id
                        description: the order
                        data_tests: [not_null]
        """,
        "models/order_totals.sql": "select id, amount * 2 as doubled, note\nfrom {{ source('raw', 'orders') }}\n",
    }
    ours = write_project(tmp_path / "ours", files)
    theirs = write_project(tmp_path / "theirs", files)
    for db in (ours / "warehouse.duckdb", theirs / "dbt.duckdb"):
        con = duckdb.connect(str(db))
        con.execute("create schema raw; create table raw.orders as select 1 as id, 5 as amount, 'n' as note")
        con.close()
    assert opsloop(ours, "validate").returncode == 0
    proc = opsloop(ours, "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dbt(theirs, "build").returncode == 0
    assert relations(ours / "warehouse.duckdb") == relations(theirs / "dbt.duckdb")
    # a column that really is missing is still reported, with its line
    for root in (ours,):
        (root / "models" / "order_totals.sql").write_text("select id,\n  amont\nfrom {{ source('raw', 'orders') }}\n")
    proc = opsloop(ours, "build")
    assert proc.returncode == 1
    assert "models/order_totals.sql:2: column 'amont' does not exist in orders" in proc.stderr, proc.stderr


def test_yaml_entries_dbt_only_warns_about_do_not_fail_the_build(tmp_path: Path) -> None:
    files = {
        "seeds/payments.csv": "id\n1\n",
        "models/paid.sql": "select * from {{ ref('payments') }}\n",
        "models/schema.yml": """
            version: 2
            models:
              - name: paid
              - name: ghost
                description: a model that was deleted
              - name: payments
                columns:
                  - name: id
                    data_tests: [not_null]
        """,
    }
    ours = write_project(tmp_path / "ours", files)
    theirs = write_project(tmp_path / "theirs", files)
    ref = dbt(theirs, "build")
    assert ref.returncode == 0, ref.stdout
    proc = opsloop(ours, "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "models/schema.yml:4: warning: model 'ghost' is described here but there is no model file" in proc.stderr
    assert "models/schema.yml:6: warning: model 'payments' is described here" in proc.stderr
    assert "'payments' is a seed; describe it under seeds:" in proc.stderr
    assert relations(ours / "warehouse.duckdb") == relations(theirs / "dbt.duckdb")


def test_a_runtime_sql_error_names_the_model_file_and_its_line(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", {
        "seeds/p.csv": "id,amount\n1,2\n",
        "models/a.sql": "{{ config(materialized='table') }}\n\n{# a comment #}\nselect id,\n  amount\n"
                        "from {{ ref('p') }}\nwhere amount > 'abc'::int\n",
        "models/b.sql": "-- a view\nselect id\nfrom {{ ref('p') }}\nwhere lenght(id) > 0\n",
        # its own seed: a failing test skips what reads the seed it tests, as in dbt build
        "seeds/q.csv": "id,amount\n1,2\n",
        "tests/assert_cast.sql": "select *\nfrom {{ ref('q') }}\nwhere amount = 'two'::int\n",
    })
    proc = opsloop(root, "build")
    assert proc.returncode == 1
    assert "models/a.sql:7: Conversion Error: Could not convert string 'abc'" in proc.stderr, proc.stderr
    assert "models/b.sql:4: Catalog Error: Scalar Function with name lenght does not exist" in proc.stderr, \
        proc.stderr
    assert "tests/assert_cast.sql:3: Conversion Error: Could not convert string 'two'" in proc.stderr, proc.stderr
