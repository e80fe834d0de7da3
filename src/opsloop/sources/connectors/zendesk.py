"""Zendesk Support: API token (``email/token``) or OAuth bearer token; incremental exports.

Tickets and users use the cursor-based incremental exports (``/api/v2/incremental/tickets/cursor.json``
with ``start_time`` once, then ``cursor``); the ``after_cursor`` of each page is the stream's cursor, so a
run resumes exactly where the last committed page ended, and at ``end_of_stream`` it is where the next
run starts. Organizations use the time-based export (``/api/v2/incremental/organizations.json`` with
``start_time``; the page's ``end_time`` is the cursor). Deleted tickets arrive with ``status: deleted``;
deleted organizations with ``deleted_at``. 429 answers carry ``Retry-After``, which is honoured.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from .._http import Http
from ..config import ZendeskSource
from .base import Page, PullContext, Stream

_NOUN = {"tickets": "ticket", "users": "user", "organizations": "organization"}


class ZendeskConnector:
    def __init__(self, config: ZendeskSource, ctx: PullContext) -> None:
        self.config = config
        self.ctx = ctx
        self.base = config.url.rstrip("/")
        via = (f"the OAuth token in {config.oauth_token_env}" if config.oauth_token_env else
               f"{config.email_env} and the API token in {config.token_env}")
        self.http = Http(ctx.source, "Zendesk", ctx.budget, attempts=ctx.retry_attempts,
                         max_delay=ctx.max_retry_delay, backoff=ctx.retry_backoff, timeout=config.timeout,
                         ca_file=str(ctx.project_root / config.ca_file) if config.ca_file else None,
                         credentials_hint=f"Check {via} (an admin's token; see docs/sources.md#zendesk).")
        if config.oauth_token_env:
            self.http.headers["Authorization"] = f"Bearer {ctx.secret(config.oauth_token_env) or ''}"
        else:
            self.http.auth = (f"{ctx.secret(config.email_env) or ''}/token", ctx.secret(config.token_env) or "")
        start = config.start_date or "2000-01-01"
        self.start_time = int(datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()) \
            if "T" in start else int(datetime.fromisoformat(start + "T00:00:00+00:00").timestamp())

    def streams(self) -> list[Stream]:
        return [Stream(s, ["id"], "merge", _NOUN[s]) for s in self.config.streams]

    def read(self, stream: Stream, cursor: object) -> Iterator[Page]:
        if stream.name == "organizations":
            yield from self._time_based(stream, cursor)
        else:
            yield from self._cursor_based(stream, cursor)

    def _cursor_based(self, stream: Stream, cursor: object) -> Iterator[Page]:
        url = f"{self.base}/api/v2/incremental/{stream.name}/cursor.json"
        params: dict[str, object] = {"per_page": self.config.page_size}
        if cursor:
            params["cursor"] = cursor
        else:
            params["start_time"] = self.start_time
        while True:
            data = self.http.get(url, params)
            records = data.get(stream.name, [])
            deleted = [str(r["id"]) for r in records if r.get("status") == "deleted"]
            after = data.get("after_cursor") or params.get("cursor")
            yield Page(records, cursor=after, deleted=deleted)
            if data.get("end_of_stream", True) or not data.get("after_cursor"):
                return
            params = {"per_page": self.config.page_size, "cursor": data["after_cursor"]}

    def _time_based(self, stream: Stream, cursor: object) -> Iterator[Page]:
        url = f"{self.base}/api/v2/incremental/{stream.name}.json"
        start = int(cursor) if cursor and isinstance(cursor, int | float | str) else self.start_time
        while True:
            data = self.http.get(url, {"start_time": start, "per_page": self.config.page_size})
            records = data.get(stream.name, [])
            deleted = [str(r["id"]) for r in records if r.get("deleted_at")]
            end = data.get("end_time") or start
            yield Page(records, cursor=end, deleted=deleted)
            if data.get("end_of_stream", True) or end == start:
                return
            start = int(end)

    def close(self) -> None:
        self.http.close()


def build(config: ZendeskSource, ctx: PullContext) -> ZendeskConnector:
    return ZendeskConnector(config, ctx)
