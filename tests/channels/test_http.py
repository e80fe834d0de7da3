"""The HTTP channel against real local servers: 429/503 answered with Retry-After are sent again within the
call after the delay the server asked for; a delay past max_retry_delay goes back to the caller as a
transient error carrying it; an HTTPS server behind a private CA is trusted through ca_file only."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsloop.channels import HttpSettings
from opsloop.channels import http as http_channel
from opsloop.destinations import DestinationContext, RowOp
from opsloop.destinations.zendesk import ZendeskConfig, ZendeskDestination
from opsloop.errors import TerminalDeliveryError, TransientDeliveryError

from .conftest import self_signed


class Scripted:
    """An HTTP(S) server answering from a script of (status, headers) before a default 200 JSON answer."""

    def __init__(self, cert: tuple[Path, Path] | None = None) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.seen: list[tuple[float, str, str, dict[str, str], bytes]] = []
        self.reply: Any = {"ok": True}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _do(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.seen.append((time.monotonic(), self.command, self.path, dict(self.headers), body))
                status, headers = outer.script.pop(0) if outer.script else (200, {})
                reply = outer.reply(self.path) if callable(outer.reply) else outer.reply
                data = json.dumps(reply if status == 200 else {"error": f"HTTP {status}"}).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _do

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*cert)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def api() -> Iterator[Scripted]:
    server = Scripted()
    yield server
    server.close()


def test_retry_after_is_waited_for_within_the_call(api: Scripted) -> None:
    api.script = [(429, {"Retry-After": "0.4"}), (503, {"Retry-After": "0"})]
    started = time.monotonic()
    with http_channel.client(HttpSettings(retries=2)) as client:
        response = client.post(f"{api.url}/hook", json={"a": 1}, headers={"Idempotency-Key": "k1"})
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert len(api.seen) == 3
    assert api.seen[1][0] - api.seen[0][0] >= 0.4  # the server's Retry-After, not sooner
    assert {s[3]["Idempotency-Key"] for s in api.seen} == {"k1"} and {s[4] for s in api.seen} == {b'{"a":1}'}
    assert time.monotonic() - started < 5


def test_without_retry_after_the_backoff_doubles_and_retries_stop_at_the_limit(api: Scripted) -> None:
    api.script = [(502, {}), (504, {}), (503, {})]
    with http_channel.client(HttpSettings(retries=2)) as client:
        response = client.get(f"{api.url}/x")
    assert response.status_code == 503 and len(api.seen) == 3  # two retries, then the caller sees the 503
    gaps = [b[0] - a[0] for a, b in zip(api.seen, api.seen[1:], strict=False)]
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0


def test_a_long_retry_after_goes_back_to_the_caller_with_the_delay(api: Scripted, tmp_path: Path) -> None:
    api.script = [(429, {"Retry-After": "120"})]
    api.reply = {"job_status": {"id": "j1", "status": "completed", "results": [{"index": 0, "id": 7,
                                                                                  "action": "create"}]}}
    ctx = DestinationContext(sync="s", root=tmp_path, secret={"ZENDESK_TOKEN": "t", "ZENDESK_EMAIL": "a@b.co"}.get)
    dest = ZendeskDestination(ZendeskConfig(type="zendesk", base_url=api.url), ctx)
    try:
        with pytest.raises(TransientDeliveryError) as info:
            dest.send([RowOp("ada@example.com", "upsert", {"name": "Ada"}, "idem-1")])
        assert info.value.retry_after == 120 and len(api.seen) == 1
        [result] = dest.send([RowOp("ada@example.com", "upsert", {"name": "Ada"}, "idem-1")])
        assert result.ok and result.dest_id == "7"
    finally:
        dest.close()
    # the agent's email came from ZENDESK_EMAIL (as the zendesk source reads it), not from the YAML
    import base64

    auth = api.seen[-1][3]["Authorization"].removeprefix("Basic ")
    assert base64.b64decode(auth).decode() == "a@b.co/token:t"


def test_a_private_ca_is_trusted_through_ca_file_only(tmp_path: Path) -> None:
    cert = self_signed(tmp_path / "certs")
    server = Scripted(cert)
    try:
        with http_channel.client(HttpSettings(retries=0)) as client, pytest.raises(httpx.ConnectError,
                                                                                     match="CERTIFICATE_VERIFY"):
            client.get(f"{server.url}/x")
        with http_channel.client(HttpSettings(retries=0, ca_file=cert[0])) as client:
            assert client.get(f"{server.url}/x").status_code == 200
        # a destination's own ca_file (relative to the project folder) overrides the channel's
        server.reply = {"results": [{"name": "email"}, {"name": "phone"}]}
        from opsloop.destinations.hubspot import HubSpotConfig, HubSpotDestination

        (tmp_path / "proj").mkdir()
        (tmp_path / "proj" / "ca.pem").write_bytes(cert[0].read_bytes())
        ctx = DestinationContext(sync="s", root=tmp_path / "proj", secret={"HUBSPOT_TOKEN": "pat"}.get)
        hub = HubSpotDestination(HubSpotConfig(type="hubspot", base_url=server.url, ca_file="ca.pem"), ctx)
        try:
            assert hub.declared_fields() == {"email", "phone"}
        finally:
            hub.close()
        # without it the destination fails terminally (retrying cannot fix a certificate), naming ca_file
        untrusted = HubSpotDestination(HubSpotConfig(type="hubspot", base_url=server.url), ctx)
        try:
            with pytest.raises(TerminalDeliveryError, match=r"certificate is not trusted .*ca_file"):
                untrusted.declared_fields()
        finally:
            untrusted.close()
    finally:
        server.close()


def test_the_slack_channel_trusts_a_private_ca_through_ca_file(tmp_path: Path) -> None:
    from opsloop.channels import SlackClient, SlackRefused, SlackSettings

    cert = self_signed(tmp_path / "certs")
    server = Scripted(cert)
    server.reply = {"ok": True, "channel": "C0SALES001", "ts": "1700000000.000100"}
    try:
        trusted = SlackClient(SlackSettings(token="xoxb-1", api_url=f"{server.url}/api/", ca_file=cert[0]))
        assert trusted.post_message("#sales", "hi")["ts"] == "1700000000.000100"
        assert server.seen[-1][2] == "/api/chat.postMessage"
        assert server.seen[-1][3]["Authorization"] == "Bearer xoxb-1"
        server.reply = {"ok": False, "error": "invalid_auth"}
        revoked = SlackClient(SlackSettings(token_env="OPS_SLACK", token="xoxb-old", api_url=f"{server.url}/api/",
                                            ca_file=cert[0]))
        with pytest.raises(SlackRefused, match=r"invalid_auth \(the bot token in OPS_SLACK is wrong or revoked\)"):
            revoked.post_message("#sales", "hi")
        untrusted = SlackClient(SlackSettings(token="xoxb-1", api_url=f"{server.url}/api/"))
        with pytest.raises(TerminalDeliveryError, match=r"is not trusted .*ca_file"):
            untrusted.post_message("#sales", "hi")
    finally:
        server.close()
