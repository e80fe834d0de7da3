"""The SLA helper: post a message, wait for a claim; on breach update it (and escalate), on claim update it.

Steps taken (ids prefixed with the helper's ``step`` name): ``<step>.post`` (slack.post with a Claim
button), ``<step>.wait`` (wait_for_event with the SLA as timeout), on breach ``<step>.breached``
(slack.update), ``<step>.breach_event`` (an ``sla.breached`` event), any ``escalate`` steps, then
``<step>.late_wait``; on claim ``<step>.claimed`` (slack.update naming who claimed and after how long).
Texts are Jinja: ``claimed_text`` sees ``claim`` (the claim event, plus ``claim.after`` like "4 min" and
``claim.by``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Required, TypedDict

from .._durations import parse_duration
from .._json import JsonObject, JsonValue

if TYPE_CHECKING:
    from .context import Context

DEFAULT_BREACHED = ":warning: SLA breached — unclaimed for {{ sla.within }}\n{{ sla.text }}"
DEFAULT_CLAIMED = ":white_check_mark: Claimed by {{ claim.by }} after {{ claim.after }}\n{{ sla.text }}"


def human(seconds: float) -> str:
    """4 min, 12 s, 1 h 5 min."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{minutes:.0f} min"
    hours, rest = divmod(int(minutes), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


class SlaOptions(TypedDict, total=False):
    """``ctx.sla(...)``'s options: ``run_sla``'s keyword arguments."""

    channel: Required[str]
    text: Required[str]
    within: Required[str | float]
    step: str
    wait_for: str | None
    match: str | None
    claim_button: str | None
    breached_text: str
    claimed_text: str
    escalate: Callable[[Context], Awaitable[object]] | None
    max_wait: str | float


def _number(value: JsonValue, default: float) -> float:
    return float(value) if isinstance(value, int | float) and value else default


def _claimer(claim: JsonObject) -> str:
    data = claim.get("data") or {}
    user = data.get("user") if isinstance(data, dict) else None
    if isinstance(user, dict):
        return str(user.get("name") or user.get("username") or user.get("id") or "someone")
    if isinstance(user, str):
        return user
    return str(data.get("by") or data.get("claimed_by") or "someone") if isinstance(data, dict) else "someone"


async def run_sla(
    ctx: Context,
    *,
    channel: str,
    text: str,
    within: str | float,
    step: str = "sla",
    wait_for: str | None = None,
    match: str | None = None,
    claim_button: str | None = "Claim",
    breached_text: str = DEFAULT_BREACHED,
    claimed_text: str = DEFAULT_CLAIMED,
    escalate: Callable[[Context], Awaitable[object]] | None = None,
    max_wait: str | float = "7d",
) -> JsonObject:
    """Run the SLA pattern; returns ``{"channel", "ts", "breached", "claimed_by", "claimed_after"}``.

    ``text`` is rendered now; ``breached_text`` and ``claimed_text`` when they are used. The default
    claim event is ``<trigger event prefix>.claimed`` (``demo_request.claimed``), matched to this run by
    ``event.data.ref == trigger.id`` (what the Claim button sends).
    """
    trigger = ctx.event or {}
    claim_event = wait_for or (str(trigger.get("name", "request")).rsplit(".", 1)[0] + ".claimed")
    condition = match or "event.data.ref == trigger.id"
    rendered = str(ctx.render(text))
    seconds = parse_duration(within)
    sla_vars = {"within": human(seconds), "text": rendered, "channel": channel}
    posted = await ctx.action("slack.post", step=f"{step}.post", channel=channel, text=rendered,
                              claim_button=claim_button, claim_event=claim_event)
    handle: JsonObject = posted if isinstance(posted, dict) else {}
    posted_at = await ctx.step(f"{step}.posted_at", time.time)
    claim = await ctx.wait_for_event(claim_event, match=condition, timeout=seconds, step=f"{step}.wait")
    breached = claim is None
    if claim is None:
        await ctx.action("slack.update", step=f"{step}.breached", message=handle,
                         text=str(ctx.render(breached_text, sla=sla_vars)), claim_button=claim_button,
                         claim_event=claim_event)
        await ctx.emit("sla.breached", {
            "workflow": ctx.workflow, "run_id": ctx.run_id, "sla": step, "within_seconds": seconds,
            "trigger_event": trigger.get("id"), "channel": handle.get("channel"), "ts": handle.get("ts"),
        }, step=f"{step}.breach_event")
        if escalate is not None:
            await escalate(ctx)
        claim = await ctx.wait_for_event(claim_event, match=condition, timeout=max_wait, step=f"{step}.late_wait")
    result: JsonObject = {"channel": handle.get("channel"), "ts": handle.get("ts"), "breached": breached,
                              "claimed_by": None, "claimed_after": None}
    if claim is not None:
        after = _number(claim.get("received_at"), time.time()) - _number(posted_at, 0.0)
        claim_vars = {**claim, "after": human(after), "after_seconds": after, "by": _claimer(claim)}
        await ctx.action("slack.update", step=f"{step}.claimed", message=handle,
                         text=str(ctx.render(claimed_text, sla=sla_vars, claim=claim_vars)))
        result.update(claimed_by=claim_vars["by"], claimed_after=round(after, 3))
    return result
