"""The SMTP channel from the email destination: STARTTLS and implicit TLS against a real aiosmtpd, the
certificate trusted only through ca_file, a refused login reported once per row without splitting."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsloop.project.scaffold import init_project

from ..syncs.conftest import SyncProject, people
from .conftest import PASSWORD, USER, MailServer


def mail_project(tmp_path: Path, server: MailServer, security: str, password: str = PASSWORD) -> SyncProject:
    root = tmp_path / "proj"
    init_project(root)
    (root / "ca.pem").write_bytes(server.cert.read_bytes())
    with (root / "opsloop.yml").open("a", encoding="utf-8") as f:
        f.write(f"\nchannels:\n  smtp: {{host: 127.0.0.1, port: {server.port}, security: {security}, "
                "from: team@shop.example, ca_file: ca.pem}\n")
    sp = SyncProject(root)
    sp.set_env(SMTP_USERNAME=USER, SMTP_PASSWORD=password)
    sp.customers(people(3))
    sp.write_sync("welcome", """
        table: customers
        key: email
        destination: {type: email, to: "{{ email }}", subject: "Welcome, {{ name }}", body: "On {{ plan }}."}
        mapping: {email: email, name: first_name, plan: plan}
        mode: insert
    """)
    return sp


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # aiosmtpd, see conftest
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_the_email_destination_sends_through_the_channel(tmp_path: Path, security: str,
                                                         request: pytest.FixtureRequest) -> None:
    server: MailServer = request.getfixturevalue("mail_server" if security == "starttls" else "smtps_server")
    sp = mail_project(tmp_path, server, security)
    result = sp.run("welcome")
    assert (result.status, result.sent, result.failed) == ("ok", 3, 0), result.error
    assert sorted(server.subjects()) == ["Welcome, User1", "Welcome, User2", "Welcome, User3"]
    assert {m["From"] for m in server.messages} == {"team@shop.example"}
    assert server.tls_sessions == 3 and server.logins == [USER]  # one connection, one login per batch


def test_a_refused_login_fails_each_row_once_with_the_variables_to_check(tmp_path: Path,
                                                                        mail_server: MailServer) -> None:
    sp = mail_project(tmp_path, mail_server, "starttls", password="wrong")
    result = sp.run("welcome")
    assert (result.sent, result.failed) == (0, 3)
    errors = {row["error"] for row in sp.state("welcome").values()}
    assert errors == {f"SMTP login to 127.0.0.1:{mail_server.port} refused: 535 "
                      "(check SMTP_USERNAME / SMTP_PASSWORD)"}
    # one connection for the batch (smtplib tries AUTH PLAIN, then LOGIN): not split into a login per row
    assert mail_server.auth_attempts == 2 and mail_server.messages == []


def test_without_ca_file_the_self_signed_server_is_not_trusted(tmp_path: Path, mail_server: MailServer) -> None:
    sp = mail_project(tmp_path, mail_server, "starttls")
    config = sp.root / "opsloop.yml"
    config.write_text(config.read_text().replace(", ca_file: ca.pem", ""))
    result = sp.run("welcome")
    assert (result.sent, result.failed) == (0, 3)
    [error] = {row["error"] for row in sp.state("welcome").values()}
    assert "certificate is not trusted" in error and "ca_file" in error
    assert mail_server.messages == [] and mail_server.auth_attempts == 0
