"""The Slack channel: one Web API client for workflow steps, the slack destination and alerts.

``call(method, **params)`` sends ``chat.*`` methods as JSON and read methods (``conversations.*``) as GET
query parameters, and turns Slack's answers into typed errors: HTTP 429 (``ratelimited``) and Slack's
server-side errors are transient and carry ``Retry-After``; any other ``ok: false`` is a
:class:`SlackRefused` with Slack's error code and a hint. The token, API root, timeout and CA file come
from ``channels.slack`` (docs/project.md, "Outbound channels").

Calls go through one ``httpx.Client`` per ``SlackClient``: its pool keeps connections to the API open
between calls (up to ``KEEPALIVE``, one per thread calling at once), so a call after the first pays
neither a TCP nor a TLS handshake. It makes no retries of its own: a 429's ``Retry-After`` goes back to
the caller in the :class:`TransientDeliveryError`, for the workflow engine or sync runner to honour.
"""

from __future__ import annotations

import json
import threading

import httpx

from .._json import JsonObject
from ..errors import TerminalDeliveryError, TransientDeliveryError
from ._settings import SlackSettings
from .http import CA_HINT, certificate_error, retry_after, ssl_context, why_untrusted

KEEPALIVE = 32
"""Connections kept open to the Slack API per client (the workflow engine calls from up to 32 threads)."""
TRANSIENT_ERRORS = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error",
                              "service_unavailable", "request_timeout"})
HINTS = {
    "channel_not_found": "check the channel name, and invite the bot to it",
    "not_in_channel": "invite the bot to the channel (/invite @yourbot)",
    "invalid_auth": "the bot token in {token_env} is wrong or revoked",
    "not_authed": "set the bot token: {token_env}=xoxb-... in .env",
    "missing_scope": "add the scope Slack names to the app's bot token scopes and reinstall the app",
    "message_not_found": "the message was deleted, or the handle points at another channel",
}


class SlackRefused(TerminalDeliveryError):
    """Slack answered ``ok: false`` with an error that retrying will not fix; ``code`` is Slack's error."""

    def __init__(self, method: str, code: str, needed: str | None = None,
                 token_env: str = "SLACK_BOT_TOKEN") -> None:  # noqa: S107 (the name of an environment variable)
        hint = HINTS.get(code, "").format(token_env=token_env)
        if code == "missing_scope" and needed:
            hint = f"add the bot token scope {needed} and reinstall the app"
        super().__init__(f"Slack {method} failed: {code}" + (f" ({hint})" if hint else ""))
        self.method = method
        self.code = code


class SlackClient:
    """A thread-safe Slack Web API client on the channel's settings; ``close()`` ends its connections."""

    def __init__(self, settings: SlackSettings) -> None:
        self.settings = settings
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def sandbox(self) -> bool:
        return self.settings.sandbox

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                limits = httpx.Limits(max_connections=None, max_keepalive_connections=KEEPALIVE)
                transport = httpx.HTTPTransport(verify=ssl_context(self.settings.ca_file), limits=limits)
                self._client = httpx.Client(
                    base_url=self.settings.api_url, transport=transport, timeout=self.settings.timeout,
                    headers={"Authorization": f"Bearer {self.settings.token}"},
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def call(self, method: str, **params: object) -> JsonObject:
        """Call a Web API method; the answer's data, or a typed error."""
        if self.sandbox:
            raise TerminalDeliveryError(f"Slack {method}: no bot token; set {self.settings.token_env}")
        clean = {k: v for k, v in params.items() if v is not None}
        try:
            if method.startswith("chat."):
                body = json.dumps(clean, separators=(",", ":")).encode()
                response = self._http().post(method, content=body,
                                             headers={"Content-Type": "application/json; charset=utf-8"})
            else:  # read methods take query parameters
                query = {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in clean.items()}
                response = self._http().get(method, params=query)
        except httpx.TransportError as exc:
            bad_cert = certificate_error(exc)
            if bad_cert is not None:
                raise TerminalDeliveryError(f"Slack {method}: the certificate of {self.settings.api_url} is not "
                                            f"trusted ({why_untrusted(bad_cert)}); {CA_HINT}") from exc
            raise TransientDeliveryError(f"Slack {method}: cannot reach {self.settings.api_url}: "
                                         f"{exc or type(exc).__name__}") from exc
        return self._answer(method, response)

    def _answer(self, method: str, response: httpx.Response) -> JsonObject:
        """Slack's data when it says ``ok``; else the typed error its status and ``error`` code call for."""
        status = response.status_code
        try:
            parsed = json.loads(response.content) if response.content else {}
        except ValueError:
            parsed = None
        data: JsonObject = parsed if isinstance(parsed, dict) else {}
        if status == 200 and data.get("ok"):
            return data
        error = data.get("error")
        if status == 429 or error in TRANSIENT_ERRORS or status >= 500:
            raise TransientDeliveryError(f"Slack {method}: {error or f'HTTP {status}'}",
                                         retry_after=retry_after(response))
        if parsed is None or not isinstance(error, str):
            error = f"HTTP {status}" if status != 200 else "invalid_response (not a Slack API answer)"
        needed = data.get("needed")
        raise SlackRefused(method, str(error), needed if isinstance(needed, str) else None, self.settings.token_env)

    def post_message(self, channel: str, text: str, **extra: object) -> JsonObject:
        """``chat.postMessage``; the answer holds ``channel`` (the id) and ``ts``."""
        return self.call("chat.postMessage", channel=channel, text=text, **extra)
