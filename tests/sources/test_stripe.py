"""Stripe against a local fake of its API."""

from __future__ import annotations

from typing import Any

import pytest

from opsloop.sources import SourceAuthError, SourceError

from ._fake import Reply
from .fake_stripe import StripeFake


@pytest.fixture
def st(proj: Any) -> Any:
    fake = StripeFake()
    for i in range(1, 6):
        fake.put("customers", f"cus_{i}", email=f"c{i}@example.com", balance=0,
                 address={"city": "Oslo", "country": "NO"})
    fake.put("subscriptions", "sub_1", customer="cus_1", status="active",
             items={"object": "list", "data": [{"id": "si_1", "price": {"id": "price_1", "unit_amount": 900}}]})
    fake.put("invoices", "in_1", customer="cus_1", amount_due=900, status="paid")
    fake.put("charges", "ch_1", customer="cus_1", amount=900, paid=True)
    proj.env(STRIPE_SECRET_KEY="sk_test_good")
    proj.source("billing", f"""\
        type: stripe
        base_url: {fake.url}
        page_size: 2
        retry_attempts: 3
        """)
    yield fake
    fake.close()


def test_first_full_load(proj: Any, st: StripeFake) -> None:
    result = proj.pull("billing")
    assert result.status == "succeeded"
    assert {k: v["rows"] for k, v in result.run.streams.items()} == {
        "customers": 5, "subscriptions": 1, "invoices": 1, "charges": 1}
    assert proj.sql("SELECT address->>'city', email FROM billing.customers WHERE id = 'cus_3'") == [
        ("Oslo", "c3@example.com")]
    assert proj.sql("SELECT items->'data'->0->'price'->>'unit_amount' FROM billing.subscriptions") == [("900",)]
    pages = st.requests_to("/v1/customers")
    assert [p.arg("starting_after") for p in pages] == [None, "cus_4", "cus_2"]
    assert st.requests_to("/v1/subscriptions")[0].arg("status") == "all"


def test_incremental_from_events_only_changes(proj: Any, st: StripeFake) -> None:
    proj.pull("billing")
    st.log.clear()
    st.put("customers", "cus_2", email="new2@example.com")
    st.put("customers", "cus_9", email="c9@example.com", balance=0)
    st.delete("customers", "cus_5")
    result = proj.pull("billing")
    assert result.run.streams["customers"]["rows"] == 3
    assert not st.requests_to("/v1/customers")  # no re-listing: the events API carries the changes
    ev = st.requests_to("/v1/events")
    assert ev[0].arg("type") == "customer.*" and ev[0].arg("created[gte]") is not None
    assert proj.sql("SELECT email FROM billing.customers WHERE id = 'cus_2'") == [("new2@example.com",)]
    assert proj.sql("SELECT deleted FROM billing.customers WHERE id = 'cus_5'") == [(True,)]
    assert proj.sql("SELECT count(*) FROM billing.customers") == [(6,)]
    updated = proj.events("stripe.customer.updated")
    by_id = {e.payload["id"]: e.payload["changed"] for e in updated}
    assert by_id["cus_2"]["email"] == {"old": "c2@example.com", "new": "new2@example.com"}
    assert [e.payload["id"] for e in proj.events("stripe.customer.created")] == ["cus_9"]
    assert [e.payload["id"] for e in proj.events("stripe.customer.deleted")] == ["cus_5"]


def test_crash_mid_full_load_then_resume(proj: Any, st: StripeFake) -> None:
    fail = Reply(500, {"error": {"message": "An unknown error occurred", "type": "api_error"}}, {"Retry-After": "0"})
    for _ in range(3):
        st.inject.append((lambda r: r.path == "/v1/customers" and r.arg("starting_after") == "cus_2", fail))
    with pytest.raises(SourceError, match=r"Stripe still answered HTTP 500 after retrying \(An unknown error"):
        proj.pull("billing")
    assert proj.sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'billing' "
                    "AND table_name = 'customers'") == [(0,)]
    result = proj.pull("billing")
    assert result.status == "succeeded"
    assert proj.sql("SELECT count(*), count(DISTINCT id) FROM billing.customers") == [(5, 5)]


def test_schema_change_type_widened(proj: Any, st: StripeFake) -> None:
    proj.pull("billing")
    st.put("customers", "cus_1", balance=12.75, preferred_locales=["nb"])
    result = proj.pull("billing")
    assert "customers.balance: widened BIGINT -> DOUBLE" in result.drift
    assert proj.sql("SELECT balance, preferred_locales->>'$[0]' FROM billing.customers WHERE id = 'cus_1'") == [
        (12.75, "nb")]


def test_request_budget_stop_keeps_cursor_and_resumes(proj: Any, st: StripeFake) -> None:
    (proj.root / "sources" / "billing.yml").write_text(
        (proj.root / "sources" / "billing.yml").read_text() + "max_requests_per_day: 3\nobjects: [customers]\n")
    result = proj.pull("billing")
    assert result.status == "partial"
    assert "used its budget of 3 requests for today" in (result.run.message or "")
    assert proj.sql("SELECT count(*) FROM billing.customers") == [(4,)]
    (proj.root / "sources" / "billing.yml").write_text(
        (proj.root / "sources" / "billing.yml").read_text().replace("max_requests_per_day: 3", ""))
    st.log.clear()
    result = proj.pull("billing")
    assert result.status == "succeeded"
    assert [p.arg("starting_after") for p in st.requests_to("/v1/customers")] == ["cus_2"]
    assert proj.sql("SELECT count(*), count(DISTINCT id) FROM billing.customers") == [(5, 5)]


def test_rate_limited_then_ok(proj: Any, st: StripeFake) -> None:
    st.inject.append((lambda r: r.path == "/v1/invoices", Reply(429, {"error": {
        "message": "Request rate limit exceeded.", "type": "invalid_request_error", "code": "rate_limit"}},
        {"Retry-After": "1"})))
    result = proj.pull("billing")
    assert result.status == "succeeded" and result.run.streams["invoices"]["rows"] == 1
    assert len(st.requests_to("/v1/invoices")) == 2


def test_revoked_key(proj: Any, st: StripeFake) -> None:
    proj.pull("billing")
    st.key = "sk_test_rolled"
    with pytest.raises(SourceAuthError) as info:
        proj.pull("billing")
    assert str(info.value).startswith("source 'billing': Stripe refused the credentials (HTTP 401: Invalid API "
                                      "Key provided: sk_test_****good)")
