"""The identity graph: merge rules, limits against over-merging, blocklists, overrides, stable ids."""

from __future__ import annotations

from pathlib import Path

from tests.identity.conftest import IDENTITY_YML, IdentityWorld, make_world


def _crm(world: IdentityWorld, rid: str, email: str | None = None, phone: str | None = None,
         app_user_id: str | None = None, when: str = "2026-01-01") -> None:
    world.upsert("src.crm_contacts", id=rid, email=email, phone=phone, name=rid, company=None,
                 app_user_id=app_user_id, updated_at=when)


def _support(world: IdentityWorld, rid: str, email: str | None = None, phone: str | None = None) -> None:
    world.upsert("src.support_users", id=rid, email=email, phone=phone, name=rid, updated_at="2026-01-01")


def test_shared_email_and_phone_do_not_merge_two_crm_contacts(any_world: IdentityWorld) -> None:
    world = any_world
    _crm(world, "c1", email="family@example.com", phone="+14155550100")
    _crm(world, "c2", email="Family@Example.com", phone="(415) 555-0100")
    _support(world, "s1", email="family@example.com")
    result = world.build()
    assert world.person_of("crm", "c1") != world.person_of("crm", "c2")
    # the support record shares the refused email with both: it is merged with neither
    assert world.person_of("support", "s1") not in {world.person_of("crm", "c1"), world.person_of("crm", "c2")}
    assert result["refused"] == 2 and result["persons"] == 3
    conflicts = world.rows("SELECT rule, id_type, value, reason FROM identity.conflicts ORDER BY rule")
    assert [(c["rule"], c["id_type"], c["value"]) for c in conflicts] == [
        ("email", "crm_id", "family@example.com"), ("phone", "crm_id", "+14155550100")]
    assert "max_per_person" in conflicts[0]["reason"]


def test_email_merges_when_no_limit_is_broken(any_world: IdentityWorld) -> None:
    world = any_world
    _crm(world, "c1", email="ada@example.com")
    _support(world, "s1", email=" ADA@example.com")
    _support(world, "s2", phone="415-555-0101")
    _crm(world, "c2", phone="+14155550101")
    world.build()
    assert world.person_of("crm", "c1") == world.person_of("support", "s1")
    assert world.person_of("crm", "c2") == world.person_of("support", "s2") != world.person_of("crm", "c1")


def test_blocked_values_never_link(any_world: IdentityWorld) -> None:
    world = any_world
    _support(world, "s1", email="test@example.com")
    _support(world, "s2", email="TEST@example.com ")
    _support(world, "s3", email="unknown")
    _support(world, "s4", email="Unknown")
    world.build()
    people = {world.person_of("support", f"s{i}") for i in range(1, 5)}
    assert len(people) == 4
    assert world.rows("SELECT count(*) AS n FROM identity.identifiers WHERE id_type = 'email'")[0]["n"] == 0


def test_shared_number_limit_and_blocklist_per_identifier(tmp_path: Path, engine_url: str | None) -> None:
    yml = IDENTITY_YML.replace(
        "  phone: {normalize: phone, region: US, max_per_person: 3}",
        "  phone: {normalize: phone, region: US, max_records_per_value: 2, block: ['(800) 555-0000']}")
    w = make_world(tmp_path, yml, warehouse_url=engine_url)
    try:
        for i in range(3):  # a front-desk number on three support users
            _support(w, f"s{i}", phone="+1 212 555 0000")
        _support(w, "s7", phone="800-555-0000")
        _support(w, "s8", phone="+18005550000")
        _support(w, "s5", phone="+1 212 555 0001")
        _crm(w, "c5", phone="2125550001")
        w.build()
        assert len({w.person_of("support", f"s{i}") for i in range(3)}) == 3
        assert w.person_of("support", "s7") != w.person_of("support", "s8")
        assert w.person_of("support", "s5") == w.person_of("crm", "c5")
        reasons = {r["value"]: r["reason"] for r in w.rows("SELECT value, reason FROM identity.conflicts")}
        assert "max_records_per_value" in reasons["+12125550000"]
    finally:
        w.app.close()


def test_person_ids_are_stable_across_runs_and_when_records_join(any_world: IdentityWorld) -> None:
    world = any_world
    world.upsert("src.app_users", id="u1", email="ada@example.com", phone=None, name="Ada", plan="pro",
                 updated_at="2026-01-01")
    world.build()
    ada = world.person_of("app", "u1")
    assert ada.startswith("p_")
    world.build()
    world.build(full=True)
    assert world.person_of("app", "u1") == ada
    # a new record joins Ada: she keeps her id
    _crm(world, "c1", email="ada@example.com", app_user_id="u1")
    result = world.build()
    assert result["kind"] == "incremental" and result["scope"] == 2
    assert world.person_of("crm", "c1") == ada
    # a separate person appears later, then a record links the two: the earlier person's id survives
    _support(world, "s1", phone="+14155550111")
    world.build()
    later = world.person_of("support", "s1")
    assert later != ada
    _support(world, "s2", email="ada@example.com", phone="+14155550111")
    world.build()
    assert {world.person_of(s, r) for s, r in [("app", "u1"), ("crm", "c1"), ("support", "s1"),
                                                ("support", "s2")]} == {ada}
    merged = world.rows("SELECT merged_into, retired_at FROM identity.persons WHERE person_id = ?", (later,))
    assert merged[0]["merged_into"] == ada and merged[0]["retired_at"] is not None
    assert world.rows("SELECT count(*) AS n FROM identity.golden_records WHERE person_id = ?", (later,))[0]["n"] == 0
    # the link goes away again: the larger part keeps Ada's id, the other part gets a fresh one
    world.sql("DELETE FROM src.support_users WHERE id = 's2'")
    result = world.build()
    assert result["deleted"] == 1
    assert world.person_of("app", "u1") == ada
    split = world.person_of("support", "s1")
    assert split not in (ada, later)
    assert world.build(full=True)["persons"] == 2
    assert (world.person_of("app", "u1"), world.person_of("support", "s1")) == (ada, split)


def test_manual_links_and_unlinks(tmp_path: Path, engine_url: str | None) -> None:
    yml = IDENTITY_YML + "links:\n  - [crm:c1, support:s9]\nunlinks:\n  - [app:u1, support:s1]\n"
    w = make_world(tmp_path, yml, warehouse_url=engine_url)
    try:
        _crm(w, "c1", email="one@example.com")
        _support(w, "s9", email="other@example.com")
        w.upsert("src.app_users", id="u1", email="same@example.com", phone=None, name="A", plan=None,
                 updated_at="2026-01-01")
        _support(w, "s1", email="same@example.com")
        w.build()
        assert w.person_of("crm", "c1") == w.person_of("support", "s9")
        assert w.person_of("app", "u1") != w.person_of("support", "s1")
        reasons = [r["reason"] for r in w.rows("SELECT reason FROM identity.conflicts")]
        assert reasons == ["would join records kept apart by unlinks"]
    finally:
        w.app.close()


def test_identity_yml_errors_name_file_line_and_fix(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    bad = IDENTITY_YML.replace("  - phone\n", "  - phone\n  - fax\n").replace(
        "  phone: {survivorship: priority, priority: [app, crm, support], normalize: phone}",
        "  phone: {survivorship: priority, priority: [app, crm, helpdesk]}")
    root = tmp_path / "proj"
    from opsloop.project.scaffold import init_project

    init_project(root)
    (root / "identity.yml").write_text(bad)
    out = run_cli("validate", "-p", str(root))
    assert out.returncode == 1
    lines = bad.splitlines()
    fax_line = lines.index("  - fax") + 1
    assert f"identity.yml:{fax_line}: merge rule uses unknown identifier 'fax'" in out.stderr
    assert "priority names unknown system 'helpdesk'" in out.stderr
    assert "Traceback" not in out.stderr


def test_memory_limit_applies_during_the_build_only(tmp_path: Path) -> None:
    w = make_world(tmp_path, IDENTITY_YML + "memory_limit: 300MB\n")
    try:
        before = w.rows("SELECT current_setting('memory_limit') AS v")[0]["v"]
        _crm(w, "c1", email="a@example.com")
        assert w.build()["records"] == 1
        assert w.rows("SELECT current_setting('memory_limit') AS v")[0]["v"] == before
    finally:
        w.app.close()


def test_values_that_pass_alone_but_break_a_limit_together_do_not_merge(tmp_path: Path, engine_url: str | None) -> None:
    yml = IDENTITY_YML.replace("identifiers: {support_id: id, email: email, phone: phone}",
                               "identifiers: {support_id: id, email: [email, name], phone: phone}")
    w = make_world(tmp_path, yml, warehouse_url=engine_url)
    try:
        _crm(w, "c1", email="x@example.com")
        _crm(w, "c2", email="y@example.com")
        w.upsert("src.support_users", id="s1", email="x@example.com", phone=None, name="y@example.com",
                 updated_at="2026-01-01")  # links c1 (by x) and c2 (by y): two CRM ids together
        result = w.build()
        assert len({w.person_of("crm", "c1"), w.person_of("crm", "c2"), w.person_of("support", "s1")}) == 3
        assert result["refused"] == 2
        reasons = {r["value"]: r["reason"] for r in w.rows("SELECT value, reason FROM identity.conflicts")}
        assert reasons == {"x@example.com": "would, with other values, give one person more than max_per_person "
                                            "values",
                           "y@example.com": "would, with other values, give one person more than max_per_person "
                                            "values"}
    finally:
        w.app.close()


def test_an_identifier_no_source_maps_still_normalises_the_fields_that_use_it(tmp_path: Path,
                                                                             engine_url: str | None) -> None:
    """`phone` declared as an identifier, used by a field's `normalize:`, mapped by no source's identifiers:
    the build used to fail on every run ("Table with name _map_1 does not exist")."""
    yml = IDENTITY_YML.replace("identifiers: {app_user_id: id, email: email, phone: phone}",
                               "identifiers: {app_user_id: id, email: email}")
    yml = yml.replace("identifiers: {crm_id: id, email: email, phone: phone, app_user_id: app_user_id}",
                      "identifiers: {crm_id: id, email: email, app_user_id: app_user_id}")
    yml = yml.replace("identifiers: {support_id: id, email: email, phone: phone}",
                      "identifiers: {support_id: id, email: email}")
    assert "phone: phone}" not in yml.split("fields:")[0]
    w = make_world(tmp_path, identity_yml=yml, warehouse_url=engine_url)
    try:
        w.upsert("src.app_users", id="u1", email="ada@example.com", phone="(415) 555-0101", name="Ada",
                 plan="pro", updated_at="2026-01-01T10:00:00Z")
        w.build()
        assert w.golden(w.person_of("app", "u1"))["phone"] == "+14155550101"
    finally:
        w.app.close()
