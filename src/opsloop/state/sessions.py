"""Login sessions in the state store: every statement over the ``sessions`` table.

A session id is 256 random bits handed to the browser once, in its cookie; the store keeps only its
SHA-256, so a copy of the state database opens no session. A session ends at its expiry or when its
holder logs out (the row is deleted); an expired row is refused on sight and purged at the next login.
Each row also keeps a tag of the API token it was opened with (an HMAC, not the token): after the token
changes, the sessions opened with the old one are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from ..narrow import as_float, as_int
from .base import StateStore


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """Open, check and revoke login sessions on ``store``."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def open(self, ttl: float, token_tag: str, client: str | None = None, now: float | None = None) -> str:
        """A new session valid for ``ttl`` seconds; returns its id (shown to nobody but the browser)."""
        now = time.time() if now is None else now
        session_id = secrets.token_urlsafe(32)
        with self.store.transaction() as cur:
            self.store.execute(cur, "DELETE FROM sessions WHERE expires_at <= ?", (now,))
            self.store.execute(
                cur, "INSERT INTO sessions (id_hash, created_at, expires_at, client, token_tag) VALUES (?, ?, ?, ?, ?)",
                (_hash(session_id), now, now + ttl, client, token_tag),
            )
        return session_id

    def valid(self, session_id: str, token_tag: str, now: float | None = None) -> bool:
        """Whether ``session_id`` names a session that has neither expired nor been revoked, opened with the
        token whose tag is ``token_tag``."""
        now = time.time() if now is None else now
        rows = self.store.query("SELECT expires_at, token_tag FROM sessions WHERE id_hash = ?", (_hash(session_id),))
        if not rows:
            return False
        return as_float(rows[0][0], "sessions.expires_at") > now and hmac.compare_digest(str(rows[0][1]), token_tag)

    def revoke(self, session_id: str) -> None:
        """End ``session_id`` now (logout)."""
        with self.store.transaction() as cur:
            self.store.execute(cur, "DELETE FROM sessions WHERE id_hash = ?", (_hash(session_id),))

    def count(self) -> int:
        """Sessions stored (expired ones included until the next purge)."""
        return as_int(self.store.query("SELECT COUNT(*) FROM sessions")[0][0], "the session count")
