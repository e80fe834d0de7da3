"""What ``opsloop sources`` shows: state, cursor, last run, rows, next scheduled run."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ._state import SourceState
from .project_files import SOURCES

if TYPE_CHECKING:
    from ..app import App


def next_run(schedule: str | None, after: float | None = None) -> float | None:
    if not schedule:
        return None
    from datetime import UTC, datetime

    from croniter import croniter

    base = datetime.fromtimestamp(time.time() if after is None else after, tz=UTC)
    return float(croniter(schedule, base).get_next(float))


def source_status(app: App) -> list[dict[str, object]]:
    state = SourceState(app.store)
    out: list[dict[str, object]] = []
    for name, config in sorted(SOURCES.of(app.project).items()):
        last = state.last_run(name)
        streams = state.streams(name)
        upcoming = next_run(config.schedule)
        if last is not None and last.status == "partial" and last.resume_at and config.schedule:
            upcoming = max(upcoming or 0.0, next_run(config.schedule, last.resume_at - 1) or 0.0)
        out.append({
            "name": name,
            "type": config.type,
            "state": last.status if last else "never run",
            "schedule": config.schedule,
            "last_run": last.as_dict() if last else None,
            "next_run": upcoming,
            "rows_total": sum(s.rows_total for s in streams.values()),
            "streams": {
                s: {"cursor": st.cursor,
                    "rows_total": st.rows_total, "last_rows": st.last_rows, "updated_at": st.updated_at}
                for s, st in streams.items()
            },
        })
    return out


def source_runs(app: App, name: str, limit: int = 25) -> list[dict[str, object]]:
    """The last ``limit`` runs of source ``name``, newest first, as dicts (the source's page)."""
    return [r.as_dict() for r in SourceState(app.store).runs(name, limit)]
