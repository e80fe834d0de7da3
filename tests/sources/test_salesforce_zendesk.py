"""Salesforce and Zendesk against local fakes of their APIs."""

from __future__ import annotations

from typing import Any

import pytest

from opsloop.sources import SourceAuthError, SourceError

from ._fake import Reply
from .fake_salesforce import SalesforceFake
from .fake_zendesk import ZendeskFake


@pytest.fixture
def sf(proj: Any) -> Any:
    fake = SalesforceFake()
    fake.batch = 2
    for i in range(1, 6):
        fake.put("Account", f"001{i}", Name=f"Acme {i}", Industry="Tech", BillingAddress={"city": "Oslo"})
    fake.put("Contact", "0031", Email="a@acme.test", AccountId="0011")
    proj.env(SF_ID="cid", SF_SECRET="csecret", SF_REFRESH="rtok")
    proj.source("sfdc", f"""\
        type: salesforce
        login_url: {fake.url}
        client_id_env: SF_ID
        client_secret_env: SF_SECRET
        objects: [Account, Contact]
        retry_attempts: 3
        """)
    yield fake
    fake.close()


def test_salesforce_full_then_incremental_with_deletes(proj: Any, sf: SalesforceFake) -> None:
    result = proj.pull("sfdc")
    assert result.status == "succeeded"
    assert result.run.streams["Account"]["rows"] == 5
    assert proj.sql("SELECT name, industry FROM sfdc.account WHERE id = '0013'") == [("Acme 3", "Tech")]
    cols = {r[0] for r in proj.sql("SELECT column_name FROM information_schema.columns "
                                   "WHERE table_schema = 'sfdc' AND table_name = 'account'")}
    assert "billing_address" not in cols  # compound fields are not selectable in bulk SOQL
    queries = [r for r in sf.log if r.path.endswith("/queryAll")]
    assert queries[0].arg("q").startswith("SELECT Id, Name, Industry, IsDeleted, SystemModstamp FROM Account")
    assert len(sf.requests_to("/query/01g")) == 2  # nextRecordsUrl followed
    sf.log.clear()
    sf.put("Account", "0012", Industry="Retail")
    sf.put("Account", "0014", IsDeleted=True)
    result = proj.pull("sfdc")
    q = next(r for r in sf.log if r.path.endswith("/queryAll")).arg("q")
    assert "WHERE SystemModstamp >= 2023-11-14T22" in q  # cursor minus the 5-minute lag
    assert proj.sql("SELECT industry FROM sfdc.account WHERE id = '0012'") == [("Retail",)]
    assert proj.sql("SELECT is_deleted FROM sfdc.account WHERE id = '0014'") == [(True,)]
    assert [e.payload["id"] for e in proj.events("salesforce.account.deleted")] == ["0014"]
    upd = {e.payload["id"]: e.payload["changed"] for e in proj.events("salesforce.account.updated")}
    assert upd["0012"]["industry"] == {"old": "Tech", "new": "Retail"}
    assert proj.sql("SELECT count(*), count(DISTINCT id) FROM sfdc.account") == [(5, 5)]


def test_salesforce_refresh_token_flow_and_expired_session(proj: Any, sf: SalesforceFake) -> None:
    (proj.root / "sources" / "sfdc.yml").write_text(
        (proj.root / "sources" / "sfdc.yml").read_text() + "refresh_token_env: SF_REFRESH\n")
    proj.pull("sfdc")
    # the session expires mid-run: the connector refreshes once and carries on
    sf.inject.append((lambda r: r.path.endswith("/describe"), Reply(
        401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])))
    result = proj.pull("sfdc")
    assert result.status == "succeeded"
    grants = [r.body.decode() for r in sf.requests_to("/oauth2/token")]
    assert all("grant_type=refresh_token" in g for g in grants) and len(grants) == 3


def test_salesforce_reserve_stops_partial_and_resumes(proj: Any, sf: SalesforceFake) -> None:
    sf.max_requests, sf.used = 100, 87  # 13 left; the reserve is 10% = 10
    result = proj.pull("sfdc")
    assert result.status == "partial"
    msg = result.run.message or ""
    assert "Salesforce has 10 of 100 daily API requests left" in msg and "resumes at" in msg
    got = proj.sql("SELECT count(*) FROM sfdc.account")[0][0]
    assert got == 2
    sf.used = 0
    result = proj.pull("sfdc")
    assert result.status == "succeeded"
    assert proj.sql("SELECT count(*), count(DISTINCT id) FROM sfdc.account") == [(5, 5)]
    assert proj.sql("SELECT count(*) FROM sfdc.contact") == [(1,)]


def test_salesforce_crash_and_schema_change(proj: Any, sf: SalesforceFake) -> None:
    proj.pull("sfdc")
    sf.put("Account", "0011", NumberOfEmployees=12)
    sf.put("Account", "0015", NumberOfEmployees=40)
    sf.put("Account", "0013", Name="Acme Three")
    fail = Reply(503, [{"message": "Server unavailable", "errorCode": "SERVER_UNAVAILABLE"}], {"Retry-After": "0"})
    for _ in range(3):
        sf.inject.append((lambda r: "/query/01g" in r.path, fail))
    with pytest.raises(SourceError, match="Salesforce still answered HTTP 503 after retrying \\(SERVER_UNAVAILABLE"):
        proj.pull("sfdc")
    assert proj.sql("SELECT name FROM sfdc.account WHERE id = '0013'") == [("Acme 3",)]
    result = proj.pull("sfdc")
    assert result.status == "succeeded"
    assert proj.sql("SELECT number_of_employees FROM sfdc.account WHERE id IN ('0011', '0015') ORDER BY id") == [
        (12,), (40,)]
    assert proj.sql("SELECT name FROM sfdc.account WHERE id = '0013'") == [("Acme Three",)]


def test_salesforce_bad_credentials(proj: Any, sf: SalesforceFake) -> None:
    sf.client_secret = "rotated"
    with pytest.raises(SourceAuthError) as info:
        proj.pull("sfdc")
    assert str(info.value).startswith("source 'sfdc': Salesforce refused the credentials (HTTP 400: invalid_client: "
                                      "invalid client credentials). Check SF_ID, SF_SECRET")


@pytest.fixture
def zd(proj: Any) -> Any:
    fake = ZendeskFake()
    for i in range(1, 6):
        fake.put("tickets", i, subject=f"Help {i}", status="open", priority=None,
                 tags=["vip"] if i == 1 else [], custom_fields=[{"id": 77, "value": "x"}])
    fake.put("users", 1, name="Ann", email="ann@acme.test", role="end-user")
    fake.put("organizations", 9, name="Acme", deleted_at=None)
    proj.env(ZD_EMAIL="admin@acme.test", ZD_TOKEN="zd_tok")
    proj.source("support", f"""\
        type: zendesk
        base_url: {fake.url}
        email_env: ZD_EMAIL
        token_env: ZD_TOKEN
        page_size: 2
        retry_attempts: 3
        """)
    yield fake
    fake.close()


def test_zendesk_full_incremental_and_deleted(proj: Any, zd: ZendeskFake) -> None:
    result = proj.pull("support")
    assert {k: v["rows"] for k, v in result.run.streams.items()} == {"tickets": 5, "users": 1, "organizations": 1}
    assert proj.sql("SELECT custom_fields->>'$[0].value' FROM support.tickets WHERE id = 1") == [("x",)]
    first = zd.requests_to("/incremental/tickets/cursor.json")
    assert first[0].arg("start_time") == "946684800" and first[1].arg("cursor")
    zd.log.clear()
    zd.put("tickets", 2, status="solved")
    zd.put("tickets", 4, status="deleted")
    result = proj.pull("support")
    assert result.run.streams["tickets"]["rows"] == 2
    assert zd.requests_to("/incremental/tickets/cursor.json")[0].arg("start_time") is None
    assert proj.sql("SELECT status FROM support.tickets WHERE id IN (2, 4) ORDER BY id") == [("solved",), ("deleted",)]
    assert [e.payload["id"] for e in proj.events("zendesk.ticket.deleted")] == ["4"]
    upd = [e.payload for e in proj.events("zendesk.ticket.updated") if e.payload["id"] == 2]
    assert upd[0]["changed"]["status"] == {"old": "open", "new": "solved"}


def test_zendesk_429_retry_after_then_crash_resume(proj: Any, zd: ZendeskFake) -> None:
    import time

    zd.inject.append((lambda r: "tickets" in r.path and r.arg("cursor"), Reply(
        429, {"error": "APIRateLimitExceeded", "description": "Number of allowed API requests per minute exceeded"},
        {"Retry-After": "1"})))
    started = time.monotonic()
    proj.pull("support")
    assert time.monotonic() - started >= 1.0
    for i in range(1, 6):
        zd.put("tickets", i, status="pending")
    for _ in range(3):
        zd.inject.append((lambda r: "tickets" in r.path and len(zd.requests_to("tickets")) > 6, Reply(
            500, {"error": "InternalError"}, {"Retry-After": "0"})))
    with pytest.raises(SourceError, match="Zendesk still answered HTTP 500"):
        proj.pull("support")
    assert proj.sql("SELECT count(*) FROM support.tickets WHERE status = 'pending'") == [(0,)]
    proj.pull("support")
    assert proj.sql("SELECT count(*), count(DISTINCT id) FROM support.tickets WHERE status = 'pending'") == [(5, 5)]


def test_zendesk_schema_change_budget_and_bad_token(proj: Any, zd: ZendeskFake) -> None:
    proj.pull("support")
    zd.put("tickets", 3, satisfaction_rating={"score": "good"}, priority="urgent")
    result = proj.pull("support")
    assert proj.sql("SELECT satisfaction_rating->>'score', priority FROM support.tickets WHERE id = 3") == [
        ("good", "urgent")]
    assert result.drift == []  # priority was all-null before: a new type for an untyped column is no drift
    (proj.root / "sources" / "support.yml").write_text(
        (proj.root / "sources" / "support.yml").read_text() + "max_requests_per_day: 3\n")
    zd.put("users", 2, name="Bo")
    result = proj.pull("support")
    assert result.status == "partial" and "used its budget of 3 requests" in (result.run.message or "")
    (proj.root / "sources" / "support.yml").write_text(
        (proj.root / "sources" / "support.yml").read_text().replace("max_requests_per_day: 3", ""))
    zd.api_token = "revoked"
    with pytest.raises(SourceAuthError) as info:
        proj.pull("support")
    assert "source 'support': Zendesk refused the credentials (HTTP 401: Couldn't authenticate you)" in str(info.value)
    assert "ZD_EMAIL and the API token in ZD_TOKEN" in str(info.value)
