"""``type: email`` — one templated message per row through the project's SMTP channel.

``to``, ``subject`` and ``body`` are Jinja templates over the row's mapped fields and ``key``. Without
``host`` the message goes through ``channels.smtp`` (docs/project.md, "Outbound channels"); ``from``,
``timeout`` and ``ca_file`` may still be given here. With ``host`` or ``port`` the destination names its
own server (host 127.0.0.1, port 25, plain, unless ``port`` / ``security`` / ``starttls`` /
``username_env`` say otherwise), as before the channels existed. A recipient the server refuses is that
row's error (with the server's reply); a dropped connection is retried. Each message has a
``Message-ID`` derived from the row's idempotency key.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from typing import Literal

from pydantic import BaseModel, Field

from ..channels import Security, SmtpSettings, ca_path, smtp, with_overrides
from ..errors import TerminalDeliveryError, TransientDeliveryError
from .base import Destination, DestinationConfig, DestinationContext, RowOp, RowResult


class EmailConfig(DestinationConfig):
    host: str | None = None
    """An SMTP server of this destination's own (with ``port``); default: ``channels.smtp``."""
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] | None = None
    starttls: bool | None = None
    """Older spelling of ``security: starttls``."""
    username_env: str | None = None
    password_env: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str = "{{ email }}"
    subject: str = "{{ subject }}"
    body: str = "{{ body }}"
    timeout: float | None = Field(default=None, gt=0)
    ca_file: str | None = None


class EmailDestination(Destination):
    type = "email"
    Config = EmailConfig
    IDEMPOTENT = False
    DELETES = False
    MAX_BATCH = 100
    config: EmailConfig

    def __init__(self, config: BaseModel, ctx: DestinationContext) -> None:
        super().__init__(config, ctx)
        from jinja2.sandbox import SandboxedEnvironment

        self._env = SandboxedEnvironment()

    def _render(self, template: str, row: RowOp) -> str:
        return str(self._env.from_string(template).render(key=row.key, **row.fields))

    def settings(self) -> SmtpSettings:
        """The channel's SMTP settings with this destination's keys laid over them."""
        cfg = self.config
        security: Security | None = cfg.security
        if security is None and cfg.starttls is not None:
            security = "starttls" if cfg.starttls else "none"
        ca_file = ca_path(self.ctx.root, cfg.ca_file)
        if cfg.host or cfg.port:  # a server of its own: the destination's keys alone, with the old defaults
            chosen: Security = security or "none"
            username = self.ctx.require_secret(cfg.username_env, "email") if cfg.username_env else None
            password = self.ctx.require_secret(cfg.password_env, "email") if cfg.password_env else None
            port = cfg.port or {"starttls": 587, "tls": 465, "none": 25}[chosen]
            return SmtpSettings(host=cfg.host or "127.0.0.1", port=port,
                                security=chosen, username_env=cfg.username_env or "",
                                password_env=cfg.password_env or "", username=username, password=password,
                                sender=cfg.from_ or "opsloop@localhost", timeout=cfg.timeout or 30.0,
                                ca_file=ca_file)
        base: SmtpSettings = self.ctx.outbound().smtp
        username = self.ctx.secret(cfg.username_env) if cfg.username_env else None
        password = self.ctx.secret(cfg.password_env) if cfg.password_env else None
        merged: SmtpSettings = with_overrides(base, port=cfg.port, security=security, username_env=cfg.username_env,
                              password_env=cfg.password_env, username=username, password=password,
                              sender=cfg.from_, timeout=cfg.timeout, ca_file=ca_file)
        return merged

    def _connect(self, settings: SmtpSettings) -> smtplib.SMTP:
        return smtp.connect(settings)

    def send(self, batch: list[RowOp]) -> list[RowResult]:
        settings = self.settings()
        try:
            conn = self._connect(settings)
        except TerminalDeliveryError as exc:
            # a refused login or a server without STARTTLS fails every row alike: say so once per row
            # instead of letting the runner split the batch down to single rows, one connection each
            return [RowResult(row.key, False, str(exc)) for row in batch]
        out: list[RowResult] = []
        try:
            for row in batch:
                msg = EmailMessage()
                msg["From"] = settings.sender
                msg["To"] = self._render(self.config.to, row)
                msg["Subject"] = self._render(self.config.subject, row)
                msg["Message-ID"] = f"<{row.idempotency_key}@opsloop>"
                msg.set_content(self._render(self.config.body, row))
                try:
                    conn.send_message(msg)
                    out.append(RowResult(row.key, True, dest_id=msg["Message-ID"]))
                except smtplib.SMTPRecipientsRefused as exc:
                    reasons = "; ".join(f"{addr}: {code} {text.decode(errors='replace')}"
                                        for addr, (code, text) in exc.recipients.items())
                    out.append(RowResult(row.key, False, f"smtp refused {reasons}"))
                except smtplib.SMTPResponseException as exc:
                    raw = exc.smtp_error
                    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
                    out.append(RowResult(row.key, False, f"smtp {exc.smtp_code} {text}",
                                         transient=exc.smtp_code < 500))
                except (OSError, smtplib.SMTPException) as exc:
                    if not out:
                        raise TransientDeliveryError(f"smtp {settings.host}: {exc}") from exc
                    out += [RowResult(r.key, False, f"smtp connection lost: {exc}", transient=True)
                            for r in batch[len(out):]]
                    break
        finally:
            smtp.quit_quietly(conn)
        return out
