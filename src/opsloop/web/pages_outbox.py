"""The outbox page: each item as its destination would show it.

A Slack message is drawn from its blocks (sections, headers, context, dividers, fields, images and
buttons) with Slack's mrkdwn (``*bold*``, ``_italic_``, ``~strike~``, `` `code` ``, code blocks, quotes,
``<url|label>`` links, ``<@U…>`` mentions, ``:emoji:``), or from its ``text`` when it has no blocks; a
message updated in place says "edited" and lists what it said before. An email shows its sender,
recipients, subject and body. A CRM or support-tool write shows the record's fields. Every value is
escaped before markup is added: what a payload says can never become HTML.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import outbox
from .._json import JsonValue

if TYPE_CHECKING:
    from .server import Web

PAGE_SIZE = 50

EMOJI = {
    "white_check_mark": "\u2705", "warning": "\u26a0\ufe0f", "tada": "\U0001f389", "rotating_light": "\U0001f6a8",
    "moneybag": "\U0001f4b0", "wave": "\U0001f44b", "fire": "\U0001f525", "rocket": "\U0001f680",
    "x": "\u274c", "heavy_check_mark": "\u2714\ufe0f", "bell": "\U0001f514", "star": "\u2b50",
    "chart_with_upwards_trend": "\U0001f4c8", "chart_with_downwards_trend": "\U0001f4c9", "eyes": "\U0001f440",
    "hourglass": "\u231b", "hourglass_flowing_sand": "\u23f3", "email": "\U0001f4e7", "telephone_receiver":
    "\U0001f4de", "red_circle": "\U0001f534", "large_green_circle": "\U0001f7e2", "sparkles": "\u2728",
    "thumbsup": "\U0001f44d", "+1": "\U0001f44d", "heart": "\u2764\ufe0f", "raised_hands": "\U0001f64c",
}

_CODE_BLOCK = re.compile(r"```(.+?)```", re.S)
_LINK = re.compile(r"<([^<>\s|]+)(?:\|([^<>]*))?>")
_INLINE = [
    (re.compile(r"`([^`\n]+)`"), "code"),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), "strong"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), "em"),
    (re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])"), "del"),
]
_EMOJI = re.compile(r":([a-z0-9_+\-]+):")


def _link(match: re.Match[str]) -> str:
    target, label = match.group(1), match.group(2)
    if target.startswith("@"):
        return f'<span class="mention">@{escape(label or target[1:])}</span>'
    if target.startswith("#"):
        name = label or target[1:]
        return f'<span class="mention">#{escape(name)}</span>'
    if target.startswith("!"):
        return f'<span class="mention">@{escape(target[1:].split("^")[0])}</span>'
    if re.match(r"(https?://|mailto:)", target):
        shown = escape(label or target.removeprefix("mailto:"))
        return f'<a href="{escape(target)}" rel="noopener noreferrer">{shown}</a>'
    return str(escape(match.group(0)))  # not a Slack control sequence: shown as written


def _inline(text: str) -> str:
    """mrkdwn of one run of text (no code blocks), escaped, to HTML."""
    out: list[str] = []
    pos = 0
    for m in _LINK.finditer(text):
        out.append(_styles(text[pos:m.start()]))
        out.append(_link(m))
        pos = m.end()
    out.append(_styles(text[pos:]))
    return "".join(out)


def _styles(text: str) -> str:
    html = str(escape(text))
    for pattern, tag in _INLINE:
        html = pattern.sub(rf"<{tag}>\1</{tag}>", html)
    html = _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), html)
    return html


def mrkdwn(text: object) -> Markup:
    """Slack mrkdwn to safe HTML (line breaks kept; ``&gt;`` quotes; code blocks as ``<pre>``)."""
    source = "" if text is None else str(text)
    parts: list[str] = []
    pos = 0
    for m in _CODE_BLOCK.finditer(source):
        parts.append(_lines(source[pos:m.start()]))
        parts.append(f"<pre>{escape(m.group(1).strip(chr(10)))}</pre>")
        pos = m.end()
    parts.append(_lines(source[pos:]))
    return Markup("".join(parts))  # noqa: S704 -- every piece above is escaped before tags are added


def _lines(text: str) -> str:
    html: list[str] = []
    for line in text.split("\n"):
        if line.startswith(("> ", "&gt; ")) or line == ">":
            html.append(f"<blockquote>{_inline(line[2:] if line.startswith('> ') else line[5:])}</blockquote>")
        else:
            html.append(_inline(line) + "<br>")
    joined = "".join(html)
    return joined.removesuffix("<br>")


def plain(text: object) -> Markup:
    return Markup(str(escape("" if text is None else str(text))).replace("\n", "<br>"))  # noqa: S704


def _text_of(obj: object) -> Markup:
    """A Slack text object (``{"type": "mrkdwn"|"plain_text", "text"}``) or a bare string."""
    if isinstance(obj, dict):
        return mrkdwn(obj.get("text")) if obj.get("type") == "mrkdwn" else plain(obj.get("text"))
    return plain(obj)


def block_html(block: object) -> Markup:
    """One Block Kit block as HTML; an unknown block type is named, not dropped."""
    if not isinstance(block, dict):
        return Markup("")
    kind = block.get("type")
    if kind == "section":
        parts = []
        if block.get("text"):
            parts.append(Markup('<div class="section-text">{}</div>').format(_text_of(block["text"])))
        fields = block.get("fields") or []
        if fields:
            cells = Markup("").join(Markup('<div class="field">{}</div>').format(_text_of(f)) for f in fields)
            parts.append(Markup('<div class="fields">{}</div>').format(cells))
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and accessory.get("type") == "button":
            parts.append(_button(accessory))
        return Markup('<div class="block section">{}</div>').format(Markup("").join(parts))
    if kind == "header":
        return Markup('<div class="block header">{}</div>').format(plain((block.get("text") or {}).get("text")))
    if kind == "divider":
        return Markup('<hr class="block divider">')
    if kind == "context":
        items = []
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("type") == "image":
                items.append(Markup('<span class="img-alt">[{}]</span>').format(element.get("alt_text") or "image"))
            else:
                items.append(_text_of(element))
        return Markup('<div class="block context">{}</div>').format(Markup(" · ").join(items))
    if kind == "actions":
        buttons = [_button(e) for e in block.get("elements") or [] if isinstance(e, dict)]
        return Markup('<div class="block actions">{}</div>').format(Markup("").join(buttons))
    if kind == "image":
        return Markup('<div class="block image"><span class="img-alt">[image: {}]</span></div>').format(
            block.get("alt_text") or block.get("image_url") or "")
    return Markup('<div class="block unknown">[{} block]</div>').format(kind or "unknown")


def _button(element: Mapping[str, object]) -> Markup:
    if element.get("type") != "button":
        return Markup('<span class="slack-element">[{}]</span>').format(element.get("type") or "element")
    style = element.get("style") if element.get("style") in ("primary", "danger") else "default"
    text = element.get("text")
    label = text.get("text") if isinstance(text, dict) else text
    # a picture of Slack's button: it does nothing here, so it is not a <button> a keyboard would stop at
    return Markup('<span class="slack-button {}" data-action="{}">{}</span>').format(
        style, element.get("action_id") or "", label or "")


def slack_html(payload: object) -> Markup:
    """The message body: its blocks when it has them (as Slack shows), else its text."""
    payload = payload if isinstance(payload, dict) else {"text": payload}
    blocks = payload.get("blocks")
    if isinstance(blocks, list) and blocks:
        return Markup("").join(block_html(b) for b in blocks)
    return Markup('<div class="block section"><div class="section-text">{}</div></div>').format(
        mrkdwn(payload.get("text")))


@dataclass
class Card:
    id: str
    kind: str  # slack | email | record | other
    destination: str
    action: str
    target: str | None
    key: str | None
    version: int
    created_at: float
    updated_at: float
    payload: JsonValue
    body: Markup = field(default_factory=Markup)
    earlier: list[dict[str, object]] = field(default_factory=list)


def _kind(destination: str) -> str:
    if destination == "slack":
        return "slack"
    if destination == "email":
        return "email"
    if destination.startswith("sync:"):
        return "record"
    return "other"


def cards(items: list[outbox.OutboxItem], history: dict[str, list[outbox.OutboxVersion]]) -> list[Card]:
    found = []
    for item in items:
        card = Card(item.id, _kind(item.destination), item.destination, item.action, item.target, item.key,
                    item.version, item.created_at, item.updated_at, item.payload)
        if card.kind == "slack":
            card.body = slack_html(item.payload)
            card.earlier = [{"version": v.version, "action": v.action, "updated_at": v.updated_at,
                             "body": slack_html(v.payload)} for v in reversed(history.get(item.id, []))]
        found.append(card)
    return found


def routes(web: Web) -> list[Route]:
    store = web.app.store

    async def outbox_page(request: Request) -> Response:
        destination = request.query_params.get("destination") or None
        raw_before = request.query_params.get("before")
        try:
            before = float(raw_before) if raw_before else None
        except ValueError:
            return web.render(request, "missing.html", status_code=400, title="Outbox",
                              message=f"'before' must be a time as the 'Older' link gives it, not {raw_before!r}",
                              back="/outbox", back_label="the outbox")

        def load() -> tuple[list[Card], bool, list[str]]:
            items = outbox.list_items(store, destination, limit=PAGE_SIZE + 1, before=before)
            more = len(items) > PAGE_SIZE
            items = items[:PAGE_SIZE]
            history = outbox.versions(store, [i.id for i in items if i.version > 1])
            return cards(items, history), more, outbox.destinations(store)

        found, more, destinations = await asyncio.to_thread(load)
        older = repr(found[-1].updated_at) if more and found else None
        return web.render(request, "outbox.html", items=found, destination=destination, destinations=destinations,
                          older=older, first_page=before is None)

    return [Route("/outbox", outbox_page)]
