"""What ``opsloop syncs`` and ``GET /api/syncs`` show: each sync's health, last run and row counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import WarehouseError
from ._status import SyncStatus
from .diff import SyncTables
from .project_files import SYNCS

if TYPE_CHECKING:
    from ..app import App


def recent_runs(app_: App, name: str, limit: int = 10,
                before: tuple[object, str] | None = None) -> list[dict[str, object]]:
    """The newest runs of ``name``; ``before`` (a run's ``started_at`` and ``run_id``) pages on, keyset."""
    older = " AND (started_at < ? OR (started_at = ? AND run_id < ?))" if before else ""
    params = (name, *((before[0], before[0], before[1]) if before else ()), limit)
    try:
        return list(app_.warehouse.query(
            "SELECT run_id, trigger, started_at, finished_at, status, planned_creates, planned_updates, "
            "planned_deletes, sent, failed, skipped, unconfirmed, error FROM opsloop_sync.runs WHERE sync = ?"
            f"{older} ORDER BY started_at DESC, run_id DESC LIMIT ?", params).as_dicts())
    except WarehouseError:
        return []


def one_run(app_: App, name: str, run_id: str) -> dict[str, object] | None:
    """One run of ``name`` from ``opsloop_sync.runs``, or None."""
    try:
        found = app_.warehouse.query(
            "SELECT run_id, trigger, started_at, finished_at, status, planned_creates, planned_updates, "
            "planned_deletes, sent, failed, skipped, unconfirmed, error FROM opsloop_sync.runs WHERE sync = ? "
            "AND run_id = ?", (name, run_id)).as_dicts()
    except WarehouseError:
        return None
    return found[0] if found else None


def sync_listing(app_: App) -> list[dict[str, object]]:
    status = SyncStatus(app_.store)
    out = []
    for name, loaded in sorted(SYNCS.of(app_.project).items()):
        st = status.get(name) or {}
        runs = recent_runs(app_, name, 1)
        last = runs[0] if runs else {}
        counts = SyncTables(app_.warehouse, name).state_counts()
        out.append({
            "sync": name, "file": loaded.file, "destination": loaded.config.destination.get("type"),
            "mode": loaded.config.mode, "health": st.get("health", "unknown"),
            "last_status": last.get("status"), "last_run_id": last.get("run_id"),
            "last_run_at": str(last["started_at"])[:19] if last.get("started_at") else None,
            "last_sent": last.get("sent"), "last_failed": last.get("failed"),
            "synced_rows": counts["synced"], "pending_retry": counts["failing"], "owned_records": counts["owned"],
        })
    return out


def sync_detail(app_: App, name: str) -> dict[str, object] | None:
    found = {s["sync"]: s for s in sync_listing(app_)}.get(name)
    if found is None:
        return None
    return {**found, "runs": recent_runs(app_, name), "failed_rows": SyncTables(app_.warehouse, name).failed_rows()}
