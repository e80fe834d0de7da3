"""``type: email`` — one templated message per row over SMTP (STARTTLS and login optional).

``to``, ``subject`` and ``body`` are Jinja templates over the row's mapped fields and ``key``. A recipient
the server refuses is that row's error (with the server's reply); a dropped connection is retried. Each
message has a ``Message-ID`` derived from the row's idempotency key.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from typing import Any

from pydantic import Field

from ..errors import TransientDeliveryError
from .base import Destination, DestinationConfig, RowOp, RowResult


class EmailConfig(DestinationConfig):
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    username_env: str | None = None
    password_env: str | None = None
    from_: str = Field(alias="from")
    to: str = "{{ email }}"
    subject: str = "{{ subject }}"
    body: str = "{{ body }}"
    timeout: float = 30.0


class EmailDestination(Destination):
    type = "email"
    Config = EmailConfig
    IDEMPOTENT = False
    DELETES = False
    MAX_BATCH = 100
    config: EmailConfig

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        from jinja2.sandbox import SandboxedEnvironment

        self._env = SandboxedEnvironment()

    def _render(self, template: str, row: RowOp) -> str:
        return str(self._env.from_string(template).render(key=row.key, **row.fields))

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        try:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            if cfg.starttls:
                smtp.starttls()
            if cfg.username_env:
                smtp.login(self.ctx.require_secret(cfg.username_env, "email"),
                           self.ctx.require_secret(cfg.password_env, "email"))
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientDeliveryError(f"smtp {cfg.host}:{cfg.port}: {exc}") from exc
        return smtp

    def send(self, batch: list[RowOp]) -> list[RowResult]:
        smtp = self._connect()
        out: list[RowResult] = []
        try:
            for row in batch:
                msg = EmailMessage()
                msg["From"] = self.config.from_
                msg["To"] = self._render(self.config.to, row)
                msg["Subject"] = self._render(self.config.subject, row)
                msg["Message-ID"] = f"<{row.idempotency_key}@opsloop>"
                msg.set_content(self._render(self.config.body, row))
                try:
                    smtp.send_message(msg)
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
                        raise TransientDeliveryError(f"smtp {self.config.host}: {exc}") from exc
                    out += [RowResult(r.key, False, f"smtp connection lost: {exc}", transient=True)
                            for r in batch[len(out):]]
                    break
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
        return out
