"""Alerts: one notice when a sync starts failing and one when it recovers — never one per failed run.

The ``alert:`` block of a sync is a destination config (``slack``, ``email``, ``outbox`` ...); the notice
is sent as one row with ``text``, ``subject`` and ``body`` fields.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from ..destinations import Destination, RowOp, get_destination
from ..errors import OpsloopError

if TYPE_CHECKING:
    from .project_files import LoadedSync
    from .runner import RunResult, SyncRunner

log = logging.getLogger("opsloop.syncs")


def alert_text(sync: LoadedSync, result: RunResult, health: str) -> tuple[str, str]:
    name = sync.name
    if health == "failing":
        why = result.error or f"{result.failed} row(s) were rejected"
        subject = f"opsloop sync {name} is failing"
        body = (f"Sync {name} is failing: {why}. Run `opsloop syncs show {name}` for the failed rows "
                f"and their errors (run {result.run_id}).")
    else:
        subject = f"opsloop sync {name} recovered"
        body = f"Sync {name} recovered: run {result.run_id} sent {result.sent} row(s) with no failures."
    return subject, body


def send_alert(runner: SyncRunner, sync: LoadedSync, result: RunResult, health: str) -> None:
    if sync.alert is None:
        return
    subject, body = alert_text(sync, result, health)
    alert_type = str(getattr(sync.alert, "type", ""))
    dest: Destination | None = None
    try:
        dest = get_destination(alert_type)(sync.alert, runner.context(sync.name))
        key = f"alert:{sync.name}:{result.run_id}"
        idem = hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
        results = dest.send([RowOp(key, "insert", {"text": body, "subject": subject, "body": body}, idem,
                                   new=True)])
        for r in results:
            if not r.ok:
                log.warning("the alert for sync %s was not delivered: %s", sync.name, r.error)
    except OpsloopError as exc:
        log.warning("the alert for sync %s was not delivered: %s", sync.name, exc)
    finally:
        if dest is not None:
            dest.close()
