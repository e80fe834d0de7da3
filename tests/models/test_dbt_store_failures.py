"""`store_failures` writes a test's failing rows into dbt's `<schema>_dbt_test__audit` tables, the same
tables (names, columns, rows; views with `store_failures_as: view`) as dbt-duckdb writes; `opsloop test
--show-failures` prints a failing test's rows."""

from __future__ import annotations

from pathlib import Path

from ._dbt import dbt, opsloop, relations, write_project

FILES = {
    "dbt_project.yml": """
        name: proj
        version: '1.0.0'
        profile: proj
        data_tests:
          +store_failures: true
    """,
    "seeds/orders.csv": """
        id,status
        1,placed
        1,shipped
        2,
        3,weird_status_value
    """,
    "models/stg_orders.sql": "select * from {{ ref('orders') }}\n",
    "models/schema.yml": """
        version: 2
        models:
          - name: stg_orders
            columns:
              - name: id
                data_tests: [unique, not_null]
              - name: status
                data_tests:
                  - not_null:
                      config: {store_failures_as: view}
                  - accepted_values:
                      arguments:
                        values: [placed, shipped, completed, return_pending, returned_long_value]
                  - accepted_values:
                      name: short_av
                      arguments:
                        values: [placed]
                      config: {store_failures: false}
    """,
    "tests/assert_small_ids.sql": "select * from {{ ref('stg_orders') }} where id > 2\n",
}


def test_stored_failures_are_dbts_audit_tables_and_show_failures_prints_them(tmp_path: Path) -> None:
    ours = write_project(tmp_path / "ours", FILES)
    theirs = write_project(tmp_path / "theirs", FILES)
    proc = opsloop(ours, "build")
    ref = dbt(theirs, "build")
    assert proc.returncode == 1 and ref.returncode == 1, (proc.stdout + proc.stderr, ref.stdout)
    built = relations(ours / "warehouse.duckdb")
    audit = {name for name in built if name.startswith("main_dbt_test__audit.")}
    # a long generic test name is shortened as dbt does (a prefix and the name's md5); short_av stores nothing
    assert audit == {"main_dbt_test__audit." + n for n in (
        "unique_stg_orders_id", "not_null_stg_orders_id", "not_null_stg_orders_status", "assert_small_ids",
        "accepted_values_stg_orders_ade04686d06663ac1dd6131361c71c60")}, audit
    assert built == relations(theirs / "dbt.duckdb")
    assert "(see them: select * from main_dbt_test__audit.unique_stg_orders_id)" in proc.stderr, proc.stderr

    shown = opsloop(ours, "test", "-s", "stg_orders", "--show-failures", "--limit", "1")
    assert shown.returncode == 1
    err = shown.stderr
    assert "failing rows of not_null_stg_orders_status (the first 1):\n  id  status\n  2   NULL\n" in err, err
    # a test that does not store its failures shows them too, limited
    block = err.split("failing rows of short_av (the first 1):\n", 1)[1].splitlines()
    assert block[0].split() == ["value_field", "n_records"] and block[1].split()[0] in ("shipped", "weird_status_value")
    assert block[2].startswith("fail:") or not block[2].startswith("  "), block  # one row only
    assert "failing rows of not_null_stg_orders_id" not in err  # it passes
