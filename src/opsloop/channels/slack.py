"""The Slack channel: one Web API client (``slack_sdk``) for workflow steps, the slack destination and alerts.

``call(method, **params)`` sends ``chat.*`` methods as JSON and read methods (``conversations.*``) as GET
query parameters, and turns Slack's answers into typed errors: HTTP 429 (``ratelimited``) and Slack's
server-side errors are transient and carry ``Retry-After``; any other ``ok: false`` is a
:class:`SlackRefused` with Slack's error code and a hint. The token, API root, timeout and CA file come
from ``channels.slack`` (docs/project.md, "Outbound channels").
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .._json import JsonObject
from ..errors import TerminalDeliveryError, TransientDeliveryError
from ._settings import SlackSettings
from .http import CA_HINT, certificate_error, ssl_context, why_untrusted

if TYPE_CHECKING:
    from slack_sdk import WebClient

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
    """A thread-safe Slack Web API client on the channel's settings."""

    def __init__(self, settings: SlackSettings) -> None:
        self.settings = settings
        self._client: WebClient | None = None
        self._lock = threading.Lock()

    @property
    def sandbox(self) -> bool:
        return self.settings.sandbox

    def _web(self) -> WebClient:
        with self._lock:
            if self._client is None:
                from slack_sdk import WebClient

                self._client = WebClient(token=self.settings.token, base_url=self.settings.api_url,
                                         timeout=max(1, round(self.settings.timeout)),
                                         ssl=ssl_context(self.settings.ca_file), retry_handlers=[])
            return self._client

    def call(self, method: str, **params: object) -> JsonObject:
        """Call a Web API method; the answer's data, or a typed error."""
        from slack_sdk.errors import SlackApiError

        if self.sandbox:
            raise TerminalDeliveryError(f"Slack {method}: no bot token; set {self.settings.token_env}")
        clean = {k: v for k, v in params.items() if v is not None}
        try:
            if method.startswith("chat."):
                response = self._web().api_call(method, json=clean)
            else:  # read methods take query parameters
                query = {k: ("true" if v is True else "false" if v is False else v) for k, v in clean.items()}
                response = self._web().api_call(method, http_verb="GET", params=query)
            data: JsonObject = dict(response.data) if isinstance(response.data, dict) else {}
            return data
        except SlackApiError as exc:
            status = exc.response.status_code
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = data.get("error")
            if status == 429 or error in TRANSIENT_ERRORS or status >= 500:
                after = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
                raise TransientDeliveryError(
                    f"Slack {method}: {error or f'HTTP {status}'}", retry_after=float(after) if after else None
                ) from None
            needed = data.get("needed")
            raise SlackRefused(method, str(error or f"HTTP {status}"), needed if isinstance(needed, str) else None,
                               self.settings.token_env) from None
        except OSError as exc:
            bad_cert = certificate_error(exc)
            if bad_cert is not None:
                raise TerminalDeliveryError(f"Slack {method}: the certificate of {self.settings.api_url} is not "
                                            f"trusted ({why_untrusted(bad_cert)}); {CA_HINT}") from exc
            raise TransientDeliveryError(f"Slack {method}: cannot reach {self.settings.api_url}: {exc}") from exc

    def post_message(self, channel: str, text: str, **extra: object) -> JsonObject:
        """``chat.postMessage``; the answer holds ``channel`` (the id) and ``ts``."""
        return self.call("chat.postMessage", channel=channel, text=text, **extra)
