"""Enforcing the information hierarchy in the system a sync writes (``enforce:``, on by default).

A sync from the golden record names the system it writes with ``system:`` (the origin guard). When
identity.yml reads that system, the sync compares what the system holds — per person and field, from the
records of its latest pull, as the last identity build saw them — with the value the sync sends. A record
holding another value is corrected: the row is planned as an update though the golden value did not change,
and each corrected field becomes a ``sync.<name>.corrected`` event.

No loops, no echoes: only a value the system set *after* opsloop last wrote the record counts (a pull older
than the write still shows the value the write replaced), and once corrected, the record is written again
only when the system changes it again. A value opsloop wrote comes back in the next pull equal to the golden
value, so it is no edit either. Fields whose winning value came from the system itself are not touched (the
origin guard), nor the key, nor (with ``null_policy: skip``) a field whose golden value is null.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .diff import Enforcement, PlanColumns

if TYPE_CHECKING:
    from ..project.loader import Project
    from ..warehouse import Warehouse
    from .project_files import LoadedSync

PERSON_COLUMN = "person_id"
"""The source column that links a sync's row to the identity graph (identity.golden_records has it)."""


def enforcement_for(project: Project, sync: LoadedSync, columns: Sequence[str], pc: PlanColumns,
                    warehouse: Warehouse) -> Enforcement | None:
    """What the sync enforces in its system, or None when nothing applies (see ``why_not``)."""
    if why_not(project, sync, columns) is not None:
        return None
    if warehouse.dialect != "duckdb" or not warehouse.columns("identity", "field_values"):
        return None  # identity resolution runs in DuckDB; before its first build nobody holds anything
    from ..identity.holdings import holdings

    cfg = sync.config
    held = holdings(project, str(cfg.system))
    if held is None:
        return None
    rules = {i: held.rules[spec.source] for i, spec in enumerate(pc.specs)
             if spec.kind == "column" and spec.source in held.rules and spec.source != cfg.key}
    if not rules:
        return None
    return Enforcement(str(cfg.system), held.select([r.field for r in rules.values()]), PERSON_COLUMN, rules,
                       skip_nulls=cfg.null_policy == "skip")


def why_not(project: Project, sync: LoadedSync, columns: Sequence[str] | None = None) -> str | None:
    """Why the sync cannot enforce the hierarchy (None when it can): for ``opsloop validate`` when a sync asks
    for ``enforce: true`` explicitly. ``columns`` are the source's, when known."""
    from ..identity.holdings import holdings, systems

    cfg = sync.config
    if not cfg.enforce:
        return "enforce: false"
    if not cfg.system:
        return "it names no system: (the identity.yml system the destination is, e.g. system: crm)"
    if cfg.mode == "insert":
        return "mode: insert never updates a record"
    held = holdings(project, cfg.system)
    if held is None:
        known = systems(project)
        return (f"identity.yml reads no source of system {cfg.system!r}"
                + (f" (its systems: {', '.join(known)})" if known else " (there is no identity.yml)"))
    if columns is not None and PERSON_COLUMN not in columns:
        return f"its source has no {PERSON_COLUMN} column (sync from identity.golden_records or a model over it)"
    mapped = [s.source for s in sync.specs if s.kind == "column" and s.source in held.rules and s.source != cfg.key]
    if not mapped:
        return (f"no mapped column is a golden-record field that identity.yml reads from {cfg.system!r} "
                f"(its fields there: {', '.join(held.rules) or 'none'})")
    return None


def corrections(sync: LoadedSync, enforcement: Enforcement, pc: PlanColumns, row: dict[str, object],
                jsonable: Callable[[object], object]) -> list[dict[str, object]]:
    """The ``sync.<name>.corrected`` payloads (without ``run_id``) for one plan row; empty when it corrects
    nothing."""
    out = []
    for i, rule in enforcement.rules.items():
        x, h, hr, ha = Enforcement.columns(i)
        if not row.get(x):
            continue
        origin = row.get(pc.origin_cols[i]) if i in pc.origin_cols else None
        source = None if origin is None else str(origin)
        held_at = row.get(ha)  # a datetime: jsonable() writes it in ISO 8601
        out.append({
            "sync": sync.config.name, "key": row["__key"], "person_id": row.get("__person"),
            "system": enforcement.system, "record_id": row.get(hr),
            "field": rule.field, "destination_field": pc.specs[i].name,
            "old": row.get(h), "new": jsonable(row.get(pc.value_cols[i])),
            "source": source, "rank": rule.rank(source), "system_rank": rule.rank(enforcement.system),
            "survivorship": rule.survivorship,
            "edited_at": jsonable(held_at),
        })
    return out
