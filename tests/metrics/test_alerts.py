"""Alerts: evaluated after the models they read are rebuilt; one notice per change, then a recovery."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from opsloop import outbox
from opsloop.app import App

from ..conftest import free_port, make_app, run_cli
from .conftest import seed_app


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


async def wait_until(condition: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {condition}")


def slack_items(app: App) -> list[outbox.OutboxItem]:
    return outbox.list_items(app.store, "slack")


def test_threshold_alerts_notify_once_and_recover(example_dir: Path) -> None:
    inbox = Inbox()
    port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    with (example_dir / ".env").open("a") as env:
        env.write(f"OPSLOOP_SMTP_HOST=127.0.0.1\nOPSLOOP_SMTP_PORT={port}\nOPSLOOP_SMTP_FROM=alerts@shop.test\n")
    app = make_app(example_dir)
    seed_app(app)
    runner = app.services["metrics_alerts"]
    now = datetime.now(UTC).replace(tzinfo=None)

    async def built(model: str) -> None:
        await app.emit("model.built", {"model": model, "relation": f"analytics.{model}", "rows": 1,
                                       "changed_rows": 1})

    async def scenario() -> None:
        await app.start()
        try:
            # no SQLs today: below 5, one Slack notice (recorded in the outbox: no SLACK_BOT_TOKEN)
            await built("leads")
            await wait_until(lambda: runner.state("few_sqls").status == "firing")
            await built("leads")
            await wait_until(lambda: runner.state("few_sqls").evaluated_at > runner.state("few_sqls").changed_at)
            items = slack_items(app)
            assert len(items) == 1
            assert items[0].target == "#sales-alerts"
            assert items[0].payload["text"].startswith("Alert few_sqls: Sales-qualified leads for ")
            assert items[0].payload["text"].endswith("is 0 < 5")
            # five SQLs land: a recovery notice, once
            for i in range(5):
                app.warehouse.execute("INSERT INTO analytics.leads VALUES (?, 'web', 'sql', ?, ?)",
                                      (100 + i, now, now))
            await built("leads")
            await wait_until(lambda: runner.state("few_sqls").status == "ok")
            texts = [i.payload["text"] for i in slack_items(app)]
            assert len(texts) == 2 and texts[0].startswith("Recovered few_sqls") and texts[0].endswith("is 5")
            # three churns today: more than 2, an email
            app.warehouse.execute("UPDATE analytics.customers SET churned_at = ? WHERE customer_id IN (1, 2, 4)",
                                  (now,))
            await built("customers")
            await wait_until(lambda: len(inbox.messages) == 1)
            mail = inbox.messages[0]
            assert mail.rcpt_tos == ["founders@example.com"]
            parsed = email.message_from_bytes(mail.content, policy=email.policy.default)
            assert parsed["Subject"].strip().startswith("[opsloop] Alert churn_spike: Churned customers for ")
            assert parsed["Subject"].endswith(" is 3 > 2")
            # the email goes out before the alert's new state is saved (a crash between sends it again)
            await wait_until(lambda: runner.state("churn_spike").status == "firing")
        finally:
            await app.stop()

    try:
        asyncio.run(scenario())
    finally:
        smtp.stop()
    listed = run_cli("alerts", cwd=example_dir)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "alert\tmetric\trule\tstatus\tvalue\tperiod"
    assert any(line.startswith("churn_spike\tchurned_customers\tday value > 2\tfiring\t3.0") for line in lines)
    assert any(line.startswith("few_sqls\tdaily_sqls\tday value < 5\tok\t5.0") for line in lines)


def test_anomaly_alert(example_dir: Path) -> None:
    (example_dir / "metrics" / "anomaly.yml").write_text(
        "alerts:\n  - name: order_surge\n    metric: orders\n    grain: day\n    anomaly: 3\n    lookback: 14\n"
        "    notify: {slack: '#ops'}\n")
    app = make_app(example_dir)
    seed_app(app)
    try:
        runner = app.services["metrics_alerts"]
        alert = runner.alerts()["order_surge"]
        assert runner.evaluate(alert).status == "ok"
        now = datetime.now(UTC).replace(tzinfo=None)
        for i in range(30):
            app.warehouse.execute("INSERT INTO analytics.orders VALUES (?, 1, 'pro', 1, ?)", (500 + i, now))
        assert runner.evaluate(alert).status == "ok"  # cached until the model says it was rebuilt
        app.services["metrics"].engine.cache.invalidate({"orders"})  # what the model.built handler does
        state = runner.evaluate(alert)
        assert state.status == "firing" and "standard deviations" in str(state.message)
        assert [i.target for i in slack_items(app)] == ["#ops"]
    finally:
        app.close()


class FakeSlack:
    """Slack's Web API chat.postMessage as its docs describe it: HTTP 200 with {"ok": false, "error"} on a
    refusal, 429 with Retry-After when rate-limited, {"ok": true, "channel", "ts", "message"} otherwise."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs

        self.calls: list[dict[str, Any]] = []
        self.replies: list[tuple[int, dict[str, Any]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                if "json" in self.headers.get("content-type", ""):
                    data = json.loads(body)
                else:
                    data = {k: v[0] for k, v in parse_qs(body).items()}
                fake.calls.append({"path": self.path, "auth": self.headers.get("authorization"), **data})
                if self.headers.get("authorization") != "Bearer xoxb-test":
                    status, reply = 200, {"ok": False, "error": "invalid_auth"}
                elif fake.replies:
                    status, reply = fake.replies.pop(0)
                else:
                    status, reply = 200, {"ok": True, "channel": "C0123", "ts": "1700000000.000100",
                                          "message": {"text": data.get("text")}}
                payload = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=utf-8")
                if status == 429:
                    self.send_header("Retry-After", "3")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_slack_alert_is_retried_after_a_refusal_and_sent_once(example_dir: Path) -> None:
    from opsloop.errors import TerminalDeliveryError, TransientDeliveryError

    slack = FakeSlack()
    with (example_dir / ".env").open("a") as env:
        env.write(f"SLACK_BOT_TOKEN=xoxb-test\nSLACK_API_URL={slack.url}\n")
    app = make_app(example_dir)
    seed_app(app)
    try:
        runner = app.services["metrics_alerts"]
        alert = runner.alerts()["few_sqls"]
        slack.replies = [(200, {"ok": False, "error": "channel_not_found"}),
                         (429, {"ok": False, "error": "ratelimited"})]
        with pytest.raises(TerminalDeliveryError, match="channel_not_found"):
            runner.evaluate(alert)
        assert runner.state("few_sqls").status == "unknown"  # not saved: the next build tries again
        with pytest.raises(TransientDeliveryError) as info:
            runner.evaluate(alert)
        assert info.value.retry_after == 3
        assert runner.evaluate(alert).status == "firing"
        runner.evaluate(alert)
        sent = [c for c in slack.calls if c["path"] == "/api/chat.postMessage"]
        assert len(sent) == 3
        assert sent[-1]["channel"] == "#sales-alerts" and sent[-1]["text"].startswith("Alert few_sqls:")
        assert outbox.list_items(app.store) == []
    finally:
        app.close()
        slack.close()


@pytest.mark.postgres
def test_alert_state_on_a_postgres_state_store(example_dir: Path, pg_url: str) -> None:
    app = make_app(example_dir, state_url=pg_url)
    seed_app(app)
    try:
        runner = app.services["metrics_alerts"]
        alert = runner.alerts()["few_sqls"]
        assert runner.evaluate(alert).status == "firing"
        first = runner.state("few_sqls")
        assert runner.evaluate(alert).changed_at == first.changed_at
        assert len(slack_items(app)) == 1
        app.services["metrics"].record_build("leads", "analytics.leads")  # an upsert, twice
        assert app.services["metrics"].relations()["leads"] == "analytics.leads"
    finally:
        app.close()
