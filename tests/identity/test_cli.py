"""`opsloop identity build`, `opsloop profile` and `opsloop segments` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.identity.conftest import make_world

SEGMENT = "description: Pro customers\nwhere: plan = 'pro'\n"


@pytest.fixture
def built(tmp_path: Path) -> Path:
    w = make_world(tmp_path, segments={"pro": SEGMENT})
    w.upsert("src.app_users", id="u1", email="ada@example.com", phone="(415) 555-0101", name="Ada", plan="pro",
             updated_at="2026-01-01T10:00:00Z")
    w.upsert("src.crm_contacts", id="c1", email="ADA@example.com", phone="+14155550202", name="Ada L",
             company="AE", app_user_id=None, updated_at="2026-01-02T10:00:00Z")
    w.app.close()
    return w.root


def test_build_then_profile_by_email_phone_record_and_id(built: Path) -> None:
    out = run_cli("identity", "build", "-p", str(built))
    assert out.returncode == 0, out.stderr
    assert "full build: 2 records (2 changed, 0 deleted), 2 re-resolved, 1 people" in out.stdout
    assert "segment pro: 1 members (+1 -0)" in out.stdout

    text = run_cli("profile", "Ada@Example.com", "-p", str(built))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("person p_")
    assert "  email: ada@example.com  (app, crm)" in lines
    assert "  phone: +14155550101  (app)" in lines
    assert "  app:u1  updated 2026-01-01 10:00:00" in lines
    assert "phone\t+14155550101\tapp\t2026-01-01 10:00:00" in lines
    assert "name\tAda L\tcrm\t2026-01-02 10:00:00" in lines
    assert "segments: pro" in lines

    person = lines[0].split()[1]
    for query in ("(415) 555-0101", "crm:c1", person):
        data = json.loads(run_cli("profile", query, "--json", "-p", str(built)).stdout)
        assert data["person_id"] == person
    assert data["fields"]["phone"] == {"value": "+14155550101", "source": "app",
                                       "updated_at": "2026-01-01 10:00:00+00:00"}
    assert sorted((r["system"], r["record_id"]) for r in data["records"]) == [("app", "u1"), ("crm", "c1")]


def test_profile_unknown_person_is_one_clear_line(built: Path) -> None:
    run_cli("identity", "build", "-p", str(built))
    out = run_cli("profile", "nobody@example.com", "-p", str(built))
    assert out.returncode == 1
    assert out.stderr.strip() == ("error: no person with id, record (system:record_id) or identifier "
                                  "'nobody@example.com'; check the spelling, or run `opsloop identity build` "
                                  "if the record is new")


def test_segments_list_and_preview(built: Path) -> None:
    before = run_cli("segments", "preview", "pro", "-p", str(built))
    assert before.returncode == 1 and "run `opsloop identity build` first" in before.stderr
    run_cli("identity", "build", "--no-segments", "-p", str(built))
    preview = json.loads(run_cli("segments", "preview", "pro", "--json", "-p", str(built)).stdout)
    assert (preview["members"], preview["would_enter"], preview["would_exit"]) == (1, 1, 0)
    assert preview["sample"][0]["plan"] == "pro"
    listed = run_cli("segments", "-p", str(built))
    assert listed.stdout.splitlines()[1].startswith("pro\t0\t")  # previewing records nothing
    run_cli("segments", "run", "-p", str(built))
    rows = json.loads(run_cli("segments", "--json", "-p", str(built)).stdout)
    assert [(r["segment"], r["members"], r["description"]) for r in rows] == [("pro", 1, "Pro customers")]
    missing = run_cli("segments", "preview", "nope", "-p", str(built))
    assert missing.returncode == 1 and "no segment 'nope'; segments: pro" in missing.stderr
