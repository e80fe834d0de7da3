"""docs/syncs.md examples load; bad sync files give one located message each; smaller runner paths."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from opsloop import load_project
from opsloop.destinations import get_destination
from opsloop.errors import ConfigError
from opsloop.syncs.project_files import SYNCS
from tests.conftest import run_cli

from .conftest import SyncProject, cli, people

DOC = Path(__file__).resolve().parents[2] / "docs" / "syncs.md"


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_every_yaml_example_in_the_docs_is_valid(sp: SyncProject) -> None:
    blocks = _yaml_blocks()
    assert len(blocks) >= 9
    sp.set_env(HUBSPOT_TOKEN="x", SLACK_BOT_TOKEN="x", SALESFORCE_TOKEN="x", ZENDESK_TOKEN="x", SMTP_USER="x",
               SMTP_PASSWORD="x", CRM_DATABASE_URL="postgresql://x", OPSLOOP_WEBHOOK_SECRET="whsec_eA==")
    sp.write_sync("crm_contacts", blocks[0])
    project = load_project(sp.root)
    sync = SYNCS.of(project)["crm_contacts"]
    assert [s.kind for s in sync.specs] == ["column", "column", "column", "jinja", "sql"]
    assert sync.config.triggers.after_build and sync.config.rate_limit.per_day == 200000
    for block in blocks[1:]:
        data = yaml.safe_load(block)
        for section in ("destination", "alert"):
            if isinstance(data, dict) and section in data:
                cls = get_destination(data[section]["type"])
                cls.Config.model_validate(data[section])


def test_bad_sync_files_name_file_line_and_fix(sp: SyncProject) -> None:
    sp.write_sync("bad", """
        model: customers
        key: email
        destination: {type: hubspott}
        mapping: {email: email}
        mode: upsertt
    """)
    sp.write_sync("worse", """
        table: customers
        sql: select 1
        key: id
        destination: {type: webhook, url: "http://x", secret_env: NOT_SET_ANYWHERE}
        mapping: {a: "{{ broken"}
    """)
    with pytest.raises(ConfigError) as info:
        load_project(sp.root)
    text = str(info.value)
    assert "syncs/bad.yml:5: mode: Input should be 'upsert', 'update', 'insert' or 'mirror'" in text
    assert "syncs/worse.yml:1: (top level): give exactly one of model:, table: or sql:" in text
    result = run_cli("validate", "-p", str(sp.root))
    assert result.returncode == 1 and "syncs/bad.yml:5" in result.stderr


def test_unknown_destination_and_missing_secret(sp: SyncProject) -> None:
    sp.write_sync("bad", """
        model: customers
        key: email
        destination: {type: hubspott}
        mapping: {email: email, x: "{{ oops"}
    """)
    sp.write_sync("nosecret", """
        model: customers
        key: email
        destination: {type: webhook, url: "http://x", secret_env: NOT_SET_ANYWHERE}
        mapping: {email: email}
    """)
    with pytest.raises(ConfigError) as info:
        load_project(sp.root)
    text = str(info.value)
    assert "syncs/bad.yml:3: unknown destination type 'hubspott'; known: " in text
    assert "syncs/bad.yml:4: mapping.x: the template does not parse" in text
    assert "syncs/nosecret.yml:3: the secret NOT_SET_ANYWHERE is not set" in text


def test_duplicate_keys_stop_the_run(sp: SyncProject) -> None:
    sp.customers([*people(3), (9, "user2@example.com", "Dup", "+1", "pro")])
    sp.write_sync("c", "table: customers\nkey: email\ndestination: {type: outbox}\nmapping: {name: first_name}\n")
    result = sp.run("c")
    assert result.status == "failed"
    assert "syncs/c.yml:2: the key 'email' is not unique in the source (e.g. user2@example.com)" in (result.error or "")


def test_daily_quota_stops_and_keeps_rows_pending(sp: SyncProject) -> None:
    sp.customers(people(3))
    sp.write_sync("c", """
        table: customers
        key: email
        destination: {type: outbox}
        mapping: {phone: phone}
        batch_size: 1
        rate_limit: {per_day: 2}
    """)
    first = sp.run("c")
    assert (first.status, first.sent) == ("quota", 2)
    assert "daily quota of 2 requests" in (first.error or "")
    second = sp.run("c")
    assert (second.status, second.sent, second.planned["create"]) == ("quota", 0, 1)


def test_interrupted_batch_to_a_non_idempotent_destination_is_not_resent(sp: SyncProject) -> None:
    sp.customers(people(2))
    sp.write_sync("c", "table: customers\nkey: email\ndestination: {type: outbox}\nmapping: {phone: phone}\n")
    sp.run("c", dry_run=True)  # creates the tables
    sp.sql("""INSERT INTO opsloop_sync.journal (seq, sync, run_id, batch_id, key, fp, op, status, recorded_at)
              SELECT 1, 'c', 'run_x', 'b1', 'user1@example.com',
                     md5(concat_ws(chr(31), coalesce(CAST(phone AS VARCHAR), chr(1)))), 'upsert', 'sending', now()
              FROM customers WHERE id = 1""")
    result = sp.run("c")
    assert (result.unconfirmed, result.sent) == (1, 1)
    state = sp.state("c")
    assert state["user1@example.com"]["fp"] is not None
    rows = sp.sql("SELECT key, status FROM opsloop_sync.row_results ORDER BY key")
    assert rows == [("user1@example.com", "unconfirmed"), ("user2@example.com", "ok")]


def test_cli_dry_run_json_and_listing(sp: SyncProject) -> None:
    sp.customers(people(2))
    sp.write_sync("c", "table: customers\nkey: email\ndestination: {type: outbox}\nmapping: {phone: phone}\n")
    dry = cli("sync", "c", "--dry-run", "-p", str(sp.root))
    assert dry.returncode == 0, dry.stderr
    assert "c: dry run: would create 2, update 0, delete 0; nothing sent" in dry.stdout
    assert "user1@example.com: {'phone': '+15550000001'}" in dry.stdout
    ran = cli("sync", "-p", str(sp.root), "--json")
    assert ran.returncode == 0
    import json

    data: Any = json.loads(ran.stdout)
    assert data[0]["status"] == "ok" and data[0]["sent"] == 2
    listed = json.loads(cli("syncs", "--json", "-p", str(sp.root)).stdout)
    assert listed[0]["health"] == "healthy" and listed[0]["synced_rows"] == 2 and listed[0]["last_sent"] == 2
    missing = cli("sync", "nope", "-p", str(sp.root))
    assert missing.returncode == 1 and "no sync 'nope'; syncs: c" in missing.stderr
