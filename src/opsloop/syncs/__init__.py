"""Reverse ETL: send model rows to CRMs, support tools, Slack, email and webhooks — only what changed.

``SyncRunner(app).run(name)`` runs one sync; ``syncs/*.yml`` configure them (see docs/syncs.md).
"""

from __future__ import annotations

from .runner import RunResult, SyncError, SyncRunner

__all__ = ["RunResult", "SyncError", "SyncRunner"]
