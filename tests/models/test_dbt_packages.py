"""dbt packages, offline: `local:` packages and a project prepared by `dbt deps` (dbt_packages/) build with
no step; package macros under their namespace, adapter.dispatch with the project's dispatch: order, dbt's
cross-database macros, return(), and method calls on {% set %} values — the same tables as dbt-duckdb."""

from __future__ import annotations

import shutil
from pathlib import Path

from ._dbt import dbt, opsloop, relations, write_project

MY_UTILS = {
    "dbt_project.yml": "name: my_utils\nversion: '1.0.0'\nconfig-version: 2\n",
    "macros/money.sql": """
        {% macro cents_to_dollars(col, scale=2) -%}
          round({{ col }} / 100.0, {{ scale }})
        {%- endmacro %}
        {% macro both(col) -%}
          {{ my_utils.cents_to_dollars(col) }} + {{ my_utils._whole(col) }}
        {%- endmacro %}
        {% macro _whole(col) -%}{{ my_utils.cents_to_dollars(col, 0) }}{%- endmacro %}
    """,
    "macros/columns.sql": """
        {% macro star_except(cols, except) -%}
          {%- set keep = [] -%}
          {%- for c in cols if c not in except -%}{% do keep.append(c) %}{%- endfor -%}
          {{ return(keep | join(', ')) }}
        {%- endmacro %}
    """,
    "macros/relations.sql": """
        {% macro select_all(obj) -%}
          {%- if not (obj is mapping and obj.get('metadata', {}).get('type', '').endswith('Relation')) -%}
            {%- do exceptions.raise_compiler_error("select_all expected a Relation but received " ~ obj) -%}
          {%- endif -%}
          select * from {{ obj }}
        {%- endmacro %}
    """,
    "macros/dispatched.sql": """
        {% macro label(x) -%}{{ return(adapter.dispatch('label', 'my_utils')(x)) }}{%- endmacro %}
        {% macro default__label(x) -%}'default:' || {{ x }}{%- endmacro %}
        {% macro duckdb__label(x) -%}'duck:' || {{ x }}{%- endmacro %}
        {% macro kind(x) -%}{{ return(adapter.dispatch('kind', 'my_utils')(x)) }}{%- endmacro %}
        {% macro default__kind(x) -%}'kind:' || {{ x }}{%- endmacro %}
    """,
}
OTHER_UTILS = {
    "dbt_project.yml": "name: other_utils\nversion: '1.0.0'\nconfig-version: 2\n",
    "macros/override.sql": "{% macro duckdb__label(x) -%}'other:' || {{ x }}{%- endmacro %}\n",
}
PROJECT = {
    "dbt_project.yml": """
        name: proj
        version: '1.0.0'
        profile: proj
        dispatch:
          - macro_namespace: my_utils
            search_order: ['other_utils', 'my_utils']
    """,
    "packages.yml": """
        packages:
          - local: ../my_utils
          - local: ../other_utils
    """,
    "seeds/payments.csv": "id,amount,secret\n1,1050,x\n2,299,y\n",
    "models/everything.sql": "{{ my_utils.select_all(ref('payments')) }}\n",
    "models/report.sql": """
        {%- set cols = ['id', 'amount', 'secret'] -%}
        {%- set renames = {'amount': 'amount_cents', 'id': 'payment_id'} -%}
        select {{ my_utils.star_except(cols, ['secret']) }},
          {%- for old, new in renames.items() %} {{ old }} as {{ new }},{% endfor %}
          {{ my_utils.cents_to_dollars('amount') }} as dollars,
          {{ my_utils.both('amount') }} as both_,
          {{ my_utils.label("'x'") }} as label,
          {{ my_utils.kind("'y'") }} as kind,
          {{ dbt.concat(["'p'", "cast(id as " ~ dbt.type_string() ~ ")"]) }} as tag,
          {{ dbt.safe_cast("'12'", dbt.type_int()) }} as twelve,
          {{ dbt.safe_cast("'7'", dbt.type_bigint()) }} as seven,
          {{ dbt.date_trunc('month', "date '2024-05-17'") }} as month,
          {{ dbt.dateadd('day', 3, "date '2024-05-17'") }} as later,
          {{ dbt.datediff("date '2024-05-01'", "date '2024-05-17'", 'day') }} as days,
          {{ dbt.last_day("date '2024-02-10'", 'month') }} as end_of_feb,
          {{ dbt.hash("'abc'") }} as hashed,
          {{ dbt.split_part("'a-b-c'", "'-'", 2) }} as part,
          {{ dbt.type_numeric() }} '1.5' as num
        from {{ ref('payments') }}
        where {{ dbt.current_timestamp() }} > timestamp '2000-01-01'
    """,
}


def _write(root: Path) -> Path:
    write_project(root / "my_utils", MY_UTILS, name="my_utils")
    write_project(root / "other_utils", OTHER_UTILS, name="other_utils")
    return write_project(root / "proj", PROJECT)


def test_local_and_installed_packages_build_like_dbt(tmp_path: Path) -> None:
    theirs = _write(tmp_path / "theirs")
    deps = dbt(theirs, "deps")
    assert deps.returncode == 0, deps.stdout
    ref = dbt(theirs, "build")
    assert ref.returncode == 0, ref.stdout
    expected = relations(theirs / "dbt.duckdb")
    assert expected["main.report"]

    # local: packages, read in place (no step)
    ours = _write(tmp_path / "ours")
    proc = opsloop(ours, "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert relations(ours / "warehouse.duckdb") == expected

    # a project dbt deps prepared (dbt_packages/), moved away from the package folders
    prepared = tmp_path / "prepared"
    shutil.copytree(theirs, prepared, symlinks=False)
    (prepared / "dbt.duckdb").unlink()
    (prepared / "packages.yml").write_text("packages:\n  - package: acme/my-utils\n    version: 1.0.0\n"
                                           "  - git: https://example.com/acme/other_utils.git\n")
    proc = opsloop(prepared, "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert relations(prepared / "warehouse.duckdb") == expected


def test_a_listed_package_not_installed_names_packages_yml_line(tmp_path: Path) -> None:
    root = _write(tmp_path)
    (root / "packages.yml").write_text("packages:\n  - local: ../my_utils\n  - local: ../other_utils\n"
                                       "  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n")
    (root / "models" / "more.sql").write_text("select 1 as x\nunion all\nselect {{ my_utils.nope(1) }}\n")
    proc = opsloop(root, "validate")
    assert proc.returncode == 1
    assert "packages.yml:4: package 'dbt-labs/dbt_utils' is not installed in dbt_packages/ (run `opsloop deps`" \
        in proc.stderr, proc.stderr
    # reported in the same pass as the model's problem
    assert "models/more.sql:3: macro my_utils.nope() does not exist in the my_utils package" in proc.stderr


def test_a_package_macro_needing_the_warehouse_fails_at_the_models_line(tmp_path: Path) -> None:
    root = _write(tmp_path)
    (tmp_path / "my_utils" / "macros" / "introspect.sql").write_text(
        "{% macro columns_of(rel) %}{% set cols = adapter.get_column_schema_from_query('select * from ' ~ rel) %}"
        "{{ cols | map(attribute='name') | join(', ') }}{% endmacro %}\n")
    (root / "models" / "listed.sql").write_text("select 1 as x,\n  {{ my_utils.columns_of(ref('payments')) }}\n"
                                                "from {{ ref('payments') }}\n")
    for verb in ("validate", "build"):
        proc = opsloop(root, verb)
        assert proc.returncode == 1, verb
        assert "models/listed.sql:2: adapter.get_column_schema_from_query() is not supported yet" in proc.stderr, \
            (verb, proc.stderr)
        assert "(in my_utils.columns_of)" in proc.stderr
        assert "Traceback" not in proc.stderr
