"""Triggers inside a running App (model.built, events, cron), events and warehouse run tables, alerts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from opsloop import outbox

from .conftest import SyncProject, people
from .fakes import FakeSlack
from .test_webhook_sync import SECRET, Receiver


def _outbox_sync(sp: SyncProject, name: str, trigger: str) -> None:
    sp.write_sync(name, f"""
        model: customers
        key: email
        destination: {{type: outbox}}
        mapping: {{phone: phone}}
        trigger: {trigger}
    """)


async def _until(condition: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {condition}")


def test_model_built_event_and_cron_triggers(sp: SyncProject) -> None:
    sp.customers(people(3))
    _outbox_sync(sp, "after_build", "{after_build: true}")
    _outbox_sync(sp, "on_segment", "{event: segment.entered}")
    _outbox_sync(sp, "every_second", '{cron: "* * * * * *"}')
    _outbox_sync(sp, "manual", "manual")

    async def scenario() -> None:
        app = sp.app()
        await app.start()
        try:
            def sent(label: str) -> int:
                return len(outbox.list_items(app.store, f"sync:{label}"))

            await _until(lambda: sent("every_second") == 3)
            assert sent("after_build") == 0 and sent("on_segment") == 0
            await app.emit("model.built", {"model": "other", "relation": "main.other", "rows": 1, "changed_rows": 1})
            await app.emit("model.built", {"model": "customers", "relation": "main.customers", "rows": 3,
                                           "changed_rows": 3})
            await _until(lambda: sent("after_build") == 3)
            await app.emit("segment.entered", {"segment": "vip", "person_id": "p1", "profile": {}})
            await _until(lambda: sent("on_segment") == 3)
            await app.services["syncs"].wait_idle()
            assert sent("manual") == 0
            completed = await asyncio.to_thread(app.store.list_events, name="sync.after_build.completed")
            assert completed and completed[0].payload["status"] == "ok" and completed[0].payload["sent"] == 3
            runs = await asyncio.to_thread(
                app.warehouse.query, "SELECT trigger, status, sent FROM opsloop_sync.runs WHERE sync = 'after_build'")
            assert runs.rows == [("model.built:customers", "ok", 3)]
        finally:
            await app.stop()

    asyncio.run(scenario())


def test_row_failed_events_results_table_and_one_alert_per_status_change(sp: SyncProject, fake_server: Any) -> None:
    receiver = Receiver()
    hooks = fake_server(receiver)
    slack = FakeSlack()
    slack_server = fake_server(slack)
    sp.set_env(HOOK_SECRET=SECRET, SLACK_BOT_TOKEN=slack.token)
    sp.customers(people(4))
    sp.write_sync("hooks", f"""
        table: customers
        key: email
        destination: {{type: webhook, url: "{hooks.url}", secret_env: HOOK_SECRET}}
        mapping: {{phone: phone}}
        alert: {{type: slack, channel: "#sales", base_url: "{slack_server.url}/"}}
    """)
    receiver.reject_keys = {"user2@example.com"}
    assert sp.run("hooks").status == "partial"
    assert sp.run("hooks").status == "partial"  # still failing: no second alert
    assert len(slack.messages) == 1
    assert slack.messages[0]["text"].startswith("Sync hooks is failing: 1 row(s) were rejected")
    receiver.reject_keys = set()
    assert sp.run("hooks").status == "ok"
    assert sp.run("hooks").status == "ok"
    assert [m["text"].split(":")[0] for m in slack.messages] == ["Sync hooks is failing", "Sync hooks recovered"]

    app = sp.app()
    try:
        failed = app.store.list_events(name="sync.hooks.row_failed")
        assert len(failed) == 2 and failed[0].payload["key"] == "user2@example.com"
        assert "invalid rows: user2@example.com" in failed[0].payload["error"]
        results = app.warehouse.query(
            "SELECT key, status, count(*) FROM opsloop_sync.row_results WHERE sync = 'hooks' GROUP BY ALL ORDER BY ALL")
        assert results.rows == [("user1@example.com", "ok", 1), ("user2@example.com", "failed", 2),
                                ("user2@example.com", "ok", 1), ("user3@example.com", "ok", 1),
                                ("user4@example.com", "ok", 1)]
    finally:
        app.close()


def test_cli_goes_through_the_server_that_owns_the_warehouse(sp: SyncProject, server_factory: Any) -> None:
    from tests.conftest import run_cli

    sp.customers(people(3))
    _outbox_sync(sp, "contacts", "manual")
    srv = server_factory(sp.root)
    env = {"OPSLOOP_PORT": str(srv.port)}
    ran = run_cli("sync", "contacts", "-p", str(sp.root), env=env)
    assert ran.returncode == 0, ran.stderr
    assert "contacts: ok: 3 to create, 0 to update, 0 to delete; sent 3, failed 0" in ran.stdout
    listed = run_cli("syncs", "-p", str(sp.root), env=env)
    assert "contacts\toutbox\tupsert\thealthy\tok" in listed.stdout, listed.stderr
    with srv.api() as api:
        assert api.post("/api/syncs/contacts/run", json={"dry_run": True}).json()["status"] == "dry_run"
        assert api.post("/api/syncs/nope/run").status_code == 404
    import httpx

    assert httpx.get(f"{srv.url}/api/syncs").status_code == 401
