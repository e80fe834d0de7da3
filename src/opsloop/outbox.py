"""The outbox: sandbox destinations record here what they would have sent.

Used by ``opsloop demo`` (no accounts), by dry runs and by tests. A Slack message updated in place is the
same outbox row with a higher ``version``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from ._ids import new_id
from ._json import JsonValue
from .narrow import as_float, as_int, as_str, opt_str
from .state import StateStore
from .state.base import Cursor


@dataclass
class OutboxItem:
    id: str
    destination: str
    action: str
    target: str | None
    key: str | None
    payload: JsonValue
    version: int
    created_at: float
    updated_at: float


_COLUMNS = "id, destination, action, target, key, payload, version, created_at, updated_at"


def _item(row: tuple[object, ...]) -> OutboxItem:
    return OutboxItem(as_str(row[0], "outbox.id"), as_str(row[1], "outbox.destination"),
                      as_str(row[2], "outbox.action"),
                      opt_str(row[3], "outbox.target"), opt_str(row[4], "outbox.key"),
                      json.loads(as_str(row[5], "outbox.payload")), as_int(row[6], "outbox.version"),
                      as_float(row[7], "outbox.created_at"), as_float(row[8], "outbox.updated_at"))


def record(store: StateStore, destination: str, action: str, payload: object, target: str | None = None,
           key: str | None = None, cur: Cursor | None = None) -> str:
    """Record a new outbound message; returns its id (use it as a handle for later updates)."""
    item_id = new_id("out_")
    now = time.time()
    sql = (f"INSERT INTO outbox ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)")
    params = (item_id, destination, action, target, key, json.dumps(payload, default=str), now, now)
    if cur is not None:
        store.execute(cur, sql, params)
    else:
        with store.transaction() as c:
            store.execute(c, sql, params)
    return item_id


def update(store: StateStore, item_id: str, payload: object, action: str | None = None) -> bool:
    """Replace an outbox item's payload in place (e.g. a Slack chat.update); False when it does not exist."""
    with store.transaction() as cur:
        store.execute(  # keep the version being replaced, for the page's history
            cur,
            "INSERT INTO outbox_versions (item_id, version, action, payload, updated_at) "
            "SELECT id, version, action, payload, updated_at FROM outbox WHERE id = ? "
            "ON CONFLICT (item_id, version) DO NOTHING",
            (item_id,),
        )
        found = store.execute(
            cur,
            "UPDATE outbox SET payload = ?, action = COALESCE(?, action), version = version + 1, updated_at = ? "
            "WHERE id = ? RETURNING id",
            (json.dumps(payload, default=str), action, time.time(), item_id),
        ).fetchone()
    return found is not None


def get(store: StateStore, item_id: str) -> OutboxItem | None:
    rows = store.query(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (item_id,))
    return _item(rows[0]) if rows else None


def list_items(store: StateStore, destination: str | None = None, limit: int = 200,
               before: float | None = None) -> list[OutboxItem]:
    """The newest items first; ``before`` (an ``updated_at``) pages on to older ones."""
    where: list[str] = []
    params: list[object] = []
    if destination:
        where.append("destination = ?")
        params.append(destination)
    if before is not None:
        where.append("updated_at < ?")
        params.append(before)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    rows = store.query(f"SELECT {_COLUMNS} FROM outbox {clause}ORDER BY updated_at DESC LIMIT ?",
                       (*params, limit))
    return [_item(r) for r in rows]


def destinations(store: StateStore) -> list[str]:
    """Every destination that has an item, by name."""
    return [str(r[0]) for r in store.query("SELECT DISTINCT destination FROM outbox ORDER BY destination")]


@dataclass
class OutboxVersion:
    version: int
    action: str
    payload: JsonValue
    updated_at: float


def versions(store: StateStore, item_ids: list[str]) -> dict[str, list[OutboxVersion]]:
    """The earlier versions of each item (oldest first), for items updated in place."""
    if not item_ids:
        return {}
    marks = ", ".join("?" for _ in item_ids)
    rows = store.query(
        f"SELECT item_id, version, action, payload, updated_at FROM outbox_versions WHERE item_id IN ({marks}) "
        "ORDER BY item_id, version",
        tuple(item_ids),
    )
    found: dict[str, list[OutboxVersion]] = {}
    for r in rows:
        found.setdefault(as_str(r[0], "outbox_versions.item_id"), []).append(OutboxVersion(
            as_int(r[1], "outbox_versions.version"), as_str(r[2], "outbox_versions.action"),
            json.loads(as_str(r[3], "outbox_versions.payload")), as_float(r[4], "outbox_versions.updated_at")))
    return found
