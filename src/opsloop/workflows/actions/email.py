"""email.send through the project's SMTP channel (``channels.smtp``), or to the sandbox outbox when no host is set.

The server, port, STARTTLS or implicit TLS, login, sender and CA file are the channel's (docs/project.md,
"Outbound channels"; the ``SMTP_*`` environment variables still fill any key opsloop.yml leaves out). The
Message-ID names the run and step, so receivers can drop a repeat.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from ... import outbox
from ..._json import JsonObject
from ...channels import channels_of, smtp

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


async def send(ctx: Context, params: dict[str, object]) -> JsonObject:
    spec = EmailSend.model_validate(params)
    settings = channels_of(ctx.app.project).smtp
    recipients = [spec.to] if isinstance(spec.to, str) else list(spec.to)
    sender = spec.from_ or settings.sender
    message_id = f"<{ctx.run_id}.{(ctx.step_id or 'email').replace(':', '.')}@opsloop>"
    if settings.sandbox:
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
    await asyncio.to_thread(smtp.send, settings, msg)
    return {"message_id": message_id, "to": list(recipients)}
