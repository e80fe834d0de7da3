"""The example company gives the same results on every warehouse that runs it (one end-to-end test).

The example (`opsloop init --example saas`) gets the demo's sample history (`opsloop.demo.history`: demo requests,
Stripe subscriptions and invoices, app logins) plus app signups with phones, loaded into ``raw.events`` as the demo
loads them. On each engine it then builds every model, seed and data test, resolves identity (golden records, person
ids, provenance, segments and their events) and runs its syncs (the outbox stands in for HubSpot and Zendesk, and a
sync of the ``customers`` model); then a change in every system (a phone edited in the app, a churn in Stripe, a CRM
contact renamed) and the same again (models, an incremental identity build, syncs). Every model's rows, the identity
tables, the events, the sync runs and what reached the outbox must equal DuckDB's. Each engine runs the parts its
warehouse runs (``Warehouse.RUNS_IDENTITY``, ``RUNS_SYNCS``) and the test says which.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsloop.warehouse.sql import relation
from tests.conftest import comparable, make_app, run_cli

NOW_TS = float(int(time.time()))
NOW = dt.datetime.fromtimestamp(NOW_TS, tz=dt.UTC)
EVERY_PART = {"models", "identity", "syncs"}
RUNS_HERE = {"duckdb": EVERY_PART, "postgres": EVERY_PART, "snowflake": {"models", "syncs"}}
"""What each engine runs of the example here (docs/deploy.md's table)."""

CUSTOMERS_SYNC = """\
# the customers model straight to the outbox (a sync that needs no identity build)
model: customers
key: email
destination: {type: outbox, object: customers}
mapping:
  email: email
  company: company
  status: status
  domain: {sql: "split_part(email, '@', 2)"}
mode: mirror
"""



def _history() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The demo's history plus app signups (with phones) for the people who log in; and the change."""
    from opsloop.demo import payloads
    from opsloop.demo.history import build_history

    rows, people = build_history(days=120, now=NOW_TS)
    by_email = {p.email: p for p in people}
    logged_in = sorted({r["payload"]["user"]["email"] for r in rows if r["name"] == "app.user.login"})
    extra = []
    for i, email in enumerate(logged_in):
        at = NOW_TS - 72 * 3600 + i
        extra.append({"endpoint": "app", "name": "app.user.signed_up", "at": at,
                      "payload": payloads.app_event(by_email[email], at, "user.signed_up")})
    created = [r["payload"]["data"]["object"]["metadata"]["email"] for r in rows
               if r["name"] == "stripe.customer.subscription.created"]
    deleted = {r["payload"]["data"]["object"]["metadata"]["email"] for r in rows
               if r["name"] == "stripe.customer.subscription.deleted"}
    active = [e for e in created if e not in deleted and e in logged_in]
    edited, churned = by_email[active[0]], by_email[active[1]]
    edited.phone = "+1 415 555 0199"
    change = [{"endpoint": "app", "name": "app.user.updated", "at": NOW_TS - 60,
               "payload": payloads.app_event(edited, NOW_TS - 60, "user.updated")},
              {"endpoint": "stripe", "name": "stripe.customer.subscription.deleted", "at": NOW_TS - 30,
               "payload": payloads.subscription(churned, NOW_TS - 30, "deleted", 1)}]
    return rows + extra, change


def _set_warehouse(root: Path, text: str) -> None:
    config = root / "opsloop.yml"
    s = config.read_text(encoding="utf-8")
    start, end = s.index("warehouse:"), s.index("state:")
    config.write_text(s[:start] + text + s[end:], encoding="utf-8")


class Company:
    """The example company on one warehouse."""

    def __init__(self, root: Path, engine: str) -> None:
        from opsloop.demo.history import load_history

        self.root, self.engine = root, engine
        self.parts = RUNS_HERE[engine]
        self.started: dt.datetime | None = None
        """When the first identity build started: a value set then or later (no updated_at) is "at build"."""
        self.app = make_app(root)
        wh = self.app.warehouse
        runs = {"models", *(["identity"] if wh.RUNS_IDENTITY else []), *(["syncs"] if wh.RUNS_SYNCS else [])}
        assert runs == self.parts, f"{engine}: update RUNS_HERE (and docs/deploy.md) to what the warehouse runs"
        self.history, self.change_rows = _history()
        load_history(wh, self.history)

    def close(self) -> None:
        self.app.close()

    def models(self) -> dict[str, Any]:
        results = self.app.services["models"].build(emit=False)
        bad = [(r.uid, r.status, r.message) for r in results if r.status not in ("success", "pass")]
        assert not bad, f"{self.engine}: {bad}"
        wh = self.app.warehouse
        out = {}
        for (schema, name), _kind in sorted(wh.relations().items()):
            if schema != wh.default_schema.lower():
                continue
            result = wh.query(f"SELECT * FROM {relation(wh.default_schema, name, wh.dialect)}")
            rows = sorted(([comparable(v) for v in r] for r in result.rows), key=json.dumps)
            out[name] = {"columns": [c.lower() for c in result.columns], "rows": rows}
        return out

    def identity(self) -> dict[str, Any]:
        identity = self.app.services["identity"]
        self.started = self.started or dt.datetime.now(dt.UTC)
        started = self.started
        built = identity.build()
        rows = lambda sql: [{k: comparable(v) for k, v in r.items()}  # noqa: E731
                            for r in self.app.warehouse.query(sql).as_dicts()]
        golden = []
        for row in self.app.warehouse.query("SELECT * FROM identity.golden_records ORDER BY person_id").as_dicts():
            row.pop("resolved_at")
            for key, value in row.items():
                if isinstance(value, dt.datetime) and value >= started:  # a source without updated_at: as of a build
                    row[key] = "at build"
            golden.append(comparable(row))
        return {
            "kind": built["kind"], "records": built["records"], "persons": built["persons"],
            "profile_updates": built["profile_updates"],
            "segments": sorted((s["segment"], s["members"], s["entered"], s["exited"]) for s in built["segments"]),
            "golden": golden,
            "graph": rows("SELECT system, record_id, person_id FROM identity.graph ORDER BY system, record_id"),
            "ids": rows("SELECT person_id, merged_into, retired_at IS NOT NULL AS retired FROM identity.persons "
                        "ORDER BY person_id"),
            "members": rows("SELECT segment, person_id FROM identity.segment_members ORDER BY segment, person_id"),
        }

    def syncs(self) -> dict[str, Any]:
        from opsloop import outbox
        from opsloop.syncs import SyncRunner

        names = ["customers", *(["hubspot_contacts", "zendesk_users"] if "identity" in self.parts else [])]
        out: dict[str, Any] = {}
        for name in names:
            ran = SyncRunner(self.app).run(name)
            assert ran.status == "ok", f"{self.engine}: sync {name}: {ran.status} {ran.error}"
            out[name] = {"planned": ran.planned, "sent": ran.sent, "failed": ran.failed}
        items = outbox.list_items(self.app.store, limit=100000)
        out["outbox"] = sorted(([i.destination, i.action, i.key, comparable(i.payload.get("fields"))] for i in items),
                               key=json.dumps)
        return out

    def events(self) -> list[tuple[str, str, list[str]]]:
        """(name, person, changed fields) of every identity and sync event in the log, sorted."""
        from opsloop.state import ACCEPTED_STATUSES

        out = []
        for e in self.app.store.list_events(limit=100000):
            if e.status not in ACCEPTED_STATUSES or e.source != "identity" or not isinstance(e.payload, dict):
                continue
            changed = e.payload.get("changed")
            out.append((e.name, str(e.payload.get("person_id")),
                        sorted(changed) if isinstance(changed, dict) else []))
        return sorted(out)

    def change(self) -> None:
        """A phone edited in the app and a churn in Stripe (new events), a CRM contact renamed after the build."""
        from opsloop.demo.history import load_history

        load_history(self.app.warehouse, self.history + self.change_rows)

    def rename_in_crm(self) -> None:
        self.app.warehouse.execute("UPDATE main.crm_contacts SET firstname = 'Renamed', updated_at = ? "
                                   "WHERE id = (SELECT min(id) FROM main.crm_contacts)", (NOW.replace(tzinfo=None),))

    def run(self) -> dict[str, Any]:
        (self.root / "syncs" / "customers.yml").write_text(CUSTOMERS_SYNC, encoding="utf-8")
        self.app.close()
        self.app = make_app(self.root)
        out: dict[str, Any] = {}
        for build in ("first", "second"):
            if build == "second":
                self.change()
            step: dict[str, Any] = {"models": self.models()}
            if build == "second":
                self.rename_in_crm()
            if "identity" in self.parts:
                step["identity"] = self.identity()
            if "syncs" in self.parts:
                step["syncs"] = self.syncs()
            out[build] = step
        if "identity" in self.parts:
            out["events"] = self.events()
        return json.loads(json.dumps(out, default=str))


@contextlib.contextmanager
def _company(tmp: Path, engine: str, request: pytest.FixtureRequest) -> Iterator[Company]:
    root = tmp / f"co_{engine}"
    made = run_cli("init", str(root), "--example", "saas")
    assert made.returncode == 0, made.stderr
    patch: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if engine == "postgres":
        _set_warehouse(root, f"warehouse:\n  type: postgres\n  url: {request.getfixturevalue('pg_database')}"
                             "?schema=main\n")
    elif engine == "snowflake":
        # the real snowflake-connector-python API, answered by fakesnow (Snowflake SQL run on an in-memory DuckDB)
        import fakesnow

        patch = fakesnow.patch()
        _set_warehouse(root, "warehouse:\n  type: snowflake\n  options: {account: acme, user: opsloop, "
                             "password: x, database: ACME, schema: MAIN}\n")
    with patch:
        company = Company(root, engine)
        try:
            yield company
        finally:
            company.close()


@pytest.fixture(scope="module")
def on_duckdb(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, Any]:
    with _company(tmp_path_factory.mktemp("duckdb"), "duckdb", request) as company:
        return company.run()


def test_the_example_on_duckdb_has_something_to_compare(on_duckdb: dict[str, Any]) -> None:
    """What the comparison compares is not empty: models with rows, people merged across systems, members,
    events, syncs that sent rows and then only the changes."""
    first, second = on_duckdb["first"], on_duckdb["second"]
    assert all(first["models"][m]["rows"] for m in ("app_users", "customers", "accounts", "time_to_buy"))
    assert (first["identity"]["kind"], second["identity"]["kind"]) == ("full", "incremental")
    assert len([g for g in first["identity"]["golden"] if len(g["systems"]) >= 3]) >= 5
    assert {seg for seg, *_ in first["identity"]["segments"]} == {"active_customers", "high_usage"}
    assert second["identity"]["profile_updates"] >= 2
    assert {"profile.updated", "segment.exited"} <= {name for name, _, _ in on_duckdb["events"]}
    renamed = [g for g in second["identity"]["golden"] if str(g["name"]).startswith("Renamed")]
    assert len(renamed) == 1 and renamed[0]["name__source"] == "crm"
    for sync in ("customers", "hubspot_contacts", "zendesk_users"):
        assert first["syncs"][sync]["sent"] > 10 * max(1, second["syncs"][sync]["sent"]), sync
        assert second["syncs"][sync]["sent"] >= 1, sync
    assert any(f and f.get("phone") == "+14155550199" for *_, f in second["syncs"]["outbox"])


@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres), "snowflake"])
def test_the_example_gives_duckdbs_results(engine: str, on_duckdb: dict[str, Any], tmp_path: Path,
                                          request: pytest.FixtureRequest) -> None:
    with _company(tmp_path, engine, request) as company:
        got = company.run()
    for build in ("first", "second"):
        mine, duck = got[build]["models"], on_duckdb[build]["models"]
        assert sorted(mine) == sorted(duck), f"{engine}: {build} build: models"
        for name in duck:
            assert mine[name] == duck[name], f"{engine}: {build} build: model {name} differs"
        for part in ("identity", "syncs"):
            if part not in RUNS_HERE[engine]:
                continue
            expected = on_duckdb[build][part]
            if part == "syncs" and "identity" not in RUNS_HERE[engine]:
                # the syncs of the golden records run where identity does; the customers sync runs everywhere
                expected = {"customers": expected["customers"],
                            "outbox": [i for i in expected["outbox"] if i[0] == "sync:customers"]}
                assert expected["outbox"], "the customers sync sent nothing on DuckDB"
            for key, value in expected.items():
                assert got[build][part][key] == value, f"{engine}: {build} build: {part} {key} differs"
    if "identity" in RUNS_HERE[engine]:
        assert got["events"] == on_duckdb["events"]


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
