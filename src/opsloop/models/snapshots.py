"""dbt snapshots: type-2 slowly changing dimension tables, built as dbt-duckdb builds them.

A snapshot's first build is its query plus ``dbt_scd_id``, ``dbt_updated_at``, ``dbt_valid_from`` and
``dbt_valid_to``. Each later build stages the rows that are new or changed (and, with ``hard_deletes``,
the ones that vanished) next to the target, closes the changed rows' current versions (``dbt_valid_to``)
and inserts their new versions — the same statements, in the same order, as dbt's snapshot
materialization, so the tables match dbt's row for row.

Strategies: ``timestamp`` (a row changed when its ``updated_at`` is newer than the current version's
``dbt_valid_from``) and ``check`` (when one of ``check_cols``, or any column with ``'all'``, differs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import Problem
from ..narrow import mapping
from ._config import as_list
from .nodes import Snapshot

STRATEGIES = ("timestamp", "check")
HARD_DELETES = ("ignore", "invalidate", "new_record")
SNAPSHOT_CONFIG_KEYS = {
    "strategy", "unique_key", "updated_at", "check_cols", "target_schema", "target_database", "hard_deletes",
    "invalidate_hard_deletes", "dbt_valid_to_current", "snapshot_meta_column_names",
}
META_COLUMNS = ("dbt_valid_to", "dbt_valid_from", "dbt_scd_id", "dbt_updated_at", "dbt_is_deleted")
NOW = "now()::timestamp"
"""dbt-duckdb's snapshot_get_time()."""


@dataclass
class Strategy:
    """What a snapshot's config means for the SQL (dbt's strategy dict)."""

    name: str
    keys: list[str]
    """unique_key expressions (one, or a list)."""
    is_list: bool
    updated_at: str
    """An expression over the query's columns (timestamp), or the snapshot time (check)."""
    check_cols: str | list[str] | None
    hard_deletes: str
    valid_to_current: str | None
    cols: dict[str, str]
    """The meta columns' names (``snapshot_meta_column_names`` renames them)."""


def strategy_of(snap: Snapshot) -> Strategy:
    """The strategy; call ``snapshot_problems`` first (this assumes a valid config)."""
    cfg = snap.config
    key = cfg.get("unique_key")
    is_list = isinstance(key, list)
    keys = [str(k) for k in key] if isinstance(key, list) else [str(key)]
    name = str(cfg.get("strategy"))
    updated_at = str(cfg["updated_at"]) if cfg.get("updated_at") else NOW
    names = {c: c for c in META_COLUMNS}
    for meta, custom in mapping(cfg.get("snapshot_meta_column_names")).items():
        names[meta] = str(custom)
    vtc = cfg.get("dbt_valid_to_current")
    check = cfg.get("check_cols")
    check_cols = check if check is None or isinstance(check, str) else as_list(check)
    return Strategy(name, keys, is_list, updated_at, check_cols, hard_deletes_of(cfg),
                    str(vtc) if vtc else None, names)


def hard_deletes_of(cfg: Mapping[str, object]) -> str:
    if cfg.get("invalidate_hard_deletes") or cfg.get("hard_deletes") == "invalidate":
        return "invalidate"
    return "new_record" if cfg.get("hard_deletes") == "new_record" else "ignore"


def snapshot_problems(snap: Snapshot) -> list[Problem]:
    """What is wrong with a snapshot's config, each naming the snapshot's file and line."""
    cfg, out = snap.config, []

    def bad(message: str, hint: str = "") -> None:
        out.append(Problem(snap.file, snap.line, f"snapshot {snap.name!r}: {message}", hint))

    strategy = cfg.get("strategy")
    if strategy not in STRATEGIES:
        bad(f"strategy must be timestamp or check, not {strategy!r}" if strategy else "needs a strategy",
            "set strategy='timestamp' (with updated_at) or strategy='check' (with check_cols) in its config")
    if not cfg.get("unique_key"):
        bad("needs a unique_key", "set unique_key='id' (or a list of columns) in its config")
    if strategy == "timestamp" and not cfg.get("updated_at"):
        bad("the timestamp strategy needs updated_at", "set updated_at='updated_at' (the column that changes)")
    check = cfg.get("check_cols")
    if strategy == "check" and not (check == "all" or (isinstance(check, list) and check)):
        bad(f"the check strategy needs check_cols: 'all' or a list of columns, not {check!r}")
    if cfg.get("invalidate_hard_deletes") is not None and cfg.get("hard_deletes") is not None:
        bad("set hard_deletes or invalidate_hard_deletes, not both", "keep hard_deletes: invalidate")
    if cfg.get("hard_deletes") is not None and cfg.get("hard_deletes") not in HARD_DELETES:
        bad(f"hard_deletes must be one of {', '.join(HARD_DELETES)}, not {cfg.get('hard_deletes')!r}")
    names = cfg.get("snapshot_meta_column_names")
    if names is not None and (not isinstance(names, dict) or set(names) - set(META_COLUMNS)):
        bad(f"snapshot_meta_column_names may rename {', '.join(META_COLUMNS)} only")
    return out


def _hash(args: list[str]) -> str:
    return "md5(" + " || '|' || ".join(f"coalesce(cast({a} as varchar ), '')" for a in args) + ")"


def _key_fields(s: Strategy) -> str:
    if not s.is_list:
        return f"{s.keys[0]} as dbt_unique_key"
    return ", ".join(f"{k} as dbt_unique_key_{i}" for i, k in enumerate(s.keys, 1))


def _join_on(s: Strategy, left: str, right: str) -> str:
    if not s.is_list:
        return f"{left}.dbt_unique_key = {right}.dbt_unique_key"
    return " and ".join(f"({left}.dbt_unique_key_{i} = {right}.dbt_unique_key_{i})" for i in range(1, len(s.keys) + 1))


def _key_null(s: Strategy, rel: str, negate: bool = False) -> str:
    return f"{rel}.dbt_unique_key{'_1' if s.is_list else ''} is {'not ' if negate else ''}null"


def _valid_to_current(s: Strategy) -> str:
    return f"coalesce(nullif({s.updated_at}, {s.updated_at}), {s.valid_to_current or 'null'})"


def _is_current(s: Strategy, rel: str) -> str:
    col = f"{rel}.{s.cols['dbt_valid_to']}" if rel else s.cols["dbt_valid_to"]
    if s.valid_to_current:
        return f"(({col} = {s.valid_to_current}) or {col} is null)"
    return f"{col} is null"


def first_build_sql(s: Strategy, sql: str) -> str:
    """The first build: the query and its SCD2 columns."""
    c = s.cols
    deleted = f",\n    'False' as {c['dbt_is_deleted']}" if s.hard_deletes == "new_record" else ""
    return (f"select *,\n    {_hash([*s.keys, s.updated_at])} as {c['dbt_scd_id']},\n"
            f"    {s.updated_at} as {c['dbt_updated_at']},\n    {s.updated_at} as {c['dbt_valid_from']},\n"
            f"    {_valid_to_current(s)} as {c['dbt_valid_to']}{deleted}\nfrom (\n{sql}\n) sbq")


def row_changed(s: Strategy, check_cols: list[str], column_added: bool) -> str:
    if s.name == "timestamp":
        return f"(snapshotted_data.{s.cols['dbt_valid_from']} < source_data.{s.updated_at})"
    if column_added:
        return "(TRUE)"
    parts = [f"snapshotted_data.{col} != source_data.{col} or (((snapshotted_data.{col} is null) and not "
             f"(source_data.{col} is null)) or ((not snapshotted_data.{col} is null) and (source_data.{col} is null)))"
             for col in check_cols]
    return "(" + " or ".join(parts) + ")"


def staging_sql(s: Strategy, sql: str, target: str, changed: str, source_cols: list[str],
                target_cols: list[str], quote: Callable[[str], str]) -> str:
    """The rows to insert (new versions) and to close (changed, and deleted with hard_deletes)."""
    c = s.cols
    keys = _key_fields(s)
    deletes = s.hard_deletes in ("invalidate", "new_record")
    new_record = s.hard_deletes == "new_record"
    was_deleted = f" or snapshotted_data.{c['dbt_is_deleted']} = 'True'" if new_record else ""
    parts = [
        f"with snapshot_query as (\n{sql}\n),",
        f"snapshotted_data as (\n  select *, {keys}\n  from {target}\n  where {_is_current(s, '')}\n),",
        f"insertions_source_data as (\n  select *, {keys},\n    {s.updated_at} as {c['dbt_updated_at']},\n"
        f"    {s.updated_at} as {c['dbt_valid_from']},\n    {_valid_to_current(s)} as {c['dbt_valid_to']},\n"
        f"    {_hash([*s.keys, s.updated_at])} as {c['dbt_scd_id']}\n  from snapshot_query\n),",
        f"updates_source_data as (\n  select *, {keys},\n    {s.updated_at} as {c['dbt_updated_at']},\n"
        f"    {s.updated_at} as {c['dbt_valid_from']},\n    {s.updated_at} as {c['dbt_valid_to']}\n"
        "  from snapshot_query\n),",
    ]
    if deletes:
        parts.append(f"deletes_source_data as (\n  select *, {keys}\n  from snapshot_query\n),")
    deleted_flag = f", 'False' as {c['dbt_is_deleted']}" if new_record else ""
    parts.append(
        f"insertions as (\n  select 'insert' as dbt_change_type, source_data.*{deleted_flag}\n"
        "  from insertions_source_data as source_data\n  left outer join snapshotted_data\n"
        f"    on {_join_on(s, 'snapshotted_data', 'source_data')}\n  where {_key_null(s, 'snapshotted_data')}\n"
        f"    or ({_key_null(s, 'snapshotted_data', True)} and ({changed}{was_deleted}))\n),")
    old_flag = f", snapshotted_data.{c['dbt_is_deleted']}" if new_record else ""
    parts.append(
        f"updates as (\n  select 'update' as dbt_change_type, source_data.*, snapshotted_data.{c['dbt_scd_id']}"
        f"{old_flag}\n  from updates_source_data as source_data\n  join snapshotted_data\n"
        f"    on {_join_on(s, 'snapshotted_data', 'source_data')}\n  where ({changed}{was_deleted})\n)")
    not_deleted_again = (f"\n    and not (snapshotted_data.{c['dbt_is_deleted']} = 'True' and "
                         f"{_is_current(s, 'snapshotted_data')})") if new_record else ""
    if deletes:
        parts.append(
            f",\ndeletes as (\n  select 'delete' as dbt_change_type, source_data.*,\n"
            f"    {NOW} as {c['dbt_valid_from']},\n    {NOW} as {c['dbt_updated_at']},\n"
            f"    {NOW} as {c['dbt_valid_to']},\n    snapshotted_data.{c['dbt_scd_id']}{old_flag}\n"
            "  from snapshotted_data\n  left join deletes_source_data as source_data\n"
            f"    on {_join_on(s, 'snapshotted_data', 'source_data')}\n  where {_key_null(s, 'source_data')}"
            f"{not_deleted_again}\n)")
    if new_record:
        lowered = {t.lower() for t in target_cols}
        picked = [f"{'snapshotted_data' if col.lower() in lowered else 'source_data'}.{quote(col)}"
                  for col in source_cols]
        key_cols = ([f"snapshotted_data.{k} as dbt_unique_key_{i}" for i, k in enumerate(s.keys, 1)]
                    if s.is_list else ["snapshotted_data.dbt_unique_key as dbt_unique_key"])
        parts.append(
            ",\ndeletion_records as (\n  select 'insert' as dbt_change_type,\n    "
            + ",\n    ".join([*picked, *key_cols]) +
            f",\n    {NOW} as {c['dbt_valid_from']},\n    {NOW} as {c['dbt_updated_at']},\n"
            f"    snapshotted_data.{c['dbt_valid_to']} as {c['dbt_valid_to']},\n"
            f"    {_hash([c['dbt_scd_id'], NOW])} as {c['dbt_scd_id']},\n    'True' as {c['dbt_is_deleted']}\n"
            "  from snapshotted_data\n  left join deletes_source_data as source_data\n"
            f"    on {_join_on(s, 'snapshotted_data', 'source_data')}\n  where {_key_null(s, 'source_data')}"
            f"{not_deleted_again}\n)")
    parts.append("select * from insertions\nunion all\nselect * from updates")
    if deletes:
        parts.append("union all\nselect * from deletes")
    if new_record:
        parts.append("union all\nselect * from deletion_records")
    return "\n".join(parts)


def merge_sql(s: Strategy, target: str, staging: str, insert_cols: list[str]) -> list[str]:
    """Close the current versions of changed (and deleted) rows, then insert the new versions."""
    c = s.cols
    cols = ", ".join(insert_cols)
    picked = ", ".join(f"DBT_INTERNAL_SOURCE.{col}" for col in insert_cols)
    return [
        f"update {target} as DBT_INTERNAL_TARGET\nset {c['dbt_valid_to']} = DBT_INTERNAL_SOURCE.{c['dbt_valid_to']}\n"
        f"from {staging} as DBT_INTERNAL_SOURCE\nwhere DBT_INTERNAL_SOURCE.{c['dbt_scd_id']}::text = "
        f"DBT_INTERNAL_TARGET.{c['dbt_scd_id']}::text\n"
        "  and DBT_INTERNAL_SOURCE.dbt_change_type::text in ('update'::text, 'delete'::text)\n"
        f"  and {_is_current(s, 'DBT_INTERNAL_TARGET')}",
        f"insert into {target} ({cols})\nselect {picked}\nfrom {staging} as DBT_INTERNAL_SOURCE\n"
        "where DBT_INTERNAL_SOURCE.dbt_change_type::text = 'insert'::text",
    ]


def internal_column(name: str) -> bool:
    """Staging columns that are not copied into the snapshot table."""
    low = name.lower()
    return low in ("dbt_change_type", "dbt_unique_key") or low.startswith("dbt_unique_key_")
