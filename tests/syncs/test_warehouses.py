"""Syncs on a Postgres warehouse are checked as on DuckDB; other warehouses are refused with a clear message.
(The diff engine itself runs on both: test_outbox_sync.py and test_webhook_sync.py are parametrized.)"""

from __future__ import annotations

import pytest

from tests.conftest import free_port, run_cli

from .conftest import SyncProject, people

SYNC = """
    model: customers
    key: email
    destination: {type: outbox, object: contacts}
    mapping:
      email: email
      phone: phone
      mobile: phone_number
      domain: {sql: "split_part(email, '@', 2)"}
"""


@pytest.mark.postgres
@pytest.mark.parametrize("sp", ["postgres"], indirect=True)
def test_validate_reads_the_source_columns_from_postgres(sp: SyncProject) -> None:
    sp.customers(people(3))
    sp.write_sync("contacts", SYNC)
    result = run_cli("validate", "-p", str(sp.root))
    assert result.returncode == 1, result.stdout
    assert "syncs/contacts.yml:7: mapping.mobile: no column 'phone_number' in the source" in result.stderr
    assert "columns: id, email, first_name, phone, plan" in result.stderr
    sp.write_sync("contacts", SYNC.replace("      mobile: phone_number\n", ""))
    ok = run_cli("validate", "-p", str(sp.root))
    assert ok.returncode == 0, ok.stderr
    assert sp.run("contacts").sent == 3


def test_an_unreachable_postgres_warehouse_is_named(sp: SyncProject) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    on_pg = SyncProject(sp.root, closed)
    on_pg.write_sync("contacts", SYNC)
    result = run_cli("validate", "-p", str(on_pg.root))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot reach the warehouse to check the syncs' sources" in result.stderr
    ran = on_pg.run("contacts")
    assert ran.status == "failed" and "cannot connect to the Postgres warehouse" in (ran.error or "")


def test_syncs_on_an_unsupported_warehouse_say_so(sp: SyncProject) -> None:
    config = sp.root / "opsloop.yml"
    config.write_text(config.read_text().replace("type: duckdb", "type: bigquery"))
    sp.write_sync("contacts", SYNC)
    result = run_cli("validate", "-p", str(sp.root))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "syncs/contacts.yml:1: syncs run on a DuckDB, Postgres, Snowflake or ClickHouse warehouse" in result.stderr
    assert "is bigquery" in result.stderr
    ran = sp.run("contacts")
    assert ran.status == "failed"
    assert "syncs run on a DuckDB, Postgres, Snowflake or ClickHouse warehouse" in (ran.error or "")
