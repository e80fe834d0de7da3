"""Webhook payloads shaped as the example company's senders send them (website, Stripe, the app)."""

from __future__ import annotations

from datetime import UTC, datetime

from .._json import JsonObject
from .people import Person


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


def demo_request(p: Person, at: float) -> JsonObject:
    return {"email": p.email, "name": p.name, "company": p.company, "requested_at": iso(at)}


def subscription(p: Person, at: float, change: str, seq: int) -> JsonObject:
    return {
        "id": f"evt_sub_{change}_{p.key}_{seq}",
        "type": f"customer.subscription.{change}",
        "created": int(at),
        "data": {"object": {"id": f"sub_{p.key}", "customer": p.stripe_customer_id,
                            "metadata": {"email": p.email, "company": p.company}}},
    }


def invoice_paid(p: Person, at: float, amount_cents: int, seq: int) -> JsonObject:
    return {
        "id": f"evt_inv_{p.key}_{seq}",
        "type": "invoice.paid",
        "created": int(at),
        "data": {"object": {"id": f"in_{p.key}_{seq}", "customer": p.stripe_customer_id,
                            "customer_email": p.email, "amount_paid": amount_cents}},
    }


def app_event(p: Person, at: float, kind: str) -> JsonObject:
    return {"type": kind, "occurred_at": iso(at),
            "user": {"id": p.app_user_id, "email": p.email, "phone": p.phone}}
