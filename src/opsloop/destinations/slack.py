"""``type: slack`` — ``chat.postMessage``: one message per row, or one digest per batch.

``text`` is a Jinja template over the row's mapped fields (and ``key``); a digest joins one line per row
under ``title``. A 429 waits for ``Retry-After``; an ``ok: false`` answer (``channel_not_found``,
``not_in_channel`` ...) is the row's error. Scope: ``chat:write`` (``chat:write.public`` for channels the bot
has not joined).
"""

from __future__ import annotations

from typing import Any, Literal

from ..errors import TerminalDeliveryError, TransientDeliveryError
from .base import Destination, DestinationConfig, RowOp, RowResult


class SlackConfig(DestinationConfig):
    channel: str
    token_env: str = "SLACK_BOT_TOKEN"  # noqa: S105 (the name of an environment variable)
    text: str | None = None
    """Jinja template for a row's message; default: the ``text`` field, else ``key: field=value, ...``."""
    style: Literal["per_row", "digest"] = "per_row"
    title: str = "opsloop sync {{ sync }}: {{ count }} row(s)"
    base_url: str = "https://slack.com/api/"


class SlackDestination(Destination):
    type = "slack"
    Config = SlackConfig
    IDEMPOTENT = False
    DELETES = False
    MAX_BATCH = 50
    REQUESTS_PER_SECOND = 1.0
    config: SlackConfig

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        self._client: Any = None
        from jinja2.sandbox import SandboxedEnvironment

        self._env = SandboxedEnvironment()

    @property
    def client(self) -> Any:
        if self._client is None:
            from slack_sdk import WebClient

            token = self.ctx.require_secret(self.config.token_env, "slack")
            base = self.config.base_url if self.config.base_url.endswith("/") else self.config.base_url + "/"
            self._client = WebClient(token=token, base_url=base, timeout=30)
        return self._client

    def _line(self, row: RowOp) -> str:
        if self.config.text:
            return str(self._env.from_string(self.config.text).render(key=row.key, **row.fields))
        if "text" in row.fields:
            return str(row.fields["text"])
        return f"{row.key}: " + ", ".join(f"{k}={v}" for k, v in row.fields.items())

    def _post(self, text: str) -> str:
        from slack_sdk.errors import SlackApiError

        try:
            response = self.client.chat_postMessage(channel=self.config.channel, text=text)
        except SlackApiError as exc:
            status = exc.response.status_code
            error = exc.response.get("error") if hasattr(exc.response, "get") else None
            if status == 429 or status >= 500:
                retry = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
                raise TransientDeliveryError(f"slack chat.postMessage: HTTP {status} {error or ''}".strip(),
                                             float(retry) if retry else None) from exc
            raise TerminalDeliveryError(f"slack chat.postMessage: {error or status}") from exc
        except OSError as exc:
            raise TransientDeliveryError(f"slack chat.postMessage: cannot connect ({exc})") from exc
        return str(response.get("ts"))

    def send(self, batch: list[RowOp]) -> list[RowResult]:
        if self.config.style == "digest":
            title = self._env.from_string(self.config.title).render(sync=self.ctx.sync, count=len(batch))
            ts = self._post("\n".join([title, *(f"• {self._line(r)}" for r in batch)]))
            return [RowResult(r.key, True, dest_id=ts) for r in batch]
        out = []
        for row in batch:
            try:
                out.append(RowResult(row.key, True, dest_id=self._post(self._line(row))))
            except TerminalDeliveryError as exc:
                out.append(RowResult(row.key, False, str(exc)))
            except TransientDeliveryError:
                if not out:
                    raise
                # rows already posted are reported; the rest are retried by the next run
                out += [RowResult(r.key, False, "slack rate limit; sent on the next run", transient=True)
                        for r in batch[len(out):]]
                break
        return out
