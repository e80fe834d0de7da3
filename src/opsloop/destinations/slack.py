"""``type: slack`` — ``chat.postMessage``: one message per row, or one digest per batch.

``text`` is a Jinja template over the row's mapped fields (and ``key``); a digest joins one line per row
under ``title``. A 429 waits for ``Retry-After``; an ``ok: false`` answer (``channel_not_found``,
``not_in_channel`` ...) is the row's error. Scope: ``chat:write`` (``chat:write.public`` for channels the bot
has not joined).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..channels import SlackClient, SlackRefused, ca_path, with_overrides
from ..errors import TerminalDeliveryError, TransientDeliveryError
from .base import Destination, DestinationConfig, DestinationContext, RowOp, RowResult


class SlackConfig(DestinationConfig):
    channel: str
    token_env: str | None = None
    """Environment variable with the bot token (default: ``channels.slack.token_env``, ``SLACK_BOT_TOKEN``)."""
    text: str | None = None
    """Jinja template for a row's message; default: the ``text`` field, else ``key: field=value, ...``."""
    style: Literal["per_row", "digest"] = "per_row"
    title: str = "opsloop sync {{ sync }}: {{ count }} row(s)"
    base_url: str | None = None
    """Web API root (default: ``channels.slack.api_url``, ``https://slack.com/api/``)."""
    timeout: float | None = Field(default=None, gt=0)
    ca_file: str | None = None


class SlackDestination(Destination):
    type = "slack"
    Config = SlackConfig
    IDEMPOTENT = False
    DELETES = False
    MAX_BATCH = 50
    REQUESTS_PER_SECOND = 1.0
    config: SlackConfig

    def __init__(self, config: BaseModel, ctx: DestinationContext) -> None:
        super().__init__(config, ctx)
        self._client: SlackClient | None = None
        from jinja2.sandbox import SandboxedEnvironment

        self._env = SandboxedEnvironment()

    @property
    def client(self) -> SlackClient:
        if self._client is None:
            cfg = self.config
            settings = self.ctx.outbound().slack
            token_env = cfg.token_env or settings.token_env
            base = cfg.base_url if cfg.base_url is None or cfg.base_url.endswith("/") else cfg.base_url + "/"
            settings = with_overrides(settings, token_env=token_env,
                                      token=self.ctx.require_secret(token_env, "slack"), api_url=base,
                                      timeout=cfg.timeout, ca_file=ca_path(self.ctx.root, cfg.ca_file))
            self._client = SlackClient(settings)
        return self._client

    def _line(self, row: RowOp) -> str:
        if self.config.text:
            return str(self._env.from_string(self.config.text).render(key=row.key, **row.fields))
        if "text" in row.fields:
            return str(row.fields["text"])
        return f"{row.key}: " + ", ".join(f"{k}={v}" for k, v in row.fields.items())

    def _post(self, text: str) -> str:
        try:
            response = self.client.post_message(self.config.channel, text)
        except SlackRefused as exc:
            raise TerminalDeliveryError(f"slack chat.postMessage: {exc.code}") from exc
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

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
