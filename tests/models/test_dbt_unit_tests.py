"""dbt 1.8+ unit tests (`unit_tests:`) run in `opsloop build` and `opsloop test` with the verdicts dbt-duckdb
gives: given rows as dicts, CSV and SQL, ref / source / this inputs, overrides of vars and is_incremental;
a failing one shows the differing rows, skips its model, and makes the command exit 1."""

from __future__ import annotations

from pathlib import Path

from ._dbt import dbt, opsloop, relations, side_by_side, write_project

FILES = {
    "seeds/payments.csv": """
        id,amount,note
        1,10,a
        2,-5,b
        3,7,c
    """,
    "models/paid.sql": "select id, amount * 2 as doubled, note, '{{ var('tag', 'none') }}' as tag\n"
                       "from {{ ref('payments') }} where amount > 0\n",
    "tests/fixtures/two_payments.csv": "id,amount,note\n7,1,x\n8,-1,y\n",
    "tests/fixtures/paid_expected.csv": "id,doubled\n7,2\n",
    "models/with_customers.sql": "select p.id, p.doubled, c.note as name from {{ ref('paid') }} p\n"
                                 "join {{ source('crm', 'customers') }} c on c.id = p.id\n",
    "models/latest.sql": """
        {{ config(materialized='incremental', unique_key='id') }}
        select id, doubled from {{ ref('paid') }}
        {% if is_incremental() %} where id > (select max(id) from {{ this }}) {% endif %}
    """,
    "models/schema.yml": """
        version: 2
        sources:
          - name: crm
            schema: main
            tables:
              - name: customers
                identifier: payments
        unit_tests:
          - name: doubles_positive_amounts
            model: paid
            given:
              - input: ref('payments')
                rows:
                  - {id: 1, amount: 10}
                  - {id: 2, amount: -1}
            expect:
              rows:
                - {id: 1, doubled: 20}
          - name: csv_rows_and_nulls
            model: paid
            overrides:
              vars: {tag: unit}
            given:
              - input: ref('payments')
                format: csv
                rows: |
                  id,amount,note
                  1,3,
                  5,4,x
            expect:
              format: csv
              rows: |
                id,doubled,note,tag
                1,6,,unit
                5,8,x,unit
          - name: joins_the_source
            model: with_customers
            given:
              - input: ref('paid')
                rows:
                  - {id: 1, doubled: 2}
                  - {id: 2, doubled: 4}
              - input: source('crm', 'customers')
                format: sql
                rows: |
                  select 1 as id, 'ann' as note
            expect:
              rows:
                - {id: 1, name: ann}
          - name: from_fixture_files
            model: paid
            given:
              - input: ref('payments')
                format: csv
                fixture: two_payments
            expect:
              format: csv
              fixture: paid_expected
          - name: first_build_takes_all
            model: latest
            overrides:
              macros: {is_incremental: false}
            given:
              - input: ref('paid')
                rows:
                  - {id: 1, doubled: 2}
                  - {id: 9, doubled: 4}
            expect:
              rows:
                - {id: 1}
                - {id: 9}
    """,
}

INCREMENTAL = """
  - name: later_builds_take_new_ids
    model: latest
    overrides:
      macros: {is_incremental: true}
    given:
      - input: ref('paid')
        rows:
          - {id: 1, doubled: 2}
          - {id: 9, doubled: 4}
      - input: this
        rows:
          - {id: 3}
    expect:
      rows:
        - {id: 9, doubled: 4}
"""


def _verdicts(stdout: str, names: list[str], word: str) -> dict[str, bool]:
    return {n: any(n in line and word in line for line in stdout.splitlines()) for n in names}


def test_unit_tests_pass_fail_and_skip_their_model_as_in_dbt(tmp_path: Path) -> None:
    ours = write_project(tmp_path / "ours", FILES)
    theirs = write_project(tmp_path / "theirs", FILES)
    names = ["doubles_positive_amounts", "csv_rows_and_nulls", "joins_the_source", "first_build_takes_all",
             "from_fixture_files"]

    proc = opsloop(ours, "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ref = dbt(theirs, "build")
    assert ref.returncode == 0, ref.stdout
    assert all(_verdicts(ref.stdout, names, "PASS").values()), ref.stdout
    assert all(_verdicts(proc.stdout, names, "pass").values()), proc.stdout
    assert relations(ours / "warehouse.duckdb") == relations(theirs / "dbt.duckdb")

    # an incremental unit test with `this` (the model exists now), and a wrong expectation
    for root in (ours, theirs):
        schema = root / "models" / "schema.yml"
        schema.write_text(schema.read_text() + INCREMENTAL)
    proc, ref = side_by_side(ours, theirs, "test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ref.returncode == 0, ref.stdout
    for root in (ours, theirs):
        schema = root / "models" / "schema.yml"
        schema.write_text(schema.read_text().replace("- {id: 1, doubled: 20}", "- {id: 1, doubled: 21}"))
        (root / "seeds" / "payments.csv").write_text("id,amount,note\n1,10,a\n4,4,d\n")
    proc = opsloop(ours, "build")
    ref = dbt(theirs, "build")
    assert proc.returncode == 1 and ref.returncode == 1, (proc.stdout, ref.stdout)
    assert "doubles_positive_amounts" in ref.stdout and "FAIL 1" in ref.stdout
    assert any("doubles_positive_amounts" in line and "fail" in line.split() and line.split()[2] == "1"
               for line in proc.stdout.splitlines()), proc.stdout
    # the diff: the row the model gave and the row the test expected
    assert "models/schema.yml:9: unit test doubles_positive_amounts on paid: actual differs from expected" \
        in proc.stderr, proc.stderr
    assert "+++,1 ,20" in proc.stderr and "---,1 ,21" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    # its model (and what reads it) is skipped in both: paid is still the view of the first build
    assert any("paid" in line and "skipped" in line.split() for line in proc.stdout.splitlines()), proc.stdout
    assert any("SKIP relation main.paid" in line for line in ref.stdout.splitlines()), ref.stdout
    assert relations(ours / "warehouse.duckdb") == relations(theirs / "dbt.duckdb")

    # `opsloop run` does not run unit tests (as `dbt run`), so it builds the model
    assert opsloop(ours, "run", "-s", "paid").returncode == 0


BAD = {
    "seeds/payments.csv": "id,amount\n1,10\n",
    "models/paid.sql": "select * from {{ ref('payments') }}\n",
    "models/inc.sql": "{{ config(materialized='incremental') }}\nselect * from {{ ref('payments') }}\n",
    "models/py.py": "def model(dbt, session):\n    return dbt.ref('payments')\n",
    "models/schema.yml": """
        version: 2
        unit_tests:
          - name: no_such_model
            model: unpaid
            given: []
            expect: {rows: []}
          - name: bad_input
            model: paid
            given:
              - input: payments
                rows: []
            expect: {rows: []}
          - name: says_no_way
            model: inc
            given:
              - input: ref('payments')
                rows: []
            expect: {rows: []}
          - name: bad_format
            model: paid
            given:
              - input: ref('payments')
                format: json
                rows: []
            expect: {rows: []}
          - name: on_python
            model: py
            given: []
            expect: {rows: []}
    """,
}


def test_a_unit_test_that_cannot_run_is_an_error_with_file_line(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", BAD)
    proc = opsloop(root, "validate")
    assert proc.returncode == 1
    for line in ["models/schema.yml:3: unit test 'no_such_model' is on model 'unpaid', which does not exist",
                 "models/schema.yml:10: unit test 'bad_input': each given entry needs input: ref('model')",
                 "models/schema.yml:13: unit test 'says_no_way': inc is incremental",
                 "models/schema.yml:23: unit test 'bad_format', input ref('payments'): unknown format 'json'",
                 "models/schema.yml:26: unit test 'on_python': py is a Python model; unit tests are for SQL models"]:
        assert line in proc.stderr, (line, proc.stderr)
    assert "Traceback" not in proc.stderr
