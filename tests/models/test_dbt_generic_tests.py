"""Custom generic tests run as dbt runs them: `{% test %}` blocks in a package's macros/ (dispatched, with
`config(fail_calc=...)`, `warn_if` / `error_if`), in the project's tests/generic/ and macros/, called from
schema files with arguments (`ref()` strings, lists, `where`, `severity`), on a column or a whole model;
a singular test with `config(enabled=false)` and a unit-test fixture (tests/fixtures/) are not run;
`load_relation`, `adapter.drop_relation` (in a post-hook) and `flags.WHICH` answer as under dbt.
Every test's verdict and name equal dbt-duckdb's."""

from __future__ import annotations

import json
from pathlib import Path

from ._dbt import dbt, opsloop, relations, write_project

PACKAGE = {
    "macros/equal_rows.sql": """
        {% test equal_rows(model, compare_model, exclude=[]) %}
          {{ return(adapter.dispatch('test_equal_rows', 'pkgtests')(model, compare_model, exclude)) }}
        {% endtest %}
        {% macro default__test_equal_rows(model, compare_model, exclude) %}
          {{ config(fail_calc = 'sum(coalesce(diff, 0))') }}
          {%- set cols = [] -%}
          {%- for c in adapter.get_columns_in_relation(model) if c.name not in exclude -%}
            {% do cols.append(c.name) %}
          {%- endfor -%}
          {%- set c = cols | join(', ') -%}
          select count(*) as diff from (
            (select {{ c }} from {{ model }} except select {{ c }} from {{ compare_model }})
            union all
            (select {{ c }} from {{ compare_model }} except select {{ c }} from {{ model }})
          ) d
        {% endmacro %}
    """,
    "macros/at_most.sql": """
        {% test at_most(model, column_name, value, group_by_columns=[]) %}
          {% if group_by_columns | length > 0 %}{% set gb = group_by_columns | join(', ') ~ ', ' %}{% endif %}
          select {{ gb }} {{ column_name }} from {{ model }} where {{ column_name }} > {{ value }}
        {% endtest %}
    """,
}

PROJECT = {
    "dbt_project.yml": """
        name: proj
        version: '1.0.0'
        profile: proj
        seeds:
          proj:
            dropped:
              +post-hook: "{% do adapter.drop_relation(this.incorporate(type='table')) %}"
    """,
    "packages.yml": "packages:\n  - local: ../pkgtests\n",
    "seeds/people.csv": "id,name,age\n1,ann,30\n2,bob,41\n3,cy,17\n",
    "seeds/people_copy.csv": "id,name,age\n1,ann,30\n2,bob,41\n3,cy,99\n",
    "models/adults.sql": "select * from {{ ref('people_copy') }} where age >= 18\n",
    "tests/generic/is_even.sql": """
        {% test is_even(model, column_name) %}
        select * from {{ model }} where {{ column_name }} % 2 = 1
        {% endtest %}
    """,
    "macros/my_tests.sql": """
        {% test row_count_between(model, low, high) %}
          {{ config(severity = 'warn') }}
          select count(*) as n from {{ model }} having count(*) < {{ low }} or count(*) > {{ high }}
        {% endtest %}
    """,
    "seeds/dropped.csv": "x\n1\n",
    "models/exists.sql": """
        {%- set nope = load_relation(api.Relation.create(schema=this.schema, identifier='nope')) -%}
        {%- set people = load_relation(ref('people_copy')) -%}
        select {{ nope is not none }} as nope_exists, {{ people is not none }} as people_exists,
               '{{ flags.WHICH }}' as which
    """,
    "tests/disabled.sql": "{{ config(enabled=false) }}\nselect 1 as fails\n",
    "tests/fixtures/rows.sql": "select 1 as fails\n",  # a unit-test fixture, not a singular test
    "models/schema.yml": """
        version: 2
        seeds:
          - name: people
            data_tests:
              - pkgtests.equal_rows:
                  compare_model: ref('people_copy')
              - pkgtests.equal_rows:
                  compare_model: ref('people_copy')
                  exclude: ['age']
              - row_count_between:
                  low: 5
                  high: 10
            columns:
              - name: id
                data_tests:
                  - is_even:
                      config:
                        where: "id > 1"
                  - pkgtests.at_most:
                      value: 2
                      severity: warn
              - name: age
                data_tests:
                  - pkgtests.at_most:
                      arguments:
                        value: 40
        models:
          - name: adults
            columns:
              - name: age
                data_tests:
                  - pkgtests.at_most:
                      value: 100
                      group_by_columns: [name]
                  - is_even
    """,
}


def _verdicts(root: Path) -> dict[str, str]:
    results = json.loads((root / "target" / "run_results.json").read_text())["results"]
    return {r["unique_id"].split(".")[2]: r["status"] for r in results if r["unique_id"].startswith("test.")}


def _make(root: Path) -> Path:
    write_project(root / "pkgtests", PACKAGE, name="pkgtests")
    return write_project(root / "proj", PROJECT)


def test_custom_generic_tests_give_dbts_verdicts(tmp_path: Path) -> None:
    ours, theirs = _make(tmp_path / "ours"), _make(tmp_path / "theirs")
    built = opsloop(ours, "build")
    assert built.returncode == 1, built.stdout + built.stderr  # some tests fail, as under dbt
    assert dbt(theirs, "deps").returncode == 0
    assert dbt(theirs, "build").returncode == 1
    mine, expected = _verdicts(ours), _verdicts(theirs)
    assert mine == expected, (mine, expected)
    assert expected == {
        "pkgtests_equal_rows_people_ref_people_copy_": "fail",
        "pkgtests_equal_rows_people_ref_people_copy___age": "pass",
        "row_count_between_people_10__5": "warn",
        "is_even_people_id": "fail",
        "pkgtests_at_most_people_id__2": "warn",
        "pkgtests_at_most_people_age__40": "fail",
        "pkgtests_at_most_adults_age__name__100": "pass",
        "is_even_adults_age": "fail",
    }
    assert relations(ours / "warehouse.duckdb") == relations(theirs / "dbt.duckdb")  # the seed 'dropped' is gone
    assert relations(ours / "warehouse.duckdb")["main.exists"][1] == [(False, True, "build")]
    assert "models/schema.yml:5: 2 failing row(s) for pkgtests.equal_rows on people" in built.stderr, built.stderr


def test_an_unknown_generic_test_names_its_line(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", {
        "seeds/s.csv": "id\n1\n",
        "models/schema.yml": "version: 2\nseeds:\n  - name: s\n    columns:\n      - name: id\n        data_tests:\n"
                             "          - no_such_test\n          - nopkg.thing\n",
    })
    proc = opsloop(root, "validate")
    assert proc.returncode == 1
    assert "models/schema.yml:7: unknown test 'no_such_test': no {% test no_such_test %} macro" in proc.stderr
    assert "models/schema.yml:8: unknown test 'nopkg.thing'" in proc.stderr and "the nopkg package" in proc.stderr
    assert "Traceback" not in proc.stderr
