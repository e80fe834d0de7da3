"""dbt's Jinja context where it asks the warehouse — run_query, statement / load_result, execute,
adapter.get_columns_in_relation / get_relation / quote, api.Relation — and the helpers macros use
(modules, exceptions.warn, log, return, tojson / fromjson, zip, set), built to the same tables as dbt."""

from __future__ import annotations

from pathlib import Path

from ._dbt import build_both, opsloop, relations, write_project

FILES = {
    "seeds/payments.csv": """
        id,method,amount
        1,card,10
        2,cash,5
        3,card,7
        4,voucher,1
    """,
    "macros/helpers.sql": """
        {% macro payment_methods() %}
          {% set query %}select distinct method from {{ ref('payments') }} order by 1{% endset %}
          {% set results = run_query(query) %}
          {% if execute %}{% set methods = results.columns[0].values() %}{% else %}{% set methods = [] %}{% endif %}
          {{ return(methods) }}
        {% endmacro %}

        {% macro column_names(relation) %}
          {% set names = [] %}
          {% for col in adapter.get_columns_in_relation(relation) %}{% do names.append(col.name) %}{% endfor %}
          {{ return(names) }}
        {% endmacro %}
    """,
    "models/by_method.sql": """
        {%- set methods = payment_methods() -%}
        select
        {%- for m in methods %}
          sum(case when method = '{{ m }}' then amount else 0 end) as {{ adapter.quote(m ~ '_amount') }},
        {%- endfor %}
          count(*) as payments
        from {{ ref('payments') }}
    """,
    "models/introspected.sql": """
        {%- set names = column_names(ref('payments')) -%}
        {%- set there = adapter.get_relation(database=target.database, schema=target.schema, identifier='payments') -%}
        {%- set missing = adapter.get_relation(database=target.database, schema=target.schema, identifier='nope') -%}
        {%- set rel = api.Relation.create(schema=target.schema, identifier='payments') -%}
        {% do exceptions.warn('introspecting ' ~ (names | join(','))) %}
        {{ log('columns: ' ~ names, info=True) }}
        select '{{ names | join(",") }}' as cols,
               {{ names | length }} as n_cols,
               {{ 'true' if there is not none else 'false' }} as payments_exists,
               {{ 'true' if missing is none else 'false' }} as nope_missing,
               (select count(*) from {{ rel }}) as via_api
        from {{ ref('payments') }}
        limit 1
    """,
    "models/stated.sql": """
        -- depends_on: {{ ref('payments') }}
        {% call statement('totals', fetch_result=True) -%}
          select max(amount) as top, count(*) as n from {{ ref('payments') }}
        {%- endcall -%}
        {%- set result = load_result('totals') -%}
        {%- set top = result['data'][0][0] if execute else 0 -%}
        {%- set n = result['table'].rows[0]['n'] if execute else 0 -%}
        {%- set pairs = [] -%}
        {%- for a, b in zip(['x', 'y'], [1, 2]) %}{% do pairs.append(a ~ b) %}{% endfor -%}
        select {{ top }} as top_amount,
               {{ n }} as payments,
               '{{ pairs | join("-") }}' as zipped,
               {{ set([1, 1, 2, 3]) | length }} as distinct_count,
               '{{ tojson({"a": [1, 2]}) }}' as as_json,
               {{ fromjson('{"k": 5}')['k'] }} as from_json,
               '{{ modules.datetime.date(2024, 1, 2).isoformat() }}' as a_date,
               '{{ modules.re.sub("[^a-z]", "", "a-b_c") }}' as cleaned,
               {{ modules.itertools.chain([1], [2, 3]) | list | length }} as chained
    """,
}


def test_warehouse_calls_in_jinja_build_what_dbt_builds(tmp_path: Path) -> None:
    ours, theirs = build_both(tmp_path, FILES)
    mine = relations(ours / "warehouse.duckdb")
    assert mine == relations(theirs / "dbt.duckdb")
    cols, rows = mine["main.by_method"]  # type: ignore[misc]
    assert [c for c, _ in cols] == ["card_amount", "cash_amount", "voucher_amount", "payments"]
    assert rows == [(17, 5, 1, 4)]
    assert mine["main.introspected"][1] == [("id,method,amount", 3, True, True, 4)]  # type: ignore[index]
    # run_query reads the warehouse at build time: new rows in the seed give a new column on the next build
    (ours / "seeds" / "payments.csv").write_text("id,method,amount\n1,card,10\n2,gift,3\n")
    assert opsloop(ours, "build").returncode == 0
    cols, rows = relations(ours / "warehouse.duckdb")["main.by_method"]  # type: ignore[misc]
    assert [c for c, _ in cols] == ["card_amount", "gift_amount", "payments"] and rows == [(10, 3, 2)]


def test_run_query_without_a_warehouse_and_a_bad_query_name_the_line(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", {
        "seeds/payments.csv": "id\n1\n",
        "models/bad.sql": "select 1 as x\n{% if execute %}{% set r = run_query('select * from no_such_table') %}"
                          "{% endif %}\n",
    })
    proc = opsloop(root, "build")
    assert proc.returncode == 1
    assert "models/bad.sql:2: run_query: the warehouse refused the query" in proc.stderr, proc.stderr
    assert "no_such_table" in proc.stderr and "Traceback" not in proc.stderr
