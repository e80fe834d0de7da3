"""The information hierarchy: per-field survivorship, provenance, and profile.updated exactly once."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.identity.conftest import IdentityWorld


def _seed_three_phones(world: IdentityWorld) -> str:
    world.upsert("src.app_users", id="u1", email="Ada@Example.com ", phone="(415) 555-0101", name="Ada",
                 plan="pro", updated_at="2026-01-01T10:00:00Z")
    world.upsert("src.crm_contacts", id="c1", email="ada@example.com", phone="+1 415 555 0202", name="Ada L",
                 company="AE", app_user_id="u1", updated_at="2026-01-02T10:00:00Z")
    world.upsert("src.support_users", id="s1", email="ada@example.com", phone="415.555.0303",
                 name="Ada Lovelace", updated_at="2026-01-03T10:00:00Z")
    world.build()
    person = world.person_of("app", "u1")
    assert world.person_of("crm", "c1") == person == world.person_of("support", "s1")
    return person


def test_app_phone_wins_with_provenance(any_world: IdentityWorld) -> None:
    world = any_world
    person = _seed_three_phones(world)
    golden = world.golden(person)
    assert golden["phone"] == "+14155550101"          # the app's value, normalised to E.164
    assert golden["phone__source"] == "app"
    assert golden["phone__updated_at"] == datetime(2026, 1, 1, 10, tzinfo=UTC)
    # most_recent: the support tool set the name last
    assert (golden["name"], golden["name__source"]) == ("Ada Lovelace", "support")
    assert golden["record_count"] == 3 and golden["systems"] == ["app", "crm", "support"]
    # the first build is the baseline: no events
    assert world.events("profile.updated") == []


def test_app_change_emits_profile_updated_once_and_crm_edit_does_not_override(any_world: IdentityWorld) -> None:
    world = any_world
    person = _seed_three_phones(world)
    world.upsert("src.app_users", id="u1", email="ada@example.com", phone="+1 (415) 555-0199", name="Ada",
                 plan="pro", updated_at="2026-02-01T10:00:00Z")
    result = world.build()
    assert result["profile_updates"] == 1 and result["kind"] == "incremental"
    events = world.events("profile.updated")
    assert [e.payload for e in events] == [
        {"person_id": person, "changed": {"phone": {"old": "+14155550101", "new": "+14155550199", "source": "app"}}}
    ]
    assert events[0].source == "identity"
    # rebuilding with nothing changed writes nothing more
    assert world.build()["profile_updates"] == 0
    assert world.build(full=True)["profile_updates"] == 0
    assert len(world.events("profile.updated")) == 1

    # a later CRM edit (newer than the app's) does not override the app's phone: app > crm
    world.upsert("src.crm_contacts", id="c1", email="ada@example.com", phone="+1 415 555 0777", name="Ada L",
                 company="AE", app_user_id="u1", updated_at="2026-03-01T10:00:00Z")
    assert world.build()["profile_updates"] == 0
    golden = world.golden(person)
    assert (golden["phone"], golden["phone__source"]) == ("+14155550199", "app")
    assert len(world.events("profile.updated")) == 1

    # the CRM phone takes over only when the app has no phone at all
    world.upsert("src.app_users", id="u1", email="ada@example.com", phone=None, name="Ada", plan="pro",
                 updated_at="2026-03-02T10:00:00Z")
    world.build()
    golden = world.golden(person)
    assert (golden["phone"], golden["phone__source"]) == ("+14155550777", "crm")
    last = world.events("profile.updated")[-1].payload
    assert last["changed"]["phone"] == {"old": "+14155550199", "new": "+14155550777", "source": "crm"}


def test_unchanged_field_keeps_its_own_updated_at(any_world: IdentityWorld) -> None:
    """A CRM edit of the name does not make the CRM's untouched phone look newer (provenance is per field)."""
    world = any_world
    world.upsert("src.crm_contacts", id="c9", email="eve@example.com", phone="+14155550900", name="Eve",
                 company="E", app_user_id=None, updated_at="2026-01-01T00:00:00Z")
    world.build()
    person = world.person_of("crm", "c9")
    world.upsert("src.crm_contacts", id="c9", email="eve@example.com", phone="+14155550900", name="Eve Adams",
                 company="E", app_user_id=None, updated_at="2026-05-01T00:00:00Z")
    world.build()
    golden = world.golden(person)
    assert golden["phone__updated_at"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert golden["name__updated_at"] == datetime(2026, 5, 1, tzinfo=UTC)
    (event,) = world.events("profile.updated")
    assert event.payload["changed"] == {"name": {"old": "Eve", "new": "Eve Adams", "source": "crm"}}


def test_most_frequent_and_sql_survivorship(tmp_path: object, engine_url: str | None) -> None:
    from pathlib import Path

    from tests.identity.conftest import IDENTITY_YML, make_world

    yml = IDENTITY_YML.replace("  plan: {survivorship: priority, priority: [app]}\n",
                               "  plan: {survivorship: sql, sql: \"max(value)\"}\n")
    yml = yml.replace("crm_id: {max_per_person: 1}", "crm_id: {}")
    w = make_world(Path(str(tmp_path)), yml, warehouse_url=engine_url)
    try:
        for i, company in enumerate(["Acme", "Globex", "Acme", "Globex", "Initech"]):
            w.upsert("src.crm_contacts", id=f"c{i}", email="x@example.com" if i == 0 else None,
                     phone=None, name="X", company=company, app_user_id="u1" if i != 3 else None,
                     updated_at=f"2026-01-0{i + 1}")
        w.build()
        person = w.person_of("crm", "c0")
        assert w.person_of("crm", "c2") == person != w.person_of("crm", "c3")
        golden = w.golden(person)
        # Acme twice, Globex and Initech once (Initech is the most recent): the most frequent wins
        assert golden["company"] == "Acme" and golden["company__source"] == "crm"
        w.upsert("src.app_users", id="u1", email=None, phone=None, name="X", plan="basic", updated_at="2026-01-01")
        w.upsert("src.app_users", id="u2", email="x@example.com", phone=None, name="X", plan="pro",
                 updated_at="2026-01-01")
        w.build()
        # u1 and u2 have different app ids, so the email cannot merge them (max_per_person: 1)
        assert w.person_of("app", "u1") != w.person_of("app", "u2")
        golden = w.golden(w.person_of("app", "u1"))
        assert golden["plan"] == "basic" and golden["plan__source"] == "app"
    finally:
        w.app.close()
