"""dbt's own cross-database macros (``dbt.date_trunc``, ``dbt.concat`` ...), as dbt-core and dbt-duckdb
write them: each dispatches through ``adapter.dispatch(name, 'dbt')``, so a project or package can
override one for an engine, and packages such as dbt_utils call them as they do under dbt."""

from __future__ import annotations

_DISPATCHED = {
    # name: (arguments, default body, duckdb body or None)
    "date_trunc": ("datepart, date", "date_trunc('{{ datepart }}', {{ date }})", None),
    "dateadd": ("datepart, interval, from_date_or_timestamp",
                "{{ from_date_or_timestamp }} + ((interval '1 {{ datepart }}') * ({{ interval }}))",
                "date_add({{ from_date_or_timestamp }}, interval ({{ interval }}) {{ datepart }})"),
    "datediff": ("first_date, second_date, datepart",
                 "date_diff('{{ datepart }}', {{ first_date }}, {{ second_date }})",
                 "date_diff('{{ datepart }}', {{ first_date }}::timestamp, {{ second_date }}::timestamp )"),
    "concat": ("fields", "{{ fields | join(' || ') }}", None),
    "safe_cast": ("field, type", "cast({{ field }} as {{ type }})", None),  # dbt-duckdb: a plain cast
    "cast": ("field, type", "cast({{ field }} as {{ type }})", None),
    "hash": ("field", "md5(cast({{ field }} as {{ dbt.type_string() }}))", None),
    "any_value": ("expression", "any({{ expression }})", "any_value({{ expression }})"),
    "bool_or": ("expression", "bool_or({{ expression }})", None),
    "split_part": ("string_text, delimiter_text, part_number",
                   "split_part({{ string_text }}, {{ delimiter_text }}, {{ part_number }})", None),
    "replace": ("field, old_chars, new_chars", "replace({{ field }}, {{ old_chars }}, {{ new_chars }})", None),
    "length": ("expression", "length({{ expression }})", None),
    "position": ("substring_text, string_text", "position({{ substring_text }} in {{ string_text }})", None),
    "right": ("string_text, length_expression", "right({{ string_text }}, {{ length_expression }})", None),
    "escape_single_quotes": ("expression", "{{ expression | replace(\"'\", \"''\") }}", None),
    "string_literal": ("value", "'{{ value }}'", None),
    "except": ("", "except", None),
    "intersect": ("", "intersect", None),
    "current_timestamp": ("", "current_timestamp", "now()"),
    "current_timestamp_in_utc_backcompat": ("", "current_timestamp", "now()"),
    "type_string": ("", "TEXT", None),
    "type_timestamp": ("", "TIMESTAMP", None),
    "type_float": ("", "FLOAT", None),
    "type_numeric": ("", "numeric(28,6)", None),
    "type_bigint": ("", "bigint", None),
    "type_int": ("", "INT", None),
    "type_boolean": ("", "BOOLEAN", None),
    "last_day": ("date, datepart",
                 "cast({{ dbt.dateadd('day', '-1', dbt.dateadd(datepart, '1', dbt.date_trunc(datepart, date))) }}"
                 " as date)", None),
    "listagg": ("measure, delimiter_text=none, order_by_clause=none, limit_num=none",
                "string_agg({{ measure }}, {{ delimiter_text or \"','\" }} {{ order_by_clause or '' }})", None),
    "array_construct": ("inputs=[], data_type=none", "array[ {{ inputs | join(' , ') }} ]", None),
    "array_append": ("array, new_element", "array_append({{ array }}, {{ new_element }})", None),
    "array_concat": ("array_1, array_2", "array_cat({{ array_1 }}, {{ array_2 }})", None),
}


_PLAIN = {
    # dbt-core's global macros that packages call by bare name (not dispatched)
    "should_store_failures": "{% macro should_store_failures() %}{% set c = config.get('store_failures') %}"
                             "{% if c is none %}{% set c = flags.STORE_FAILURES %}{% endif %}{% do return(c) %}"
                             "{% endmacro %}",
    "should_full_refresh": "{% macro should_full_refresh() %}{% set c = config.get('full_refresh') %}"
                           "{% if c is none %}{% set c = flags.FULL_REFRESH %}{% endif %}{% do return(c) %}"
                           "{% endmacro %}",
    "get_where_subquery": "{% macro get_where_subquery(relation) %}{% set where = config.get('where', '') %}"
                          "{% if where %}{% do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') "
                          "dbt_subquery') %}{% else %}{% do return(relation) %}{% endif %}{% endmacro %}",
}


def _macros() -> str:
    parts = list(_PLAIN.values())
    for name, (args, default, duckdb) in _DISPATCHED.items():
        call_args = ", ".join(a.split("=")[0].strip() for a in args.split(",") if a.strip())
        parts.append(f"{{% macro {name}({args}) -%}}{{{{ return(adapter.dispatch('{name}', 'dbt')({call_args})) }}}}"
                     "{%- endmacro %}")
        parts.append(f"{{% macro default__{name}({args}) -%}}{default}{{%- endmacro %}}")
        if duckdb:
            parts.append(f"{{% macro duckdb__{name}({args}) -%}}{duckdb}{{%- endmacro %}}")
    return "\n".join(parts) + "\n"


DBT_MACROS = _macros()
DBT_MACRO_NAMES = frozenset(
    [*_PLAIN, *_DISPATCHED, *(f"default__{n}" for n in _DISPATCHED),
     *(f"duckdb__{n}" for n, v in _DISPATCHED.items() if v[2])])
"""Every macro DBT_MACROS defines (known without compiling it)."""
