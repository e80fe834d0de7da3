"""Sample history for the example company: months of demo requests, purchases, invoices, churns and
logins, loaded straight into the warehouse's ``raw.events`` (as an initial backfill would be), so that
the dashboards have a past and no workflow fires for it."""

from __future__ import annotations

import json
import random
import time
from typing import TypedDict

import pyarrow as pa

from .._json import JsonObject
from ..events.loader import RAW_TABLE, RawEventLoader
from ..warehouse import Warehouse
from . import payloads
from .people import Person, make_person

DAY = 86400.0
PRICES = [4900, 9900, 19900]


class HistoryRow(TypedDict):
    """One sample event for ``raw.events``."""

    endpoint: str
    name: str
    at: float
    payload: JsonObject


def build_history(days: int = 120, seed: int = 11, now: float | None = None) -> tuple[list[HistoryRow],
                                                                                       list[Person]]:
    """Rows for ``raw.events`` and the people they mention."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    start = now - days * DAY
    rows: list[HistoryRow] = []
    people: list[Person] = []

    def add(endpoint: str, name: str, at: float, payload: JsonObject) -> None:
        rows.append({"endpoint": endpoint, "name": name, "at": at, "payload": payload})

    key = 0
    for day in range(days):
        for _ in range(rng.randint(2, 6)):
            key += 1
            person = make_person(rng, key)
            people.append(person)
            at = start + day * DAY + rng.uniform(8, 18) * 3600
            add("demo_request", "demo_request.created", at, payloads.demo_request(person, at))
            if not person.company or rng.random() > 0.35:
                continue
            bought = at + rng.uniform(0.5, 30) * DAY
            if bought >= now:
                continue
            add("stripe", "stripe.customer.subscription.created", bought,
                payloads.subscription(person, bought, "created", 0))
            price = rng.choice(PRICES)
            month, paid = 0, bought
            churned = bought + rng.uniform(20, 200) * DAY if rng.random() < 0.25 else None
            while paid < now and (churned is None or paid < churned):
                add("stripe", "stripe.invoice.paid", paid, payloads.invoice_paid(person, paid, price, month))
                month += 1
                paid += 30 * DAY
            if churned is not None and churned < now:
                add("stripe", "stripe.customer.subscription.deleted", churned,
                    payloads.subscription(person, churned, "deleted", 1))
            elif rng.random() < 0.7:
                for _ in range(rng.randint(1, 8)):
                    login = now - rng.uniform(0, 47) * 3600
                    add("app", "app.user.login", login, payloads.app_event(person, login, "user.login"))
    rows.sort(key=lambda r: r["at"])
    return rows, people


def load_history(warehouse: Warehouse, rows: list[HistoryRow]) -> int:
    """Write ``rows`` into ``raw.events`` with negative sequence numbers (they precede the live log)."""
    RawEventLoader(warehouse).ensure_table()
    n = len(rows)
    table = pa.table(
        {
            "event_id": [f"sample_{i:07d}" for i in range(n)],
            "seq": pa.array([i - n for i in range(n)], pa.int64()),
            "endpoint": [r["endpoint"] for r in rows],
            "name": [r["name"] for r in rows],
            "received_at": pa.array([int(r["at"] * 1_000_000) for r in rows], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")),
            "idempotency_key": pa.array([None] * n, pa.string()),
            "source": ["sample"] * n,
            "payload": [json.dumps(r["payload"]) for r in rows],
        }
    )
    warehouse.execute(f"DELETE FROM {RAW_TABLE} WHERE source = 'sample'")
    return warehouse.insert_arrow(RAW_TABLE, table)
