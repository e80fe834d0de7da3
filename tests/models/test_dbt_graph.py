"""dbt's `graph` context variable: a macro looping over `graph.nodes.values()` (models found by tag, their
config, columns, depends_on ...) and `graph.sources.values()` renders the same as under dbt-core +
dbt-duckdb, so the tables built from its output are the same."""

from __future__ import annotations

from pathlib import Path

from ._dbt import build_both, relations

KEYS = ("resource_type", "name", "package_name", "unique_id", "schema", "alias", "original_file_path")

FILES = {
    "seeds/payments.csv": "id,amount\n1,10\n2,20\n",
    "data/orders.csv": "id,payment_id\n1,1\n",
    "models/finance/revenue.sql": "{{ config(tags=['finance'], materialized='table') }}\n"
                                  "select sum(amount) as total from {{ ref('payments') }}\n",
    "models/finance/refunds.sql": "{{ config(tags=['finance', 'daily'], alias='refund_rows', materialized='table') }}\n"
                                  "select p.id from {{ ref('payments') }} p join {{ source('files', 'orders') }} o "
                                  "on o.payment_id = p.id\n",
    "models/other.sql": "{{ config(tags=['ops']) }}\nselect 1 as one\n",
    "models/schema.yml": """
        version: 2
        sources:
          - name: files
            meta:
              external_location: "read_csv('data/{name}.csv', header = true)"
            tables:
              - name: orders
        models:
          - name: revenue
            config:
              meta: {owner: finance-team}
            columns:
              - name: total
                description: the sum
          - name: refunds
            columns:
              - name: id
    """,
    "macros/find.sql": """
        {% macro models_tagged(tag) %}
          {% set found = [] %}
          {% if execute %}
            {% for node in graph.nodes.values() | sort(attribute='name') %}
              {% if node.resource_type == 'model' and tag in node.tags %}{% do found.append(node) %}{% endif %}
            {% endfor %}
          {% endif %}
          {{ return(found) }}
        {% endmacro %}
    """,
    "models/finance_catalog.sql": """
        {{ config(materialized='table') }}
        {%- set nodes = models_tagged('finance') %}
        {%- if not nodes %}select 'none' as name{% endif %}
        {%- for node in nodes %}
        select {% for key in %s %}'{{ node[key] }}' as {{ key }}, {% endfor %}
          '{{ node.config.materialized }}' as materialized,
          '{{ node.depends_on.nodes | sort | join(",") }}' as parents,
          '{{ node.columns.keys() | list | join(",") }}' as columns,
          '{{ node.tags | join(",") }}' as tags,
          '{{ node.meta.get("owner", "") }}' as owner,
          '{{ node.config.meta.get("owner", "") if node.config.meta else "" }}' as config_owner
        {% if not loop.last %}union all{% endif %}
        {%- endfor %}
    """.replace("%s", repr(list(KEYS))),
    "models/source_catalog.sql": """
        {{ config(materialized='table') }}
        {%- set rows = [] %}
        {%- if execute %}{% for src in graph.sources.values() %}{% do rows.append(src) %}{% endfor %}{% endif %}
        {%- if not rows %}select 'none' as name{% endif %}
        {%- for src in rows %}
        select '{{ src.unique_id }}' as unique_id, '{{ src.source_name }}' as source_name, '{{ src.name }}' as name,
          '{{ src.identifier }}' as identifier, '{{ src.schema }}' as schema, '{{ src.resource_type }}' as kind
        {% if not loop.last %}union all{% endif %}
        {%- endfor %}
    """,
}


def test_a_macro_over_graph_nodes_renders_as_under_dbt(tmp_path: Path) -> None:
    ours, theirs = build_both(tmp_path, FILES)
    built = relations(ours / "warehouse.duckdb")
    names = sorted(row[1] for row in built["main.finance_catalog"][1])  # type: ignore[attr-defined]
    assert names == ["refunds", "revenue"], built["main.finance_catalog"]
    assert built == relations(theirs / "dbt.duckdb")
