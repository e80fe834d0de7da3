"""Fixtures: a project with identity.yml over three systems' tables in a real DuckDB warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsloop.app import App
from opsloop.project.scaffold import init_project
from tests.conftest import make_app, use_postgres_warehouse

IDENTITY_YML = """\
identifiers:
  email: {normalize: email}
  phone: {normalize: phone, region: US, max_per_person: 3}
  app_user_id: {max_per_person: 1}
  crm_id: {max_per_person: 1}
  support_id: {}
merge_rules:
  - app_user_id
  - crm_id
  - email
  - phone
sources:
  - system: app
    relation: src.app_users
    record_id: id
    updated_at: updated_at
    identifiers: {app_user_id: id, email: email, phone: phone}
    fields: {phone: phone, name: name, plan: plan}
  - system: crm
    relation: src.crm_contacts
    record_id: id
    updated_at: updated_at
    identifiers: {crm_id: id, email: email, phone: phone, app_user_id: app_user_id}
    fields: {phone: phone, name: name, company: company}
  - system: support
    relation: src.support_users
    record_id: id
    updated_at: updated_at
    identifiers: {support_id: id, email: email, phone: phone}
    fields: {phone: phone, name: name}
fields:
  phone: {survivorship: priority, priority: [app, crm, support], normalize: phone}
  name: {survivorship: most_recent}
  company: {survivorship: most_frequent}
  plan: {survivorship: priority, priority: [app]}
"""

TABLES = {
    "src.app_users": "id VARCHAR, email VARCHAR, phone VARCHAR, name VARCHAR, plan VARCHAR, updated_at TIMESTAMPTZ",
    "src.crm_contacts": "id VARCHAR, email VARCHAR, phone VARCHAR, name VARCHAR, company VARCHAR, "
                        "app_user_id VARCHAR, updated_at TIMESTAMPTZ",
    "src.support_users": "id VARCHAR, email VARCHAR, phone VARCHAR, name VARCHAR, updated_at TIMESTAMPTZ",
}


class IdentityWorld:
    """A project plus helpers to change the source tables and rebuild."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.app: App = make_app(root)
        for table, cols in TABLES.items():
            self.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
            self.sql(f"CREATE TABLE IF NOT EXISTS {table} ({cols})")

    @property
    def service(self) -> Any:
        return self.app.services["identity"]

    def sql(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.app.warehouse.execute(sql, params)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return self.app.warehouse.query(sql, params).as_dicts()

    def upsert(self, table: str, **row: Any) -> None:
        self.sql(f"DELETE FROM {table} WHERE id = ?", (row["id"],))
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.sql(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(row.values()))

    def build(self, **kw: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.service.build(**kw)
        return result

    def person_of(self, system: str, record_id: str) -> str:
        rows = self.rows("SELECT person_id FROM identity.graph WHERE system = ? AND record_id = ?", (system, record_id))
        assert rows, f"{system}:{record_id} is not in the graph"
        return str(rows[0]["person_id"])

    def golden(self, person_id: str) -> dict[str, Any]:
        rows = self.rows("SELECT * FROM identity.golden_records WHERE person_id = ?", (person_id,))
        assert rows, f"no golden record for {person_id}"
        return rows[0]

    def events(self, name: str) -> list[Any]:
        """Accepted events (what consumers see), oldest first; duplicates the log dropped are left out."""
        from opsloop.state import ACCEPTED_STATUSES

        return [e for e in reversed(self.app.store.list_events(name=name, limit=10000))
                if e.status in ACCEPTED_STATUSES]


def make_world(tmp_path: Path, identity_yml: str = IDENTITY_YML, segments: dict[str, str] | None = None,
               state_url: str | None = None, warehouse_url: str | None = None) -> IdentityWorld:
    """A world on DuckDB, or on the Postgres warehouse at ``warehouse_url``."""
    root = tmp_path / "proj"
    init_project(root)
    if warehouse_url:
        use_postgres_warehouse(root, warehouse_url)
    (root / "identity.yml").write_text(identity_yml)
    if segments:
        (root / "segments").mkdir(exist_ok=True)
        for name, text in segments.items():
            (root / "segments" / f"{name}.yml").write_text(text)
    if state_url:
        env = root / ".env"
        env.write_text(env.read_text() + f"\nOPSLOOP_STATE_URL={state_url}\n")
    return IdentityWorld(root)


def ada_in_two_systems(tmp_path: Path, segments: dict[str, str] | None = None) -> Path:
    """A closed project holding one person twice: the app's user and the CRM's contact (the same email in
    another case, two phones), ready for ``opsloop identity build``."""
    w = make_world(tmp_path, segments=segments)
    w.upsert("src.app_users", id="u1", email="ada@example.com", phone="(415) 555-0101", name="Ada", plan="pro",
             updated_at="2026-01-01T10:00:00Z")
    w.upsert("src.crm_contacts", id="c1", email="ADA@example.com", phone="+14155550202", name="Ada L",
             company="AE", app_user_id=None, updated_at="2026-01-02T10:00:00Z")
    w.app.close()
    return w.root


@pytest.fixture(params=["duckdb", "postgres"])
def engine_url(request: pytest.FixtureRequest) -> str | None:
    """Each warehouse that runs identity: None for DuckDB, else a fresh Postgres database's URL."""
    if request.param == "duckdb":
        return None
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def any_world(tmp_path: Path, engine_url: str | None) -> Iterator[IdentityWorld]:
    """``world`` on every warehouse that runs identity."""
    w = make_world(tmp_path, warehouse_url=engine_url)
    yield w
    w.app.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[IdentityWorld]:
    w = make_world(tmp_path)
    yield w
    w.app.close()
