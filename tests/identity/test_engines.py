"""The example company's identity and segments give the same people on every warehouse that runs them.

The example's ``identity.yml`` and ``segments/`` are used as `opsloop init --example saas` writes them. Its
seeds (the CRM and support systems) and ``stg_app_events`` are built by the model engine on each warehouse;
``main.app_users`` and ``main.customers`` (models whose DuckDB SQL does not build on Postgres) are written as
tables with the same rows. Then a full build, a change in every system and an incremental build: golden
records, stable person ids, merges, segment members and the events must equal DuckDB's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_app, run_cli, use_postgres_warehouse
from tests.models.conftest import RAW_DDL

NOW = datetime.now(UTC).replace(microsecond=0)


def _seed_emails(root: Path) -> list[tuple[str, str]]:
    lines = (root / "seeds" / "crm_contacts.csv").read_text().splitlines()[1:]
    return [(line.split(",")[0], line.split(",")[1]) for line in lines]


def _app_users(root: Path) -> list[tuple[Any, ...]]:
    """Forty app users: most share an email with a CRM contact (upper-cased, spaced), some a phone only."""
    rows = []
    for i, (_, email) in enumerate(_seed_emails(root)[:36]):
        shown = email.upper() if i % 3 == 1 else f" {email} " if i % 5 == 2 else email
        phone = f"(415) 555-{2000 + i:04d}" if i % 4 == 0 else None
        rows.append((f"u{i}", shown, phone, NOW - timedelta(days=40 - i)))
    rows += [(f"u_new{i}", f"new{i}@example.com", None, NOW - timedelta(days=2)) for i in range(4)]
    return rows


def _customers(root: Path) -> list[tuple[Any, ...]]:
    emails = [e for _, e in _seed_emails(root)]
    return [(emails[i], f"Company {i % 5}", "churned" if i % 7 == 3 else "active") for i in range(0, 60, 2)]


def _logins(root: Path) -> list[tuple[Any, ...]]:
    """Six logins in the last 48 hours for some app users, two for others (under high_usage's 5)."""
    out = []
    for i in range(0, 36, 2):
        email = _seed_emails(root)[i][1]
        for k in range(6 if i % 4 == 0 else 2):
            at = NOW - timedelta(hours=k + 1)
            payload = {"user": {"id": f"u{i}", "email": email}, "occurred_at": at.isoformat()}
            out.append((f"evt_{i}_{k}", len(out) + 1, "app", "app.user.login", at, json.dumps(payload)))
    return out


class Company:
    """The example company on one warehouse."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.app = make_app(root)
        wh = self.app.warehouse
        wh.execute("CREATE SCHEMA IF NOT EXISTS raw")
        wh.execute(RAW_DDL)
        for row in _logins(root):
            wh.execute("INSERT INTO raw.events VALUES (?, ?, ?, ?, ?, NULL, 'webhook', CAST(? AS JSON))", row)
        results = self.app.services["models"].build(select=["crm_contacts", "support_users", "stg_app_events"],
                                                    emit=False)
        assert [r.status for r in results] == ["success"] * 3, [(r.uid, r.message) for r in results]
        wh.execute("CREATE SCHEMA IF NOT EXISTS main")
        wh.execute("CREATE TABLE main.app_users (id VARCHAR, email VARCHAR, phone VARCHAR, updated_at TIMESTAMPTZ)")
        wh.execute("CREATE TABLE main.customers (email VARCHAR, company VARCHAR, status VARCHAR)")
        wh.insert_rows("main.app_users", ["id", "email", "phone", "updated_at"], [list(r) for r in _app_users(root)])
        wh.insert_rows("main.customers", ["email", "company", "status"], [list(r) for r in _customers(root)])

    def rows(self, sql: str) -> list[dict[str, Any]]:
        return self.app.warehouse.query(sql).as_dicts()

    def change(self) -> None:
        """One change per system: a phone edited in the app, a CRM contact renamed, a customer churned, a new
        support user for an existing person."""
        wh = self.app.warehouse
        wh.execute("UPDATE main.app_users SET phone = '+14155550199', updated_at = ? WHERE id = 'u1'",
                   (NOW,))
        first = _seed_emails(self.root)[0][0]
        wh.execute("UPDATE main.crm_contacts SET firstname = 'Renamed', updated_at = ? WHERE CAST(id AS VARCHAR) = ?",
                   (NOW.replace(tzinfo=None), first))
        wh.execute("UPDATE main.customers SET status = 'churned' WHERE email = ?", (_customers(self.root)[0][0],))
        wh.execute("INSERT INTO main.support_users (id, email, name, phone, updated_at) VALUES (?, ?, ?, ?, ?)",
                   (99999, _seed_emails(self.root)[4][1], "From Support", "+1 415 555 0100",
                    NOW.replace(tzinfo=None)))

    def snapshot(self) -> dict[str, Any]:
        golden = self.rows("SELECT * FROM identity.golden_records ORDER BY person_id")
        for row in golden:
            row.pop("resolved_at")
            for key, value in row.items():
                if isinstance(value, datetime):  # a source without updated_at: its values are as of the build
                    row[key] = "at build" if value >= self.started else value.astimezone(UTC).isoformat()
                elif isinstance(value, tuple):
                    row[key] = list(value)
        graph = [(r["system"], r["record_id"], r["person_id"]) for r in self.rows(
            "SELECT system, record_id, person_id FROM identity.graph ORDER BY system, record_id")]
        persons = [(r["person_id"], r["merged_into"], r["retired_at"] is not None) for r in self.rows(
            "SELECT person_id, merged_into, retired_at FROM identity.persons ORDER BY person_id")]
        members = [(r["segment"], r["person_id"]) for r in self.rows(
            "SELECT segment, person_id FROM identity.segment_members ORDER BY segment, person_id")]
        return {"golden": golden, "graph": graph, "persons": persons, "members": members}

    def events(self) -> list[tuple[str, str, list[str]]]:
        """(name, person, changed fields) of every identity event in the log, sorted."""
        from opsloop.state import ACCEPTED_STATUSES

        out = []
        for e in self.app.store.list_events(limit=100000):
            if e.status not in ACCEPTED_STATUSES or e.source != "identity" or not isinstance(e.payload, dict):
                continue
            changed = e.payload.get("changed")
            out.append((e.name, str(e.payload.get("person_id")), sorted(changed) if isinstance(changed, dict)
                        else []))
        return sorted(out)

    def run(self) -> dict[str, Any]:
        identity = self.app.services["identity"]
        self.started = datetime.now(UTC)
        first = identity.build()
        before = self.snapshot()
        self.change()
        second = identity.build()
        after = self.snapshot()
        summary = {(s["segment"], s["members"]) for s in identity.segment_summary()}
        profile = identity.profile(_seed_emails(self.root)[0][1])
        # A cluster split off by the second build whose natural id (its first record's) is still held gets an id
        # made with the build's run id: name such new people by their first record to compare them.
        known = {p for p, _, _ in before["persons"]}
        firsts: dict[str, str] = {}
        for system, record_id, person in after["graph"]:
            if person not in known:
                firsts[person] = min(firsts.get(person, "~"), f"new:{system}:{record_id}")
        done = json.loads(json.dumps({"first": before, "second": after, "events": self.events(),
                                      "profile": {k: profile[k] for k in ("person_id", "identifiers", "segments",
                                                                           "merged_from")}}, default=str))
        return {**_rename(done, firsts), "summary": summary, "kinds": (first["kind"], second["kind"]),
                "profile_updates": second["profile_updates"], "split": sorted(firsts.values())}


def _rename(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _rename(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, names) for v in value]
    return names.get(value, value) if isinstance(value, str) else value


def _company(tmp: Path, postgres_url: str | None = None) -> Company:
    root = tmp / "co"
    made = run_cli("init", str(root), "--example", "saas")
    assert made.returncode == 0, made.stderr
    if postgres_url:
        use_postgres_warehouse(root, postgres_url)
    return Company(root)


@pytest.fixture(scope="module")
def on_duckdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    company = _company(tmp_path_factory.mktemp("duckdb"))
    try:
        yield company.run()
    finally:
        company.app.close()


def test_the_example_resolves_people_across_its_systems_on_duckdb(on_duckdb: dict[str, Any]) -> None:
    """What the comparison compares is not empty: people merged across systems, members, events."""
    first, second = on_duckdb["first"], on_duckdb["second"]
    assert on_duckdb["kinds"] == ("full", "incremental")
    several = [g for g in first["golden"] if len(g["systems"]) >= 3]
    assert len(several) >= 5, first["golden"][:3]
    assert {seg for seg, _ in first["members"]} == {"active_customers", "high_usage"}
    assert len(first["members"]) > len(second["members"]) - 1 > 0
    assert on_duckdb["profile_updates"] >= 3
    names = {name for name, _, _ in on_duckdb["events"]}
    assert {"profile.updated", "segment.exited"} <= names, names
    renamed = [g for g in second["golden"] if str(g["name"]).startswith("Renamed")]
    assert len(renamed) == 1 and renamed[0]["name__source"] == "crm"


@pytest.mark.parametrize("engine", ["postgres"])
def test_the_example_gives_the_same_people_as_on_duckdb(engine: str, on_duckdb: dict[str, Any], tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_database") + "?schema=main"
    company = _company(tmp_path, url)
    try:
        got = company.run()
    finally:
        company.app.close()
    assert got["kinds"] == on_duckdb["kinds"]
    for build in ("first", "second"):
        for part in ("graph", "persons", "members", "golden"):
            mine, duck = (sorted(x[build][part], key=json.dumps) for x in (got, on_duckdb))
            assert mine == duck, f"{engine}: {build} build, {part} differ"
    assert sorted(got["events"]) == sorted(on_duckdb["events"])
    assert got["summary"] == on_duckdb["summary"]
    assert got["profile"] == on_duckdb["profile"]
    assert got["split"] == on_duckdb["split"]



def test_a_stop_interrupts_a_postgres_build_and_it_rolls_back(tmp_path: Path, pg_database: str) -> None:
    """On Postgres a statement still running is cancelled at a stop (as DuckDB's is interrupted): the build
    raises ``Interrupted`` at once and leaves no identity rows behind."""
    import threading
    import time

    from opsloop._halt import Interrupted
    from tests.identity.conftest import IDENTITY_YML, make_world

    slow = IDENTITY_YML.replace("    relation: src.support_users\n",
                                "    sql: \"select s.* from src.support_users s, (select pg_sleep(30)) as z\"\n")
    w = make_world(tmp_path, slow, warehouse_url=pg_database)
    try:
        w.upsert("src.app_users", id="u1", email="a@example.com", phone=None, name="A", plan="pro",
                 updated_at="2026-01-01")
        w.upsert("src.support_users", id="s1", email="a@example.com", phone=None, name="A",
                 updated_at="2026-01-01")
        outcome: list[BaseException | None] = []

        def build() -> None:
            try:
                w.build()
                outcome.append(None)
            except BaseException as exc:  # handed to the test thread
                outcome.append(exc)

        thread = threading.Thread(target=build)
        thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not w.rows(
                "SELECT 1 AS x FROM pg_stat_activity WHERE query LIKE '%pg\\_sleep(30)%' AND state = 'active' "
                "AND pid <> pg_backend_pid()"):
            time.sleep(0.05)
        started = time.monotonic()
        w.app.halt.trip()
        thread.join(10)
        assert not thread.is_alive() and time.monotonic() - started < 5
        assert outcome and isinstance(outcome[0], Interrupted), outcome
        assert w.rows("SELECT count(*) AS n FROM identity.records")[0]["n"] == 0
        assert w.rows("SELECT count(*) AS n FROM identity.runs")[0]["n"] == 0
    finally:
        w.app.halt.reset()
        w.app.close()
