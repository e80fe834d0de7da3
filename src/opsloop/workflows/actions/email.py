"""email.send over SMTP (STARTTLS or implicit TLS, with login), or to the sandbox outbox when SMTP_HOST is unset.

Settings (environment or .env): ``SMTP_HOST``, ``SMTP_PORT`` (587), ``SMTP_USERNAME``, ``SMTP_PASSWORD``,
``SMTP_TLS`` (``starttls`` default, ``ssl``, or ``none``), ``SMTP_FROM``, ``SMTP_CA_FILE`` (a CA bundle
to trust, for private servers). The Message-ID names the run and step, so receivers can drop a repeat.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ... import outbox
from ...errors import TerminalDeliveryError, TransientDeliveryError

if TYPE_CHECKING:
    from ..context import Context


class EmailSend(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    to: str | list[str]
    subject: str
    body: str
    html: str | None = None
    from_: str | None = Field(default=None, alias="from")
    reply_to: str | None = None


async def send(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    spec = EmailSend.model_validate(params)
    env = ctx.app.project.env
    recipients = [spec.to] if isinstance(spec.to, str) else list(spec.to)
    sender = spec.from_ or env.get("SMTP_FROM") or "opsloop@localhost"
    message_id = f"<{ctx.run_id}.{(ctx.step_id or 'email').replace(':', '.')}@opsloop>"
    host = env.get("SMTP_HOST")
    if not host:
        item = outbox.record(ctx.app.store, "email", "send", {
            "from": sender, "to": recipients, "subject": spec.subject, "body": spec.body, "html": spec.html,
        }, target=",".join(recipients), key=message_id)
        return {"message_id": message_id, "sandbox": True, "outbox": item}
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = spec.subject
    msg["Message-ID"] = message_id
    if spec.reply_to:
        msg["Reply-To"] = spec.reply_to
    msg.set_content(spec.body)
    if spec.html:
        msg.add_alternative(spec.html, subtype="html")
    await asyncio.to_thread(_deliver, env, host, msg)
    return {"message_id": message_id, "to": recipients}


def _deliver(env: dict[str, str], host: str, msg: EmailMessage) -> None:
    mode = (env.get("SMTP_TLS") or "starttls").lower()
    port = int(env.get("SMTP_PORT") or (465 if mode == "ssl" else 587))
    context = ssl.create_default_context(cafile=env.get("SMTP_CA_FILE") or None)
    user, password = env.get("SMTP_USERNAME"), env.get("SMTP_PASSWORD")
    try:
        smtp: smtplib.SMTP
        if mode == "ssl":
            smtp = smtplib.SMTP_SSL(host, port, timeout=30, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=30)
        with smtp:
            smtp.ehlo()
            if mode == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if user:
                smtp.login(user, password or "")
            smtp.send_message(msg)
    except smtplib.SMTPAuthenticationError as exc:
        raise TerminalDeliveryError(f"SMTP login to {host}:{port} refused: {exc.smtp_code} "
                                    "(check SMTP_USERNAME / SMTP_PASSWORD)") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise TerminalDeliveryError(f"SMTP server {host}:{port} refused the recipients: "
                                    f"{', '.join(exc.recipients)}") from exc
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:
            raise TransientDeliveryError(f"SMTP {host}:{port}: {exc.smtp_code} {exc.smtp_error!r}") from exc
        raise TerminalDeliveryError(f"SMTP {host}:{port}: {exc.smtp_code} {exc.smtp_error!r}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise TransientDeliveryError(f"SMTP {host}:{port}: {type(exc).__name__}: {exc}") from exc
