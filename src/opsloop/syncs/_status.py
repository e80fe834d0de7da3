"""The state-store side of syncs: the run lease, health for alerts, daily quotas (SQLite and Postgres)."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime

from ..errors import OpsloopError, TransientError
from ..narrow import as_int, opt_float, opt_str
from ..state import StateStore

LEASE_SECONDS = 600.0


class SyncBusy(TransientError):
    """Another process is running this sync right now."""


class QuotaExhausted(OpsloopError):
    """The destination's daily request quota is used up; the rest waits for tomorrow's runs."""


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_dead(owner: str | None) -> bool:
    if not owner:
        return True
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class SyncStatus:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    def acquire(self, sync: str) -> str:
        """Take the run lease of ``sync`` (a crashed holder on this host is taken over at once)."""
        me = owner_id()
        now = time.time()
        with self.store.transaction() as cur:
            self.store.execute(
                cur,
                "INSERT INTO sync_status (sync, updated_at) VALUES (?, ?) ON CONFLICT (sync) DO NOTHING",
                (sync, now),
            )
            row = self.store.execute(cur, "SELECT lease_owner, lease_until FROM sync_status WHERE sync = ?",
                                     (sync,)).fetchone()
            assert row is not None  # the INSERT above made it
            holder, until = opt_str(row[0], "sync_status.lease_owner"), opt_float(row[1], "sync_status.lease_until")
            if holder and holder != me and until and until > now and not _owner_dead(holder):
                raise SyncBusy(f"sync {sync!r} is running in another process ({holder}); wait for it to finish")
            self.store.execute(cur, "UPDATE sync_status SET lease_owner = ?, lease_until = ? WHERE sync = ?",
                               (me, now + LEASE_SECONDS, sync))
        return me

    def release(self, sync: str) -> None:
        with self.store.transaction() as cur:
            self.store.execute(cur, "UPDATE sync_status SET lease_owner = NULL, lease_until = NULL WHERE sync = ? "
                               "AND lease_owner = ?", (sync, owner_id()))

    def record_run(self, sync: str, run_id: str, status: str, health: str | None) -> str:
        """Store the run's outcome; returns the previous health (``unknown``, ``healthy`` or ``failing``)."""
        with self.store.transaction() as cur:
            row = self.store.execute(cur, "SELECT health FROM sync_status WHERE sync = ?", (sync,)).fetchone()
            previous = row[0] if row else "unknown"
            self.store.execute(
                cur,
                "UPDATE sync_status SET last_status = ?, last_run_id = ?, last_run_at = ?, "
                "health = COALESCE(?, health), updated_at = ? WHERE sync = ?",
                (status, run_id, time.time(), health, time.time(), sync),
            )
        return str(previous)

    def get(self, sync: str) -> dict[str, object] | None:
        rows = self.store.query(
            "SELECT health, last_status, last_run_id, last_run_at, lease_owner FROM sync_status WHERE sync = ?",
            (sync,),
        )
        if not rows:
            return None
        health, status, run_id, at, owner = rows[0]
        return {"health": health, "last_status": status, "last_run_id": run_id, "last_run_at": at,
                "running": owner is not None}

    def take_quota(self, key: str, per_day: int) -> None:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        with self.store.transaction() as cur:
            row = self.store.execute(
                cur,
                "INSERT INTO sync_quota (quota_key, day, used) VALUES (?, ?, 1) ON CONFLICT (quota_key, day) "
                "DO UPDATE SET used = sync_quota.used + 1 RETURNING used",
                (key, day),
            ).fetchone()
            assert row is not None  # RETURNING gives the row it wrote
            if as_int(row[0], "sync_quota.used") > per_day:
                self.store.execute(cur, "UPDATE sync_quota SET used = ? WHERE quota_key = ? AND day = ?",
                                   (per_day, key, day))
                raise QuotaExhausted(f"the daily quota of {per_day} requests to {key} is used up; the remaining "
                                     "rows are sent by the first run after midnight UTC")
