"""`opsloop identity build`, `opsloop profile` and `opsloop segments` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.identity.conftest import ada_in_two_systems

SEGMENT = "description: Pro customers\nwhere: plan = 'pro'\n"


@pytest.fixture
def built(tmp_path: Path) -> Path:
    return ada_in_two_systems(tmp_path, segments={"pro": SEGMENT})


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
    from typer.testing import CliRunner

    from opsloop.cli import app as cli_app

    for query in ("(415) 555-0101", "crm:c1", person):
        data = json.loads(CliRunner().invoke(cli_app, ["profile", query, "--json", "-p", str(built)]).stdout)
        assert data["person_id"] == person
    assert data["fields"]["phone"] == {"value": "+14155550101", "source": "app",
                                       "updated_at": "2026-01-01 10:00:00+00:00"}
    assert sorted((r["system"], r["record_id"]) for r in data["records"]) == [("app", "u1"), ("crm", "c1")]

    out = run_cli("profile", "nobody@example.com", "-p", str(built))
    assert out.returncode == 1
    assert out.stderr.strip() == ("error: no person with id, record (system:record_id) or identifier "
                                  "'nobody@example.com'; check the spelling, or run `opsloop identity build` "
                                  "if the record is new")


def test_segments_list_and_preview(built: Path) -> None:
    from typer.testing import CliRunner

    from opsloop.cli import app as cli_app

    def cli(*args: str) -> Any:
        return CliRunner().invoke(cli_app, [*args, "-p", str(built)])

    before = cli("segments", "preview", "pro")
    assert before.exit_code == 1 and "run `opsloop identity build` first" in before.stderr
    cli("identity", "build", "--no-segments")
    preview = json.loads(cli("segments", "preview", "pro", "--json").stdout)
    assert (preview["members"], preview["would_enter"], preview["would_exit"]) == (1, 1, 0)
    assert preview["sample"][0]["plan"] == "pro"
    listed = cli("segments")
    assert listed.stdout.splitlines()[1].startswith("pro\t0\t")  # previewing records nothing
    cli("segments", "run")
    rows = json.loads(cli("segments", "--json").stdout)
    assert [(r["segment"], r["members"], r["description"]) for r in rows] == [("pro", 1, "Pro customers")]
    missing = cli("segments", "preview", "nope")
    assert missing.exit_code == 1 and "no segment 'nope'; segments: pro" in missing.stderr
