"""The `adapter.*` calls dbt-duckdb offers that packages make: `get_missing_columns`, `get_columns_in_table`,
`expand_target_column_types`, `already_exists`, `check_schema_exists`, `get_columns_in_relation` on an
external source, `truncate_relation`, `rename_relation` — the same answers and tables as under dbt-core +
dbt-duckdb; a call opsloop does not offer is an error naming it, with file:line."""

from __future__ import annotations

from pathlib import Path

from ._dbt import build_both, opsloop, relations, write_project

FILES = {
    "data/orders.csv": "id,amount,note\n1,10.5,a\n2,20,b\n",
    "models/sources.yml": """
        version: 2
        sources:
          - name: files
            meta:
              external_location: "data/{name}.csv"
            tables:
              - name: orders
    """,
    "models/wide.sql": "{{ config(materialized='table') }}\n"
                       "select 1 as id, 'x' as label, 2.5 as score, current_date as day\n",
    "models/narrow.sql": "{{ config(materialized='table') }}\nselect 1 as id\n",
    "models/emptied.sql": "{{ config(materialized='table', post_hook=\"{% do adapter.truncate_relation(this) %}\") }}\n"
                          "select 1 as id union all select 2\n",
    "models/to_rename.sql": "{{ config(materialized='table', post_hook=\"{% do adapter.rename_relation("
                            "this, api.Relation.create(schema=this.schema, identifier='renamed', type='table')) "
                            "%}\") }}\n"
                            "select 7 as seven\n",
    "macros/describe.sql": """
        {% macro cols(columns) %}
          {%- for c in columns %}{{ c.name }}:{{ c.dtype }}{% if not loop.last %},{% endif %}{% endfor %}
        {%- endmacro %}
    """,
    "models/answers.sql": """
        {{ config(materialized='table') }}
        -- depends_on: {{ ref('wide') }} {{ ref('narrow') }}
        {%- set missing, none_missing, in_table, external = [], [], [], [] %}
        {%- set exists, not_exists, schema_there, schema_not = none, none, none, none %}
        {%- if execute %}
          {%- set missing = adapter.get_missing_columns(ref('wide'), ref('narrow')) %}
          {%- set none_missing = adapter.get_missing_columns(ref('narrow'), ref('wide')) %}
          {%- set in_table = adapter.get_columns_in_table('main', 'wide') %}
          {%- set external = adapter.get_columns_in_relation(source('files', 'orders')) %}
          {%- do adapter.expand_target_column_types(ref('wide'), ref('narrow')) %}
          {%- set exists = adapter.already_exists('main', 'wide') %}
          {%- set not_exists = adapter.already_exists('main', 'nope') %}
          {%- set schema_there = adapter.check_schema_exists(target.database, 'main') %}
          {%- set schema_not = adapter.check_schema_exists(target.database, 'nope') %}
        {%- endif %}
        select '{{ cols(missing) }}' as missing, '{{ cols(none_missing) }}' as none_missing,
          '{{ cols(in_table) }}' as in_table, '{{ cols(external) }}' as external,
          '{{ exists }}' as wide_exists, '{{ not_exists }}' as nope_exists,
          '{{ schema_there }}' as main_exists, '{{ schema_not }}' as nope_schema_exists
    """,
}


def test_adapter_calls_answer_as_under_dbt_duckdb(tmp_path: Path) -> None:
    ours, theirs = build_both(tmp_path, FILES)
    built = relations(ours / "warehouse.duckdb")
    theirs_built = relations(theirs / "dbt.duckdb")
    assert built["main.answers"] == theirs_built["main.answers"]
    row = built["main.answers"][1][0]  # type: ignore[index]
    assert row[0] == "label:VARCHAR,score:DECIMAL(2,1),day:DATE" and row[1] == "", row
    assert row[4:] == ("True", "False", "True", "False"), row
    assert built["main.emptied"][1] == []  # type: ignore[index]
    assert "main.renamed" in built and "main.to_rename" not in built
    assert built == theirs_built


def test_an_adapter_call_opsloop_lacks_is_an_error_naming_it(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", {
        "models/m.sql": "select 1 as id\n-- {{ adapter.get_column_schema_from_query('select 1') }}\n",
    })
    proc = opsloop(root, "validate")
    assert proc.returncode == 1
    assert "models/m.sql:2: unsupported macro adapter.get_column_schema_from_query(): adapter calls run against " \
        "dbt internals" in proc.stderr, proc.stderr
