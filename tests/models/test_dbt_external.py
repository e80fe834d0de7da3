"""dbt-duckdb `external_location` sources read their files where `source()` names them (a path, quoted,
or a function call such as `read_csv(...)`, with `{name}` and meta keys formatted in): the same tables as
dbt-duckdb builds from them."""

from __future__ import annotations

from pathlib import Path

from ._dbt import dbt, opsloop, relations, write_project

FILES = {
    "data/orders.csv": """
        id,amount
        1,10
        2,20
    """,
    "models/sources.yml": """
        version: 2
        sources:
          - name: files
            meta:
              external_location: "read_csv('data/{name}.csv', header = true)"
            tables:
              - name: orders
              - name: customers
                meta:
                  external_location: "data/{name}.{ext}"
                  ext: parquet
    """,
    "models/order_totals.sql": "{{ config(materialized='table') }}\n"
                               "select sum(amount) as total, count(*) as n from {{ source('files', 'orders') }}\n",
    "models/customer_names.sql": "{{ config(materialized='table') }}\n"
                                 "select name from {{ source('files', 'customers') }} order by id\n",
}


def _parquet(root: Path) -> None:
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"copy (select * from (values (1, 'ann'), (2, 'bob')) t(id, name)) to "
                    f"'{root / 'data' / 'customers.parquet'}' (format parquet)")
    finally:
        con.close()


def test_external_location_sources_read_their_files_as_in_dbt_duckdb(tmp_path: Path) -> None:
    ours = write_project(tmp_path / "ours", FILES)
    theirs = write_project(tmp_path / "theirs", FILES)
    for root in (ours, theirs):
        _parquet(root)
    proc = opsloop(ours, "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dbt(theirs, "build").returncode == 0
    built = relations(ours / "warehouse.duckdb")
    assert built["main.order_totals"][1] == [(30, 2)]
    assert built["main.customer_names"][1] == [("ann",), ("bob",)]
    assert built == relations(theirs / "dbt.duckdb")


def test_an_external_location_naming_an_unknown_field_is_an_error_with_file_line(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", {"models/sources.yml": """
        version: 2
        sources:
          - name: files
            tables:
              - name: orders
                config:
                  external_location: "data/{nope}.csv"
    """, "models/m.sql": "select * from {{ source('files', 'orders') }}\n"})
    proc = opsloop(root, "validate")
    assert proc.returncode == 1
    assert "models/sources.yml:5: source table files.orders: external_location 'data/{nope}.csv' names 'nope'" \
        in proc.stderr, proc.stderr


EXPORTS = {
    "seeds/orders.csv": "id,amount\n1,10\n2,20\n",
    "models/exp.sql": "{{ config(materialized='external', location='out/orders.parquet') }}\n"
                      "select id, amount * 2 as doubled from {{ ref('orders') }}\n",
    "models/exp_csv.sql": "{{ config(materialized='external', format='csv') }}\nselect id from {{ ref('orders') }}\n",
    "models/after.sql": "{{ config(materialized='table') }}\nselect sum(doubled) as total from {{ ref('exp') }}\n",
}


def _rows(path: Path) -> list[tuple[object, ...]]:
    import duckdb

    con = duckdb.connect()
    try:
        reader = "read_parquet" if path.suffix == ".parquet" else "read_csv"
        return sorted(con.execute(f"select * from {reader}('{path}')").fetchall())
    finally:
        con.close()


def test_the_external_materialization_writes_the_files_dbt_duckdb_writes(tmp_path: Path) -> None:
    ours = write_project(tmp_path / "ours", EXPORTS)
    theirs = write_project(tmp_path / "theirs", EXPORTS)
    (theirs / "out").mkdir()  # dbt-duckdb does not make the folder (opsloop does)
    proc = opsloop(ours, "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dbt(theirs, "build").returncode == 0
    for rel in ("out/orders.parquet", "exp_csv.csv"):
        assert _rows(ours / rel) == _rows(theirs / rel) != []
    built = relations(ours / "warehouse.duckdb")  # the models are views over the files, as in dbt-duckdb
    assert built["main.exp"][1] == [(1, 20), (2, 40)]
    assert built["main.after"][1] == [(60,)]
    import duckdb

    con = duckdb.connect(str(theirs / "dbt.duckdb"), read_only=True)
    try:
        assert con.execute("select total from main.after").fetchall() == [(60,)]
    finally:
        con.close()
