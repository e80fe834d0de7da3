"""The essay's scenario, end to end, on the example company (`opsloop init --example saas`) served by a real
server, against local stand-ins for Slack (Web API), HubSpot (CRM v3 batch upsert), Zendesk (users
create_or_update_many + job statuses), Stripe's API (the example's Stripe source pulls from it) and an SMTP
server (aiosmtpd). Stripe's and the app's webhooks are signed as those senders sign them.

1. a demo request posts a Slack message with a Claim button;
2. nobody claims it: the same message is updated when the SLA (15 min, ~2 s here by time_scale) passes;
3. the buyer purchases: the time-to-buy percentile is computed (the time_to_buy model) and announced;
4. a dashboard metric moves within a second of the purchase;
5. the buyer enters the active_customers segment and gets exactly one personalised email;
6. the buyer edits their phone in the app: the app outranks the CRM and the support tool, so the new
   phone reaches HubSpot and Zendesk, exactly once each (before, the CRM's own phone was never echoed back);
7. a later phone edit in the CRM (ranked below the app) changes nothing and sends nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsloop.demo import payloads
from opsloop.demo.history import build_history, load_history
from opsloop.demo.people import Person
from opsloop.events.signatures import SignedRequest, make_preset
from opsloop.project.scaffold import init_project

from ..conftest import ServerThread, free_port, make_app, wait_for
from ..sources.fake_stripe import StripeFake
from ..syncs.conftest import FakeServer
from ..syncs.fakes import FakeHubSpot, FakeZendesk
from ..workflows.fake_slack import TOKEN as SLACK_TOKEN
from ..workflows.fake_slack import FakeSlack

SLA_SECONDS = 2.0
GRACE = Person(key=424242, name="Grace Hopper", email="grace@hooli.example", company="Hooli",
               phone="+1 415 555 0142", stripe_customer_id="cus_grace", app_user_id="usr_grace")
"""In seeds/crm_contacts.csv (phone +1 415 555 0100) and seeds/support_users.csv (+1 415 555 0199)."""


class Inbox:
    """aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        return [m for rcpt, m in self.messages if address in rcpt]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    from aiosmtpd.controller import Controller

    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


class Scenario:
    def __init__(self, srv: ServerThread) -> None:
        self.srv = srv
        self.api = srv.api()
        self.project = srv.app.project

    def send(self, endpoint: str, payload: dict[str, Any]) -> str:
        """POST a webhook signed as its sender signs it; returns the accepted event id."""
        cfg = self.project.endpoints[endpoint]
        preset = make_preset(cfg.signature, self.project.secret(cfg.signature.secret_env or ""))
        body = json.dumps(payload).encode()
        headers = {"content-type": "application/json"}
        headers.update(preset.sign(SignedRequest(body, {"webhook-id": f"msg_{time.time_ns()}"}), time.time()))
        answer = httpx.post(f"{self.srv.url}/hooks/{endpoint}", content=body, headers=headers, timeout=10)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    def query(self, sql: str) -> list[dict[str, Any]]:
        answer = self.api.post("/api/query", json={"sql": sql})
        if answer.status_code != 200:
            return []
        body = answer.json()
        return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]

    def purchases_today(self) -> float:
        answer = self.api.get("/api/metrics/purchases", params={"grain": "day", "since": "2d"})
        assert answer.status_code == 200, answer.text
        rows = answer.json()["rows"]
        return float(rows[-1][-1] or 0) if rows else 0.0


def _writes(server: FakeServer, path: str, email: str) -> list[dict[str, Any]]:
    """The records for ``email`` in every write request to ``path`` the fake received."""
    found = []
    for req in list(server.requests):
        if req.method == "POST" and req.path.startswith(path):
            body = req.json()
            for item in body.get("inputs") or body.get("users") or []:
                if item.get("id") == email or item.get("email") == email or (
                        item.get("properties") or {}).get("email") == email:
                    found.append(item)
    return found


@pytest.mark.slow
def test_the_example_company_scenario(tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, smtp_port = smtp
    root = tmp_path / "acme"
    init_project(root, example="saas")
    hubspot, zendesk = FakeHubSpot(), FakeZendesk()
    hubspot_server, zendesk_server = FakeServer(hubspot), FakeServer(zendesk)
    stripe = StripeFake()
    stripe.put("customers", "cus_grace", email=GRACE.email, name=GRACE.name)
    stripe.put("subscriptions", "sub_grace", customer="cus_grace", status="active")
    with FakeSlack() as slack:
        with (root / ".env").open("a") as env:
            env.write(f"SLACK_BOT_TOKEN={SLACK_TOKEN}\nSLACK_API_URL={slack.url}\nSLACK_PACE=0\n"
                      f"HUBSPOT_SYNC_TYPE=hubspot\nHUBSPOT_TOKEN={hubspot.token}\nHUBSPOT_API_URL={hubspot_server.url}\n"
                      f"ZENDESK_SYNC_TYPE=zendesk\nZENDESK_API_URL={zendesk_server.url}\n"
                      "ZENDESK_EMAIL=agent@example.com\nZENDESK_API_TOKEN=zd-test\n"
                      f"SMTP_HOST=127.0.0.1\nSMTP_PORT={smtp_port}\nSMTP_TLS=none\nSMTP_FROM=sam@example.com\n"
                      f"STRIPE_API_URL={stripe.url}\nSTRIPE_SECRET_KEY={stripe.key}\n"
                      "OPSLOOP_MODELS_DEBOUNCE=200ms\n")
        app = make_app(root, time_scale=SLA_SECONDS / 900, load_interval=0.1)
        rows, _ = build_history(days=60)
        load_history(app.warehouse, rows)
        try:
            with ServerThread(app) as srv:
                run_scenario(Scenario(srv), slack, hubspot_server, zendesk_server, inbox)
                # The example's Stripe source pulls from (a stand-in for) Stripe's API.
                pulled = srv.api().post("/api/sources/stripe/pull", timeout=120)
                assert pulled.status_code == 200 and pulled.json()["status"] == "succeeded", pulled.text
                customers = Scenario(srv).query("select id, email from stripe.customers")
                assert customers == [{"id": "cus_grace", "email": GRACE.email}]
        finally:
            stripe.close()
            hubspot_server.close()
            zendesk_server.close()


def run_scenario(s: Scenario, slack: FakeSlack, hubspot: FakeServer, zendesk: FakeServer, inbox: Inbox) -> None:
    # The history's models, the identity baseline (the CRM and support seeds), and syncs reset to it.
    built = s.api.post("/api/models/build", json={}, timeout=120)
    assert built.status_code == 200, built.text
    wait_for(lambda: s.query("select count(*) as n from identity.golden_records where email = 'grace@hooli.example'"
                             " and phone__source = 'crm'"), 60, interval=0.2, what="the identity baseline")
    for name in ("hubspot_contacts", "zendesk_users"):
        reset = s.api.post(f"/api/syncs/{name}/run", json={"reset": True}, timeout=60)
        assert reset.status_code == 200, reset.text

    # 1. A demo request: a Slack message with a Claim button in #sales.
    request_id = s.send("demo_request", payloads.demo_request(GRACE, time.time() - 3 * 86400))
    post = wait_for(lambda: [p for p in slack.posts() if "Grace Hopper" in str(p.get("text"))], 15,
                    what="the demo request's Slack message")[0]
    message = wait_for(lambda: [m for m in slack.all_messages() if "Grace Hopper" in str(m.get("text"))], 5)[0]
    assert "Claim" in json.dumps(post.get("blocks")), post

    # 2. Nobody claims it: after the SLA the same message (same ts) says so.
    started = time.monotonic()
    updated = wait_for(lambda: [u for u in slack.method_calls("chat.update")
                                if u.get("ts") == message["ts"] and "SLA breached" in str(u.get("text"))],
                       SLA_SECONDS + 15, interval=0.05, what="the Slack message updated on SLA breach")
    assert len(updated) == 1
    assert time.monotonic() - started >= SLA_SECONDS * 0.5
    assert len([p for p in slack.posts() if "Grace Hopper" in str(p.get("text"))]) == 1, "updated, not reposted"
    breach = wait_for(lambda: s.query("select payload from raw.events where name = 'sla.breached'"), 10)
    assert json.loads(breach[0]["payload"])["trigger_event"] == request_id

    # 3 + 4. The purchase: a live metric moves within a second, and the percentile is announced.
    before = s.purchases_today()
    signed_up = payloads.app_event(GRACE, time.time(), "user.signed_up")
    signed_up["user"] = {"id": GRACE.app_user_id, "email": GRACE.email}  # no phone in the app yet
    s.send("app", signed_up)
    s.send("stripe", payloads.subscription(GRACE, time.time(), "created", 0))
    sent_at = time.monotonic()
    wait_for(lambda: s.purchases_today() >= before + 1, 1.0, interval=0.02,
             what="the purchases metric to count the purchase within a second")
    assert time.monotonic() - sent_at <= 1.0
    s.send("stripe", payloads.invoice_paid(GRACE, time.time(), 9900, 0))
    announce = wait_for(lambda: [p for p in slack.posts() if "bought" in str(p.get("text"))
                                 and "Grace Hopper" in str(p.get("text"))], 60, interval=0.1,
                        what="the purchase workflow's Slack message")[0]
    row = s.query("select hours_to_buy, percentile_among_buyers from time_to_buy where email = 'grace@hooli.example'")
    assert row and 71 < row[0]["hours_to_buy"] < 73, row
    assert f"percentile {row[0]['percentile_among_buyers']:.0f} among buyers" in announce["text"], announce

    # 5. Entering active_customers sends one personalised email.
    mail = wait_for(lambda: inbox.to(GRACE.email), 60, interval=0.1, what="the welcome email")
    assert mail[0]["Subject"] == "Welcome aboard, Grace!"
    assert "Hi Grace," in mail[0].get_payload() and "at Hooli" in mail[0].get_payload()

    # 6. The phone hierarchy: so far the golden phone is the CRM's (never sent back to HubSpot) ...
    assert _writes(hubspot, "/crm/v3/objects/contacts/batch", GRACE.email) == []
    # ... then the app (ranked first) changes it: it reaches the CRM and the support tool, once each.
    s.send("app", payloads.app_event(GRACE, time.time(), "user.updated"))
    wanted = "+14155550142"
    wait_for(lambda: _writes(hubspot, "/crm/v3/objects/contacts/batch", GRACE.email)
             and _writes(zendesk, "/api/v2/users/create_or_update_many", GRACE.email), 60, interval=0.1,
             what="the new phone in HubSpot and Zendesk")
    wait_for(lambda: s.query("select 1 from raw.events where name = 'sync.zendesk_users.completed'"), 10)
    crm = _writes(hubspot, "/crm/v3/objects/contacts/batch", GRACE.email)
    support = _writes(zendesk, "/api/v2/users/create_or_update_many", GRACE.email)
    assert [c["properties"].get("phone") for c in crm] == [wanted], crm
    assert [u.get("phone") for u in support] == [wanted], support
    golden = s.query("select phone, phone__source from identity.golden_records where email = 'grace@hooli.example'")
    assert golden == [{"phone": wanted, "phone__source": "app"}]

    # 7. A later edit in a lower-ranked system (the CRM) does not override the app's phone: nothing is sent.
    seeds = s.project.root / "seeds" / "crm_contacts.csv"
    old_row = "999,grace@hooli.example,Grace,Hopper,+1 415 555 0100,Hooli,2026-09-01 10:00:00"
    assert old_row in seeds.read_text()
    seeds.write_text(seeds.read_text().replace(old_row, old_row.replace("0100", "0177").replace("09-01", "11-24")))
    rebuilt = s.api.post("/api/models/build", json={"select": ["crm_contacts", "app_users"]}, timeout=120)
    assert rebuilt.status_code == 200, rebuilt.text
    wait_for(lambda: s.query("select 1 from identity.field_values where system = 'crm' and field = 'phone' "
                             "and value like '%0177'"), 30, interval=0.1, what="the identity build to see the CRM edit")
    for name in ("hubspot_contacts", "zendesk_users"):
        run = s.api.post(f"/api/syncs/{name}/run", json={}, timeout=60)
        assert run.status_code == 200 and run.json()["sent"] == 0, run.text
    assert len(_writes(hubspot, "/crm/v3/objects/contacts/batch", GRACE.email)) == 1
    assert len(_writes(zendesk, "/api/v2/users/create_or_update_many", GRACE.email)) == 1
    golden = s.query("select phone, phone__source from identity.golden_records where email = 'grace@hooli.example'")
    assert golden == [{"phone": wanted, "phone__source": "app"}]
