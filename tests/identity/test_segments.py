"""Segments: membership history, enter/exit events exactly once, reacting to model.built and schedules."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.conftest import wait_for
from tests.identity.conftest import IdentityWorld, make_world

PRO = "where: plan = 'pro'\n"
YAML_COND = """\
description: Pro or enterprise with an app phone
conditions:
  all:
    - field: plan
      in: [pro, enterprise]
    - any:
        - {field: phone__source, equals: app}
        - {field: name, contains: VIP}
"""
HEAVY = """\
description: Heavy users (reads the usage model)
sql: |
  select g.person_id from identity.golden_records g
  join analytics.usage u on u.email = g.email
  where u.events > 100
"""


def _app_user(w: IdentityWorld, uid: str, plan: str | None, phone: str | None = None, name: str = "A") -> None:
    w.upsert("src.app_users", id=uid, email=f"{uid}@example.com", phone=phone, name=name, plan=plan,
             updated_at="2026-01-01")


def test_enter_and_exit_fire_exactly_once_per_change(tmp_path: Path, engine_url: str | None) -> None:
    w = make_world(tmp_path, segments={"pro": PRO}, warehouse_url=engine_url)
    try:
        _app_user(w, "u1", "pro")
        _app_user(w, "u2", "free")
        first = w.build()
        assert first["segments"][0] == {"segment": "pro", "members": 1, "entered": 1, "exited": 0, "first": True,
                                        "seconds": first["segments"][0]["seconds"]}
        assert w.events("segment.entered") == []  # turning a segment on does not announce existing members
        u1, u2 = w.person_of("app", "u1"), w.person_of("app", "u2")

        _app_user(w, "u1", "free")
        _app_user(w, "u2", "pro")
        w.build()
        for _ in range(3):
            w.build()
            w.service.evaluate_segments()
        entered = [e.payload for e in w.events("segment.entered")]
        exited = [e.payload for e in w.events("segment.exited")]
        assert [(p["segment"], p["person_id"]) for p in entered] == [("pro", u2)]
        assert [(p["segment"], p["person_id"]) for p in exited] == [("pro", u1)]
        assert entered[0]["profile"]["plan"] == "pro" and entered[0]["profile"]["plan__source"] == "app"
        assert exited[0]["profile"]["plan"] == "free"
        history = w.rows("SELECT person_id, event FROM identity.segment_history ORDER BY changed_at, event")
        assert [(h["person_id"], h["event"]) for h in history] == [(u1, "entered"), (u2, "entered"), (u1, "exited")]
    finally:
        w.app.close()


def test_yaml_conditions_and_initial_events(tmp_path: Path, engine_url: str | None) -> None:
    w = make_world(tmp_path, segments={"vip": YAML_COND + "initial_events: true\n"}, warehouse_url=engine_url)
    try:
        _app_user(w, "u1", "pro", phone="+14155550101")
        _app_user(w, "u2", "enterprise", name="VIP Bob")
        _app_user(w, "u3", "enterprise")
        _app_user(w, "u4", "free", phone="+14155550104")
        w.build()
        members = {e.payload["person_id"] for e in w.events("segment.entered")}
        assert members == {w.person_of("app", "u1"), w.person_of("app", "u2")}
    finally:
        w.app.close()


def test_events_in_the_outbox_reach_the_log_once_even_if_flushed_twice(tmp_path: Path) -> None:
    """A crash after appending to the log but before clearing the outbox re-sends; the log drops the copies."""
    from opsloop.identity._outbox import flush
    from opsloop.identity._sql import Conn

    w = make_world(tmp_path, segments={"pro": PRO})
    try:
        _app_user(w, "u1", "free")
        w.build()
        _app_user(w, "u1", "pro")
        db = Conn(w.app.warehouse)
        try:
            from opsloop.identity.resolve import Resolver
            from opsloop.identity.segments import evaluate

            ip = w.service.project
            Resolver(db, ip.config, ip.field_names).build()
            evaluate(db, ip.segments["pro"])
            db.x("CREATE TEMP TABLE _copy AS SELECT * FROM identity.outbox")
            assert flush(db, w.app.store) == 3  # profile.updated, identity.built, segment.entered
            db.x("INSERT INTO identity.outbox SELECT * FROM _copy")  # as if the delete never happened
            assert flush(db, w.app.store) == 0
        finally:
            db.close()
        assert len(w.events("segment.entered")) == 1 and len(w.events("profile.updated")) == 1
        assert len(w.events("identity.built")) == 2  # the first build's and this one's
    finally:
        w.app.close()


async def _running(w: IdentityWorld, check: Any) -> Any:
    """Start the app, run ``check(loop)`` in a thread (it may wait on conditions), stop the app."""
    await w.app.start()
    try:
        return await asyncio.to_thread(check, asyncio.get_running_loop())
    finally:
        await w.app.stop()


def test_model_built_rebuilds_identity_and_reevaluates_segments(tmp_path: Path) -> None:
    w = make_world(tmp_path, segments={"heavy": HEAVY})
    yml = (w.root / "identity.yml").read_text()
    (w.root / "identity.yml").write_text(yml.replace("fields: {phone: phone, name: name, plan: plan}",
                                                     "fields: {phone: phone, name: name, plan: plan, email: email}"))
    w.app.close()
    from tests.conftest import make_app

    w.app = make_app(w.root)
    w.sql("CREATE SCHEMA analytics")
    w.sql("CREATE TABLE analytics.usage (email VARCHAR, events INTEGER)")
    _app_user(w, "u1", "pro")
    w.build()

    def scenario(loop: asyncio.AbstractEventLoop) -> None:
        app = w.app
        # a model the segment reads was rebuilt: the segment is evaluated again
        w.sql("INSERT INTO analytics.usage VALUES ('u1@example.com', 500)")
        asyncio.run_coroutine_threadsafe(app.emit("model.built", {"model": "usage", "relation": "analytics.usage",
                                                                  "rows": 1, "changed_rows": 1}), loop).result()
        entered = wait_for(lambda: w.events("segment.entered"), 15, what="segment.entered")
        assert entered[0].payload["person_id"] == w.person_of("app", "u1")
        # a source of identity.yml was rebuilt: identities and the golden record are rebuilt
        _app_user(w, "u1", "pro", phone="+14155550155")
        asyncio.run_coroutine_threadsafe(app.emit("model.built", {"model": "app_users",
                                                                  "relation": "src.app_users", "rows": 1,
                                                                  "changed_rows": 1}), loop).result()
        updated = wait_for(lambda: w.events("profile.updated"), 15, what="profile.updated")
        assert updated[0].payload["changed"]["phone"]["new"] == "+14155550155"

    try:
        asyncio.run(_running(w, scenario))
    finally:
        w.app.close()


def test_segments_run_on_their_schedule(tmp_path: Path) -> None:
    w = make_world(tmp_path, segments={"pro": PRO + "schedule: 10s\n"})
    env = w.root / ".env"
    env.write_text(env.read_text() + "OPSLOOP_TIME_SCALE=0.01\n")
    w.app.close()
    from tests.conftest import make_app

    w.app = make_app(w.root)
    _app_user(w, "u1", "free")
    w.build()
    w.service.build()  # golden record exists; the segment has been evaluated once (no members)

    def scenario(loop: asyncio.AbstractEventLoop) -> None:
        _app_user(w, "u1", "pro")
        w.service.build(segments=False)
        started = time.monotonic()
        wait_for(lambda: w.events("segment.entered"), 10, what="the scheduled evaluation")
        assert time.monotonic() - started < 10

    try:
        asyncio.run(_running(w, scenario))
    finally:
        w.app.close()


def test_events_land_in_a_postgres_state_store(tmp_path: Path, pg_url: str) -> None:
    w = make_world(tmp_path, segments={"pro": PRO}, state_url=pg_url)
    try:
        assert w.app.store.backend == "postgres"
        _app_user(w, "u1", "free")
        w.build()
        _app_user(w, "u1", "pro")
        w.build()
        w.build()
        assert [e.payload["person_id"] for e in w.events("segment.entered")] == [w.person_of("app", "u1")]
        (updated,) = w.events("profile.updated")
        assert updated.payload["changed"]["plan"] == {"old": "free", "new": "pro", "source": "app"}
    finally:
        w.app.close()
