"""Nothing a dbt project holds is skipped in silence: singular tests run (and fail the command as in dbt),
everything opsloop does not run yet is an error with file:line from `validate` and `build`, all in one pass,
and a project's own generate_schema_name is honoured."""

from __future__ import annotations

from pathlib import Path

from ._dbt import dbt, opsloop, relations, side_by_side, write_project

SEED = """
    id,amount
    1,10
    2,-5
    3,7
"""


def test_singular_tests_run_and_a_failing_one_fails_like_dbt(tmp_path: Path) -> None:
    files = {
        "seeds/payments.csv": SEED,
        "models/paid.sql": "select id, amount from {{ ref('payments') }} where id < 3\n",
        "tests/assert_paid_has_rows.sql": "select 1 as x from (select count(*) as n from {{ ref('paid') }}) "
                                          "where n = 0\n",
        "tests/assert_amount_positive.sql": "-- amounts are never negative\nselect *\nfrom {{ ref('paid') }}\n"
                                            "where amount < 0\n",
        "tests/assert_few_rows.sql": "{{ config(severity='warn') }}\nselect * from {{ ref('payments') }}\n",
    }
    ours = write_project(tmp_path / "ours", files)
    theirs = write_project(tmp_path / "theirs", files)

    proc = opsloop(ours, "build")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "tests/assert_amount_positive.sql: 1 failing row(s) for singular test assert_amount_positive" \
        in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    ref = dbt(theirs, "build")
    assert ref.returncode == 1, ref.stdout
    # the same verdicts as dbt, test by test
    for name, ours_status, dbt_word in [("assert_paid_has_rows", "pass", "PASS"),
                                        ("assert_amount_positive", "fail", "FAIL 1"),
                                        ("assert_few_rows", "warn", "WARN 3")]:
        assert any(name in line and dbt_word in line for line in ref.stdout.splitlines()), (name, ref.stdout)
        assert any(name in line and ours_status in line.split() for line in proc.stdout.splitlines()), \
            (name, proc.stdout)
    assert relations(ours / "warehouse.duckdb") == relations(theirs / "dbt.duckdb")

    # `opsloop test` runs them too (it ran nothing before), and exits 1 as `dbt test` does
    test_proc = opsloop(ours, "test")
    assert test_proc.returncode == 1
    assert "assert_amount_positive" in test_proc.stderr
    assert dbt(theirs, "test").returncode == 1

    # fixed, both pass
    for root in (ours, theirs):
        (root / "tests" / "assert_amount_positive.sql").write_text("select * from {{ ref('paid') }} where amount > 99")
    proc, ref = side_by_side(ours, theirs, "test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ref.returncode == 0, ref.stdout


UNSUPPORTED = {
    "seeds/payments.csv": SEED,
    "models/paid.sql": "select * from {{ ref('payments') }}\n",
    "models/py_view.py": "def model(dbt, session):\n    dbt.config(materialized='view')\n"
                        "    return dbt.ref('paid')\n",
    "models/batched.sql": "{{ config(materialized='incremental', incremental_strategy='microbatch') }}\n"
                          "select 1 as id\n",
    "models/schema.yml": """
        version: 2
        models:
          - name: paid
            columns:
              - name: id
                data_tests:
                  - is_even
        sources:
          - name: files
            meta:
              external_location: "read_csv('data/{name}.csv')"
            tables:
              - name: orders
    """,
    "tests/generic/is_even.sql": """
        {% test is_even(model, column_name) %}
        select * from {{ model }} where {{ column_name }} % 2 = 1
        {% endtest %}
    """,
    "macros/my_mat.sql": "{% materialization thing, default %}\n{% endmaterialization %}\n",
}

EXPECTED = [
    "models/py_view.py:2: Python model 'py_view': materialized 'view' is not supported for Python models",
    "models/batched.sql:1: microbatch model 'batched': needs an event_time config",
]


def test_everything_not_run_is_an_error_with_file_line_in_one_pass(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", UNSUPPORTED)
    for verb in ("validate", "build"):
        proc = opsloop(root, verb)
        assert proc.returncode == 1, (verb, proc.stdout + proc.stderr)
        missing = [line for line in EXPECTED if line not in proc.stderr]
        assert not missing, (verb, missing, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert "my_mat.sql" not in proc.stderr  # a custom materialization defined but unused is not a problem
    assert not relations(root / "warehouse.duckdb") if (root / "warehouse.duckdb").exists() else True


NAMING = {
    "seeds/payments.csv": SEED,
    "models/staging/stg_payments.sql": "select * from {{ ref('payments') }}\n",
    "models/reporting/totals.sql": "{{ config(schema='reporting', materialized='table') }}\n"
                                   "select sum(amount) as total from {{ ref('stg_payments') }}\n",
    "models/reporting/renamed.sql": "{{ config(schema='reporting', alias='by_id') }}\n"
                                    "select id from {{ ref('stg_payments') }}\n",
    "macros/naming.sql": """
        {% macro generate_schema_name(custom_schema_name, node) -%}
            {%- if custom_schema_name is none -%}{{ target.schema }}
            {%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
        {%- endmacro %}
        {% macro generate_alias_name(custom_alias_name=none, node=none) -%}
            {%- if node.resource_type == 'seed' -%}raw_{{ node.name }}
            {%- else -%}{{ default__generate_alias_name(custom_alias_name, node) }}{%- endif -%}
        {%- endmacro %}
    """,
}


def test_the_projects_generate_schema_name_is_honoured_as_in_dbt(tmp_path: Path) -> None:
    ours = write_project(tmp_path / "ours", NAMING)
    theirs = write_project(tmp_path / "theirs", NAMING)
    proc = opsloop(ours, "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dbt(theirs, "build").returncode == 0
    built = relations(ours / "warehouse.duckdb")
    assert {"reporting.totals", "reporting.by_id", "main.raw_payments", "main.stg_payments"} <= set(built)
    assert built == relations(theirs / "dbt.duckdb")


def test_the_docs_feature_table_names_tests_that_exist() -> None:
    import re

    docs = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text()
    table = docs.split("### dbt features, one line each", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| feature")]
    assert len(rows) >= 15
    for row in rows:
        for name in re.findall(r"`(test_\w+\.py)`", row):
            assert (Path(__file__).parent / name).is_file(), row
