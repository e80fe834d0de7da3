"""`sql_header` (in `config()`, a schema file or dbt_project.yml) runs before the statement that builds the
model, on its connection, as dbt-duckdb runs it: the same tables as dbt."""

from __future__ import annotations

from pathlib import Path

from ._dbt import dbt, opsloop, relations, write_project

FILES = {
    "dbt_project.yml": """
        name: proj
        version: '1.0.0'
        profile: proj
        models:
          proj:
            marts:
              +sql_header: "create or replace macro times_ten(x) as x * 10;"
    """,
    "models/base.sql": "{{ config(materialized='table', sql_header='create or replace macro add_one(x) as x + 1;') }}\n"
                       "select add_one(1) as two\n",
    "models/marts/tens.sql": "{{ config(materialized='table') }}\n"
                             "select times_ten(two) as twenty from {{ ref('base') }}\n",
    "models/yaml_header.sql": "select add_two({{ var('n', 3) }}) as five\n",
    "models/schema.yml": """
        version: 2
        models:
          - name: yaml_header
            config:
              materialized: table
              sql_header: "create or replace macro add_two(x) as x + 2;"
    """,
}


def test_sql_header_runs_before_the_model_as_in_dbt_duckdb(tmp_path: Path) -> None:
    ours = write_project(tmp_path / "ours", FILES)
    theirs = write_project(tmp_path / "theirs", FILES)
    proc = opsloop(ours, "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dbt(theirs, "run").returncode == 0
    built = relations(ours / "warehouse.duckdb")
    assert built["main.tens"] == ([("twenty", "INTEGER")], [(20,)])
    assert built["main.yaml_header"][1] == [(5,)]
    assert built == relations(theirs / "dbt.duckdb")


def test_a_failing_sql_header_names_the_model(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", {
        "models/m.sql": "\n{{ config(sql_header='set no_such_setting = 1') }}\nselect 1 as id\n"})
    proc = opsloop(root, "run")
    assert proc.returncode == 1
    assert "models/m.sql: sql_header failed:" in proc.stderr and "no_such_setting" in proc.stderr, proc.stderr
