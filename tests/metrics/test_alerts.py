"""Alerts: evaluated after the models they read are rebuilt; one notice per change, then a recovery."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
            assert runner.state("churn_spike").status == "firing"
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
        state = runner.evaluate(alert)
        assert state.status == "firing" and "standard deviations" in str(state.message)
        assert [i.target for i in slack_items(app)] == ["#ops"]
    finally:
        app.close()
