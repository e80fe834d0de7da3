"""Stripe with a secret (or restricted) key.

Full load: ``GET /v1/{object}`` with ``limit`` and ``starting_after`` paging, newest first. Before it
starts, the newest event's ``created`` is noted; later runs read ``GET /v1/events`` from there
(``created[gte]`` minus the lag window, newest first, paged the same way), apply the changes oldest first
and keep each object's latest state. Deleted objects land with ``deleted = true``. Stripe keeps events
for 30 days: a source idle for longer needs ``opsloop pull NAME --full-refresh``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from .._http import Http
from ..config import StripeSource
from .base import Page, PullContext, Stream

OBJECTS = {
    "customers": ("customer", "customer.*"),
    "subscriptions": ("subscription", "customer.subscription.*"),
    "invoices": ("invoice", "invoice.*"),
    "charges": ("charge", "charge.*"),
    "products": ("product", "product.*"),
    "prices": ("price", "price.*"),
}


class StripeConnector:
    def __init__(self, config: StripeSource, ctx: PullContext) -> None:
        self.config = config
        self.ctx = ctx
        self.base = config.base_url.rstrip("/")
        ca_file = str(ctx.project_root / config.ca_file) if config.ca_file else None
        self.http = Http(ctx.source, "Stripe", ctx.budget, attempts=ctx.retry_attempts,
                         max_delay=ctx.max_retry_delay, backoff=ctx.retry_backoff,
                         timeout=config.timeout, ca_file=ca_file,
                         credentials_hint=f"Check the key in {config.key_env} (a restricted key needs read "
                                          "access to the objects listed and to events).")
        self.http.headers["Authorization"] = f"Bearer {ctx.secret(config.key_env) or ''}"

    def streams(self) -> list[Stream]:
        return [Stream(name, ["id"], "merge", OBJECTS[name][0]) for name in self.config.objects]

    def read(self, stream: Stream, cursor: object) -> Iterator[Page]:
        if isinstance(cursor, dict) and cursor.get("phase") != "full":
            yield from self._changes(stream, int(cursor["events_from"]))
        else:
            yield from self._full(stream, cursor if isinstance(cursor, dict) else {})

    def _list(self, path: str, params: dict[str, object],
              starting_after: str | None) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """Pages of a Stripe list (its JSON objects as the API documents them) and the id to start after."""
        while True:
            query = {**params, "limit": self.config.page_size}
            if starting_after:
                query["starting_after"] = starting_after
            data = self.http.get(f"{self.base}{path}", query)
            items = data.get("data", [])
            starting_after = items[-1]["id"] if items and data.get("has_more") else None
            yield items, starting_after
            if not starting_after:
                return

    def _full(self, stream: Stream, resume: dict[str, object]) -> Iterator[Page]:
        events_from = resume.get("events_from")
        if events_from is None:
            newest = self.http.get(f"{self.base}/v1/events", {"limit": 1}).get("data", [])
            events_from = int(newest[0]["created"]) if newest else int(time.time())
        params: dict[str, object] = {"status": "all"} if stream.name == "subscriptions" else {}
        start = resume.get("starting_after")
        for items, after in self._list(f"/v1/{stream.name}", params, None if start is None else str(start)):
            if after:
                yield Page(items, cursor={"phase": "full", "starting_after": after, "events_from": events_from})
            else:
                yield Page(items, cursor={"events_from": events_from})

    def _changes(self, stream: Stream, events_from: int) -> Iterator[Page]:
        kind, pattern = OBJECTS[stream.name]
        since = events_from - int(self.ctx.lag)
        latest: dict[str, tuple[int, dict[str, Any], bool]] = {}
        newest = events_from
        for events, _after in self._list("/v1/events", {"type": pattern, "created[gte]": since}, None):
            for event in events:
                obj = (event.get("data") or {}).get("object") or {}
                if obj.get("object") != kind or "id" not in obj:
                    continue
                created = int(event["created"])
                newest = max(newest, created)
                deleted = event.get("type", "").endswith(".deleted")
                seen = latest.get(obj["id"])
                if seen is None or created >= seen[0]:
                    latest[obj["id"]] = (created, obj, deleted)
        ordered = sorted(latest.values(), key=lambda v: v[0])
        size = self.config.page_size
        if not ordered:
            yield Page([], cursor={"events_from": newest})
        for start in range(0, len(ordered), size):
            chunk = ordered[start: start + size]
            last = start + size >= len(ordered)
            records = [{**obj, "deleted": True} if deleted else {**obj, "deleted": False}
                       for _c, obj, deleted in chunk]
            yield Page(records, cursor={"events_from": newest} if last else None,
                       deleted=[obj["id"] for _c, obj, deleted in chunk if deleted])

    def close(self) -> None:
        self.http.close()


def build(config: StripeSource, ctx: PullContext) -> StripeConnector:
    return StripeConnector(config, ctx)
