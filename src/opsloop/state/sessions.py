"""Login sessions in the state store: every statement over the ``sessions`` table.

A session id is 256 random bits handed to the browser once, in its cookie; the store keeps only its
SHA-256, so a copy of the state database opens no session. A session ends at its expiry or when its
holder logs out (the row is deleted); an expired row is refused on sight and purged at the next login.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from .base import StateStore


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """Open, check and revoke login sessions on ``store``."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def open(self, ttl: float, client: str | None = None, now: float | None = None) -> str:
        """A new session valid for ``ttl`` seconds; returns its id (shown to nobody but the browser)."""
        now = time.time() if now is None else now
        session_id = secrets.token_urlsafe(32)
        with self.store.transaction() as cur:
            self.store.execute(cur, "DELETE FROM sessions WHERE expires_at <= ?", (now,))
            self.store.execute(
                cur, "INSERT INTO sessions (id_hash, created_at, expires_at, client) VALUES (?, ?, ?, ?)",
                (_hash(session_id), now, now + ttl, client),
            )
        return session_id

    def valid(self, session_id: str, now: float | None = None) -> bool:
        """Whether ``session_id`` names a session that has neither expired nor been revoked."""
        now = time.time() if now is None else now
        rows = self.store.query("SELECT expires_at FROM sessions WHERE id_hash = ?", (_hash(session_id),))
        return bool(rows) and float(rows[0][0]) > now

    def revoke(self, session_id: str) -> None:
        """End ``session_id`` now (logout)."""
        with self.store.transaction() as cur:
            self.store.execute(cur, "DELETE FROM sessions WHERE id_hash = ?", (_hash(session_id),))

    def count(self) -> int:
        """Sessions stored (expired ones included until the next purge)."""
        return int(self.store.query("SELECT COUNT(*) FROM sessions")[0][0])
