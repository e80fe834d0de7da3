"""Reverse ETL: send model rows to CRMs, support tools, Slack, email and webhooks — only what changed.

``SyncRunner(app).run(name)`` runs one sync; ``syncs/*.yml`` configure them (see docs/syncs.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .runner import RunResult, SyncError, SyncRunner

# imported on first use: importing one module of the package (its project_files for `opsloop validate`)
# must not load the rest
__getattr__ = lazy_exports(__name__, {
    "RunResult": ".runner",
    "SyncError": ".runner",
    "SyncRunner": ".runner",
})

__all__ = ["RunResult", "SyncError", "SyncRunner"]
