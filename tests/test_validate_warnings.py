"""`opsloop validate` tells errors from warnings: a destination it cannot reach and a table the first build,
pull or identity build creates are warnings (printed, exit 0); real mistakes are errors (exit 1);
``--strict`` makes warnings errors; ``--json`` lists both."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.identity.conftest import IDENTITY_YML, TABLES
from tests.syncs.conftest import FakeServer, SyncProject, people
from tests.syncs.fakes import FakeHubSpot


def _closed_port() -> int:
    """A port nothing listens on (bound, then released): connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def project(tmp_path: Path) -> SyncProject:
    from opsloop.project.scaffold import init_project

    root = tmp_path / "proj"
    init_project(root)
    with_email = IDENTITY_YML.replace("fields: {phone: phone,", "fields: {email: email, phone: phone,")
    with_email = with_email.replace("fields:\n", "fields:\n  email: {survivorship: most_recent}\n")
    (root / "identity.yml").write_text(with_email)
    sp = SyncProject(root)
    sp.customers(people(3))  # the warehouse exists; identity has never been built
    for relation, columns in TABLES.items():
        sp.sql(f"CREATE SCHEMA IF NOT EXISTS {relation.split('.')[0]}")
        sp.sql(f"CREATE TABLE {relation} ({columns})")
    sp.set_env(HUBSPOT_TOKEN="pat-test")
    return sp


@pytest.fixture
def hubspot() -> Iterator[FakeServer]:
    server = FakeServer(FakeHubSpot())
    yield server
    server.close()


def _golden_sync(sp: SyncProject, base_url: str, phone_field: str = "phone") -> None:
    sp.write_sync("crm_phone", f"""
        sql: select email, phone from identity.golden_records where email is not null
        key: email
        destination:
          type: hubspot
          object: contacts
          id_property: email
          base_url: {base_url}
        mapping:
          email: email
          {phone_field}: phone
        mode: upsert
    """)


def _validate(sp: SyncProject, *flags: str) -> tuple[int, str, str]:
    out = run_cli("validate", "--project", str(sp.root), *flags)
    return out.returncode, out.stdout, out.stderr


def test_first_identity_build_and_unreachable_destination_are_warnings(project: SyncProject) -> None:
    port = _closed_port()
    _golden_sync(project, f"http://127.0.0.1:{port}")
    code, stdout, stderr = _validate(project)
    assert code == 0, stderr
    assert "syncs/crm_phone.yml:1: warning: identity.golden_records does not exist yet; the first " \
           "`opsloop identity build` creates it" in stderr
    assert "syncs/crm_phone.yml:3: warning: cannot reach the destination to check the mapped fields: " in stderr
    assert "cannot connect" in stderr
    assert stdout.strip().endswith("2 warning(s)") and stdout.startswith("ok: ")

    # --strict (for CI): the same two, now errors
    code, _, stderr = _validate(project, "--strict")
    assert code == 1
    assert "2 problem(s) found (--strict: warnings count as errors)" in stderr

    # --json shows both kinds apart
    code, stdout, _ = _validate(project, "--json")
    assert code == 0
    report = json.loads(stdout)
    assert report["ok"] is True and report["errors"] == []
    assert [w["severity"] for w in report["warnings"]] == ["warning", "warning"]
    assert {w["line"] for w in report["warnings"]} == {1, 3}
    assert json.loads(_validate(project, "--json", "--strict")[1])["ok"] is False


def test_after_the_identity_build_the_columns_are_checked(project: SyncProject, hubspot: FakeServer) -> None:
    _golden_sync(project, hubspot.url)
    code, _, stderr = _validate(project)
    assert code == 0 and "golden_records does not exist yet" in stderr
    built = run_cli("identity", "build", "--project", str(project.root))
    assert built.returncode == 0, built.stderr
    code, stdout, stderr = _validate(project)
    assert (code, stderr) == (0, ""), stderr
    assert "warning" not in stdout


def test_real_mistakes_stay_errors_beside_warnings(project: SyncProject, hubspot: FakeServer) -> None:
    # a field HubSpot does not have (it answers), and a table nothing in the project creates
    _golden_sync(project, hubspot.url, phone_field="mobile_phone_typo")
    project.write_sync("other", f"""
        table: main.no_such_table
        key: email
        destination:
          type: hubspot
          base_url: {hubspot.url}
        mapping:
          email: email
    """)
    code, _, stderr = _validate(project)
    assert code == 1
    assert "syncs/crm_phone.yml:1: warning: identity.golden_records does not exist yet" in stderr
    assert "syncs/other.yml:1: cannot read the source" in stderr and "no_such_table" in stderr
    assert "hubspot has no field 'mobile_phone_typo'" in stderr
    assert "2 problem(s) found, and 1 warning(s)" in stderr
    report = json.loads(_validate(project, "--json")[1])
    assert report["ok"] is False and len(report["errors"]) == 2 and len(report["warnings"]) == 1


def test_a_source_table_before_the_first_pull_is_a_warning(project: SyncProject, hubspot: FakeServer) -> None:
    (project.root / "sources").mkdir(exist_ok=True)
    (project.root / "sources" / "crm.yml").write_text(f"type: hubspot\nbase_url: {hubspot.url}\n")
    project.write_sync("contacts_back", f"""
        table: crm.contacts
        key: email
        destination:
          type: hubspot
          base_url: {hubspot.url}
        mapping:
          email: email
    """)
    code, _, stderr = _validate(project)
    assert code == 0, stderr
    assert "syncs/contacts_back.yml:1: warning: crm.contacts does not exist yet; the first `opsloop pull crm` " \
           "creates it" in stderr
    # a table of the same source that no stream fills is a mistake
    (project.root / "syncs" / "contacts_back.yml").write_text(
        (project.root / "syncs" / "contacts_back.yml").read_text().replace("crm.contacts", "crm.contactz"))
    code, _, stderr = _validate(project)
    assert code == 1 and "syncs/contacts_back.yml:1: cannot read the source" in stderr
