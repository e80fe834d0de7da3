"""Fixtures for the outbound channels: a real SMTP server (aiosmtpd) with STARTTLS and AUTH behind a
self-signed certificate made here, and a project whose ``channels:`` section points at it."""

from __future__ import annotations

import email
import email.policy
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ..conftest import free_port

USER, PASSWORD = "ops-bot", "s3cret-pass"


@dataclass
class MailServer:
    port: int
    cert: Path
    messages: list[email.message.Message] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    tls_sessions: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        self.recipients.append(list(envelope.rcpt_tos))
        if session.ssl is not None:
            self.tls_sessions += 1
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode() \
            and auth_data.password == PASSWORD.encode()
        if ok:
            self.logins.append(USER)
        return AuthResult(success=ok, handled=False)

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


def self_signed(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "smtp-ca.pem", folder / "smtp-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def mail_server(tmp_path: Path) -> Iterator[MailServer]:
    """STARTTLS required before AUTH, AUTH required before MAIL; the certificate is self-signed."""
    cert, key = self_signed(tmp_path / "server-cert")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = MailServer(free_port(), cert)
    controller = Controller(server, hostname="127.0.0.1", port=server.port, tls_context=context,
                            require_starttls=True, authenticator=server.authenticate, auth_required=True)
    controller.start()
    yield server
    controller.stop()
