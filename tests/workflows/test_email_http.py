"""email.send over real SMTP (aiosmtpd with STARTTLS and AUTH) and http.request with retries and an
Idempotency-Key, from YAML workflows."""

from __future__ import annotations

import email
import json
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ..conftest import ServerThread, free_port, wait_for
from .conftest import emit, wait_runs, write_files


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"bot" and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[Inbox, int, Path]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            authenticator=_authenticate, auth_required=True)
    controller.start()
    yield inbox, port, cert
    controller.stop()


FLOW = """
on: signup.created
retries: 3
retry_backoff: 100ms
steps:
  - id: welcome
    email.send:
      to: "{{ event.data.email }}"
      subject: "Welcome, {{ event.data.name }}"
      body: "Hello {{ event.data.name }}, thanks for signing up."
  - id: crm
    http.request:
      url: "{{ event.data.hook }}"
      json: {email: "{{ event.data.email }}", message_id: "{{ steps.welcome.message_id }}"}
"""


class Hook:
    """An HTTP API that fails with 503 + Retry-After once, then accepts; it records Idempotency-Key."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str | None, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = 503 if not hook.seen else (422 if body["email"].startswith("bad") else 200)
                hook.seen.append((status, self.headers.get("Idempotency-Key"), body))
                payload = json.dumps({"ok": status == 200, "error": "invalid email" if status == 422 else None})
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", "0.2")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/contacts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_email_over_starttls_with_login_then_http_with_retry(project_dir: Path, smtp: tuple[Inbox, int, Path],
                                                             start: Callable[..., ServerThread]) -> None:
    inbox, port, cert = smtp
    with (project_dir / ".env").open("a") as env:
        env.write(f"SMTP_HOST=127.0.0.1\nSMTP_PORT={port}\nSMTP_USERNAME=bot\nSMTP_PASSWORD=s3cret\n"
                  f"SMTP_FROM=hello@example.com\nSMTP_CA_FILE={cert}\n")
    write_files(project_dir, {"workflows/welcome.yml": FLOW})
    hook = Hook()
    srv = start(project_dir)
    emit(srv, "signup.created", {"email": "ada@example.com", "name": "Ada", "hook": hook.url})
    [run] = wait_runs(srv, 1, workflow="welcome")
    [msg] = inbox.messages
    assert msg["To"] == "ada@example.com" and msg["Subject"] == "Welcome, Ada"
    assert msg["From"] == "hello@example.com" and msg["Message-ID"] == f"<{run.id}.welcome@opsloop>"
    assert "thanks for signing up" in msg.get_payload()
    assert [s for s, _, _ in hook.seen] == [503, 200]
    assert hook.seen[0][1] == hook.seen[1][1] == f"{run.id}:crm"  # the same key on the retry
    assert hook.seen[1][2] == {"email": "ada@example.com", "message_id": f"<{run.id}.welcome@opsloop>"}
    assert run.output == {"status": 200, "body": {"ok": True, "error": None}}
    emit(srv, "signup.created", {"email": "bad@example.com", "name": "Bad", "hook": hook.url})
    [failed] = wait_runs(srv, 1, status="failed", workflow="welcome")
    assert "answered 422" in str(failed.error) and "invalid email" in str(failed.error)


def test_wrong_smtp_password_fails_the_run_with_a_clear_message(project_dir: Path, smtp: tuple[Inbox, int, Path],
                                                                start: Callable[..., ServerThread]) -> None:
    inbox, port, cert = smtp
    with (project_dir / ".env").open("a") as env:
        env.write(f"SMTP_HOST=127.0.0.1\nSMTP_PORT={port}\nSMTP_USERNAME=bot\nSMTP_PASSWORD=wrong\n"
                  f"SMTP_CA_FILE={cert}\n")
    write_files(project_dir, {"workflows/welcome.yml": FLOW})
    srv = start(project_dir)
    emit(srv, "signup.created", {"email": "ada@example.com", "name": "Ada", "hook": "http://127.0.0.1:9/"})
    [failed] = wait_runs(srv, 1, status="failed", workflow="welcome")
    assert "SMTP login to 127.0.0.1" in str(failed.error) and "SMTP_PASSWORD" in str(failed.error)
    assert inbox.messages == [] and wait_for(lambda: True)
