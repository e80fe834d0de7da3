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
    auth_attempts: int = 0
    tls_sessions: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        self.recipients.append(list(envelope.rcpt_tos))
        if session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None:
            self.tls_sessions += 1  # after STARTTLS, or implicit TLS from the first byte
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        self.auth_attempts += 1
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


def _server(tmp_path: Path, implicit_tls: bool) -> tuple[MailServer, Controller]:
    cert, key = self_signed(tmp_path / "server-cert")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = MailServer(free_port(), cert)
    # aiosmtpd offers AUTH only after its own STARTTLS unless told the connection is already safe; with
    # implicit TLS it is (the socket speaks TLS from the first byte)
    tls: dict[str, Any] = ({"ssl_context": context, "auth_require_tls": False} if implicit_tls
                           else {"tls_context": context, "require_starttls": True})
    controller = Controller(server, hostname="127.0.0.1", port=server.port, authenticator=server.authenticate,
                            auth_required=True, **tls)
    controller.start()
    return server, controller


@pytest.fixture
def mail_server(tmp_path: Path) -> Iterator[MailServer]:
    """STARTTLS required before AUTH, AUTH required before MAIL; the certificate is self-signed."""
    server, controller = _server(tmp_path, implicit_tls=False)
    yield server
    controller.stop()


@pytest.fixture
def smtps_server(tmp_path: Path) -> Iterator[MailServer]:
    """Implicit TLS from the first byte (SMTPS, what port 465 speaks), AUTH required."""
    server, controller = _server(tmp_path, implicit_tls=True)
    yield server
    controller.stop()
