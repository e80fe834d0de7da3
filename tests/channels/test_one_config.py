"""One outbound configuration per channel: ``channels:`` in opsloop.yml reaches a real SMTP server (STARTTLS,
AUTH, a self-signed certificate trusted through ``ca_file``) from a workflow step, a metric alert and a sync
alert, and a Slack Web API stand-in from a workflow step, the slack destination and a metric alert."""

from __future__ import annotations

import asyncio
import shutil
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from opsloop import outbox
from opsloop.app import App
from opsloop.project.scaffold import init_project
from opsloop.syncs import SyncRunner
from opsloop.workflows import runs

from ..conftest import make_app
from ..metrics.conftest import seed_app, write_example
from ..syncs.conftest import FakeServer, Request
from ..workflows.fake_slack import TOKEN, FakeSlack
from .conftest import PASSWORD, USER, MailServer


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def project(root: Path, channels: str, env: dict[str, str]) -> Path:
    init_project(root)
    write_example(root)
    with (root / "opsloop.yml").open("a", encoding="utf-8") as f:
        f.write("\n" + textwrap.dedent(channels).lstrip())
    with (root / ".env").open("a", encoding="utf-8") as f:
        f.write("".join(f"\n{k}={v}" for k, v in env.items()) + "\n")
    return root


async def until(condition: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def completed_runs(app: App, workflow: str) -> list[runs.RunRow]:
    return [r for r in runs.list_runs(app.store, workflow=workflow, limit=100) if r.status in ("completed", "failed")]


@pytest.fixture
def rejecting_api() -> Iterator[FakeServer]:
    """An HTTP API that refuses every batch (422), so a sync goes from healthy to failing."""
    def handle(request: Request) -> tuple[int, dict[str, str], Any]:
        return 422, {}, {"error": "this endpoint refuses everything"}

    server = FakeServer(handle)
    yield server
    server.close()


def test_one_smtp_config_serves_workflows_metric_alerts_and_sync_alerts(
        tmp_path: Path, mail_server: MailServer, rejecting_api: FakeServer) -> None:
    root = project(tmp_path / "shop", f"""
        channels:
          smtp:
            host: 127.0.0.1
            port: {mail_server.port}
            security: starttls
            username_env: OPS_MAIL_USER
            password_env: OPS_MAIL_PASSWORD
            from: ops@shop.example
            ca_file: certs/smtp-ca.pem
            timeout: 10
    """, {"OPS_MAIL_USER": USER, "OPS_MAIL_PASSWORD": PASSWORD})
    (root / "certs").mkdir()
    shutil.copy(mail_server.cert, root / "certs" / "smtp-ca.pem")
    write(root, "workflows/welcome.yml", """
        on: signup.created
        steps:
          - id: welcome
            email.send:
              to: "{{ event.data.email }}"
              subject: "Welcome, {{ event.data.name }}"
              body: "Hello {{ event.data.name }}."
    """)
    write(root, "syncs/crm.yml", f"""
        table: analytics.customers
        key: customer_id
        destination: {{type: webhook, url: "{rejecting_api.url}/contacts"}}
        mapping: {{name: name, plan: plan}}
        alert: {{type: email, to: data@shop.example}}
    """)
    app = make_app(root, time_scale=0.01)
    seed_app(app)

    async def scenario() -> None:
        await app.start()
        try:
            await app.emit("signup.created", {"email": "ada@example.com", "name": "Ada"})
            [run] = await until(lambda: completed_runs(app, "welcome"), "the welcome run")
            assert run.status == "completed", run.error
            await until(lambda: len(mail_server.messages) == 1, "the workflow's email")
            now = datetime.now(UTC).replace(tzinfo=None)
            await asyncio.to_thread(app.warehouse.execute, "UPDATE analytics.customers SET churned_at = ? "
                                    "WHERE customer_id IN (1, 2, 4)", (now,))
            await app.emit("model.built", {"model": "customers", "relation": "analytics.customers", "rows": 5,
                                           "changed_rows": 3})
            await until(lambda: len(mail_server.messages) == 2, "the metric alert's email")
            result = await asyncio.to_thread(SyncRunner(app).run, "crm")
            assert (result.failed, result.sent) == (5, 0), result.error
        finally:
            await app.stop()

    try:
        asyncio.run(scenario())
    finally:
        app.close()
    welcome, alert, sync_alert = mail_server.messages
    assert welcome["Subject"] == "Welcome, Ada" and welcome["To"] == "ada@example.com"
    assert alert["Subject"].strip().startswith("[opsloop] Alert churn_spike: ")
    assert alert["To"] == "founders@example.com"
    assert sync_alert["Subject"] == "opsloop sync crm is failing" and sync_alert["To"] == "data@shop.example"
    assert {m["From"] for m in mail_server.messages} == {"ops@shop.example"}  # channels.smtp.from, everywhere
    assert mail_server.logins == [USER] * 3 and mail_server.tls_sessions == 3  # STARTTLS + AUTH each time
    assert outbox.list_items(app.store, "email") == []


def test_one_slack_config_serves_workflows_the_destination_and_metric_alerts(tmp_path: Path) -> None:
    channels = {"C0SALES001": "sales", "C0ALERTS01": "sales-alerts", "C0GENERAL01": "general"}
    with FakeSlack(channels=channels) as slack:
        root = project(tmp_path / "shop", f"""
            channels:
              slack:
                token_env: OPS_SLACK_TOKEN
                api_url: {slack.url}
                timeout: 5
                pace: 0
        """, {"OPS_SLACK_TOKEN": TOKEN})
        write(root, "workflows/announce.yml", """
            on: signup.created
            steps:
              - id: notify
                slack.post: {channel: "#general", text: "New signup {{ event.data.email }}"}
        """)
        write(root, "syncs/signups.yml", """
            table: analytics.customers
            key: customer_id
            destination: {type: slack, channel: "#sales", text: "Customer {{ name }} on {{ plan }}"}
            mapping: {name: name, plan: plan}
            mode: insert
        """)
        app = make_app(root, time_scale=0.01)
        seed_app(app)

        async def scenario() -> None:
            await app.start()
            try:
                await app.emit("signup.created", {"email": "ada@example.com"})
                [run] = await until(lambda: completed_runs(app, "announce"), "the announce run")
                assert run.status == "completed", run.error
                # no SQLs today: the few_sqls alert fires to #sales-alerts
                await app.emit("model.built", {"model": "leads", "relation": "analytics.leads", "rows": 6,
                                               "changed_rows": 6})
                await until(lambda: slack.messages["C0ALERTS01"], "the metric alert's message")
                result = await asyncio.to_thread(SyncRunner(app).run, "signups")
                assert (result.status, result.sent) == ("ok", 5), result.error
            finally:
                await app.stop()

        try:
            asyncio.run(scenario())
        finally:
            app.close()
        posted = {cid: [m["text"] for m in msgs] for cid, msgs in slack.messages.items()}
        assert posted["C0GENERAL01"] == ["New signup ada@example.com"]
        assert sorted(posted["C0SALES001"]) == sorted(
            ["Customer Ada on pro", "Customer Grace on team", "Customer Linus on pro", "Customer Edsger on team",
             "Customer Barbara on pro"])
        [alert] = posted["C0ALERTS01"]
        assert alert.startswith("Alert few_sqls: ")
        assert outbox.list_items(app.store, "slack") == []
        # every call carried the one token, to the one API root
        assert len(slack.posts()) == 7
