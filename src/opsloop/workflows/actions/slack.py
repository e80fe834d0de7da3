"""slack.post / slack.update through slack_sdk's WebClient (or the sandbox outbox when no token is set).

- ``chat.postMessage`` returns a handle ``{"channel": ID, "ts": ...}``; it is the step's stored result, so
  a later step (even after a restart) calls ``chat.update`` on the same message.
- Each post carries message metadata naming the run and step. When a post may already have happened
  (a retry, or the step a crash cut off) the channel's history is searched for that metadata first, so
  the message is not posted twice.
- Posts are paced per channel (Slack allows about one message per second per channel; ``SLACK_PACE``
  messages/s, 0 turns pacing off); HTTP 429 becomes a transient error carrying ``Retry-After``.

The token, API root, timeout, CA file and pace are the project's Slack channel (``channels.slack``,
docs/project.md "Outbound channels"; ``SLACK_BOT_TOKEN``, ``SLACK_API_URL``, ``SLACK_PACE`` fill any key
opsloop.yml leaves out), shared with the slack destination and the metric alerts.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from ... import outbox
from ..._json import JsonObject
from ...channels import SlackClient, channels_of
from ...errors import TerminalDeliveryError
from ...narrow import json_object, json_objects

if TYPE_CHECKING:
    from ...app import App
    from ..context import Context

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
METADATA_TYPE = "opsloop_step"


class SlackPost(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: str
    text: str
    blocks: list[dict[str, object]] | None = None
    claim_button: str | None = None
    """Label of a button that, when clicked, emits ``claim_event`` (see the Slack interactions endpoint)."""
    claim_event: str | None = None
    thread_ts: str | None = None


class SlackUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: dict[str, object] | None = None
    """The handle a slack.post returned (``{{ steps.notify }}``); or give channel and ts."""
    channel: str | None = None
    ts: str | None = None
    text: str
    blocks: list[dict[str, object]] | None = None
    claim_button: str | None = None
    claim_event: str | None = None


def claim_blocks(text: str, label: str, value: JsonObject) -> list[dict[str, object]]:
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "actions",
            "block_id": "opsloop_actions",
            "elements": [{
                "type": "button", "action_id": "opsloop_claim", "style": "primary",
                "text": {"type": "plain_text", "text": label}, "value": json.dumps(value, separators=(",", ":")),
            }],
        },
    ]


class SlackService:
    """One per App: the client, per-channel pacing and the channel-name cache."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.slack = SlackClient(channels_of(app.project).slack)
        self.base_url = self.slack.settings.api_url
        pace = self.slack.settings.pace
        self.interval = 1.0 / pace if pace > 0 else 0.0
        self._next_slot: dict[str, float] = {}
        self._ids: dict[str, str] = {}
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="opsloop-slack")

    @property
    def sandbox(self) -> bool:
        return self.slack.sandbox

    async def _pace(self, channel: str) -> None:
        if not self.interval:
            return
        key = self._ids.get(channel, channel)
        now = time.monotonic()
        slot = max(now, self._next_slot.get(key, 0.0))
        self._next_slot[key] = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)

    async def call(self, method: str, **params: object) -> JsonObject:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self.slack.call(method, **params))

    async def channel_id(self, channel: str) -> str:
        if _CHANNEL_ID.match(channel):
            return channel
        if channel in self._ids:
            return self._ids[channel]
        wanted = channel.lstrip("#")
        cursor = ""
        while True:
            page = await self.call("conversations.list", types="public_channel,private_channel", limit=200,
                                   cursor=cursor or None)
            for ch in json_objects(page.get("channels")):
                if ch.get("name") == wanted:
                    self._ids[channel] = str(ch["id"])
                    return str(ch["id"])
            cursor = _next_cursor(page)
            if not cursor:
                raise TerminalDeliveryError(f"Slack channel {channel!r} not found (invite the bot to it)")

    async def find_posted(self, channel: str, key: str, since: float) -> str | None:
        """The ts of a message this step already posted (found by its metadata), else None."""
        cid = await self.channel_id(channel)
        cursor = ""
        while True:
            page = await self.call("conversations.history", channel=cid, oldest=f"{since:.6f}", limit=200,
                                   include_all_metadata=True, cursor=cursor or None)
            for message in json_objects(page.get("messages")):
                meta = json_object(message.get("metadata"))
                payload = json_object(meta.get("event_payload"))
                if meta.get("event_type") == METADATA_TYPE and payload.get("step") == key:
                    return str(message["ts"])
            cursor = _next_cursor(page)
            if not cursor or not page.get("has_more"):
                return None

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def _next_cursor(page: JsonObject) -> str:
    """The cursor of a Slack list's next page ("" on the last)."""
    return str(json_object(page.get("response_metadata")).get("next_cursor") or "")


def service(app: App) -> SlackService:
    svc = app.services.get("workflows.slack")
    if not isinstance(svc, SlackService):
        svc = SlackService(app)
        app.services["workflows.slack"] = svc
    return svc


def _message_blocks(ctx: Context, text: str, blocks: list[dict[str, object]] | None, label: str | None,
                    claim_event: str | None) -> list[dict[str, object]] | None:
    if blocks is not None or not label:
        return blocks
    trigger = ctx.event or {}
    event = claim_event or (str(trigger.get("name", "request")).rsplit(".", 1)[0] + ".claimed")
    return claim_blocks(text, label, {"event": event, "ref": trigger.get("id"), "run": ctx.run_id})


async def post(ctx: Context, params: dict[str, object]) -> JsonObject:
    spec = SlackPost.model_validate(params)
    svc = service(ctx.app)
    key = f"{ctx.run_id}:{ctx.step_id}"
    blocks = _message_blocks(ctx, spec.text, spec.blocks, spec.claim_button, spec.claim_event)
    if svc.sandbox:
        return _post_sandbox(ctx, spec, blocks, key)
    if ctx.possibly_repeated:
        since = (ctx.event or {}).get("received_at")
        found = await svc.find_posted(spec.channel, key,
                                      (since if isinstance(since, int | float) and since else time.time() - 86400) - 60)
        if found is not None:
            return {"channel": await svc.channel_id(spec.channel), "ts": found, "reused": True}
    await svc._pace(spec.channel)
    body: dict[str, object] = {
        "channel": spec.channel, "text": spec.text,
        "metadata": {"event_type": METADATA_TYPE, "event_payload": {"step": key}},
    }
    if blocks is not None:
        body["blocks"] = blocks
    if spec.thread_ts:
        body["thread_ts"] = spec.thread_ts
    data = await svc.call("chat.postMessage", **body)
    channel_id = str(data.get("channel"))
    svc._ids.setdefault(spec.channel, channel_id)
    return {"channel": channel_id, "ts": str(data.get("ts"))}


def _post_sandbox(ctx: Context, spec: SlackPost, blocks: list[dict[str, object]] | None, key: str) -> JsonObject:
    store = ctx.app.store
    if ctx.possibly_repeated:
        rows = store.query("SELECT id FROM outbox WHERE destination = 'slack' AND key = ?", (key,))
        if rows:
            return {"channel": spec.channel, "ts": str(rows[0][0]), "sandbox": True, "reused": True}
    payload = {"channel": spec.channel, "text": spec.text, "blocks": blocks}
    item = outbox.record(store, "slack", "chat.postMessage", payload, target=spec.channel, key=key)
    return {"channel": spec.channel, "ts": item, "sandbox": True}


async def update(ctx: Context, params: dict[str, object]) -> JsonObject:
    spec = SlackUpdate.model_validate(params)
    handle = spec.message or {}
    channel = spec.channel or handle.get("channel")
    ts = spec.ts or handle.get("ts")
    if not channel or not ts:
        raise TerminalDeliveryError(
            "slack.update needs the message to update: message: \"{{ steps.<post step> }}\" or channel and ts"
        )
    blocks = _message_blocks(ctx, spec.text, spec.blocks, spec.claim_button, spec.claim_event)
    svc = service(ctx.app)
    if handle.get("sandbox") or svc.sandbox:
        payload = {"channel": channel, "text": spec.text, "blocks": blocks}
        if not outbox.update(ctx.app.store, str(ts), payload, action="chat.update"):
            raise TerminalDeliveryError(f"no sandbox Slack message {ts} to update")
        return {"channel": str(channel), "ts": str(ts), "sandbox": True}
    await svc._pace(str(channel))
    body: dict[str, object] = {"channel": channel, "ts": ts, "text": spec.text}
    body["blocks"] = blocks if blocks is not None else []
    data = await svc.call("chat.update", **body)
    return {"channel": str(data.get("channel", channel)), "ts": str(data.get("ts", ts))}
