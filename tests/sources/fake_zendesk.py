"""Zendesk Support as its docs describe it: basic auth `email/token:api_token` or OAuth bearer,
cursor-based incremental exports (tickets, users), the time-based organizations export, 429 with
Retry-After, and {"error": ...} bodies."""

from __future__ import annotations

import base64
from typing import Any

from ._fake import FakeServer, Reply


class ZendeskFake(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.email, self.api_token, self.oauth = "admin@acme.test", "zd_tok", "zd_oauth"
        self.clock = 1_700_000_000
        self.data: dict[str, dict[int, dict[str, Any]]] = {"tickets": {}, "users": {}, "organizations": {}}
        self.route("GET", r"/api/v2/incremental/(tickets|users)/cursor.json", self.cursor_export)
        self.route("GET", r"/api/v2/incremental/organizations.json", self.time_export)

    def put(self, coll: str, oid: int, **fields: Any) -> None:
        self.clock += 60
        row = self.data[coll].setdefault(oid, {"id": oid, "created_at": self.clock})
        row.update(fields)
        row["updated_at"] = self.clock
        row["generated_timestamp"] = self.clock

    def dispatch(self, req: Any) -> Reply:
        auth = req.headers.get("authorization") or ""
        good = {f"Bearer {self.oauth}",
                "Basic " + base64.b64encode(f"{self.email}/token:{self.api_token}".encode()).decode()}
        if auth not in good:
            with self.lock:
                self.log.append(req)
            return Reply(401, {"error": "Couldn't authenticate you"})
        return super().dispatch(req)

    def _changed(self, coll: str) -> list[dict[str, Any]]:
        return sorted(self.data[coll].values(), key=lambda r: (r["generated_timestamp"], r["id"]))

    def cursor_export(self, req: Any, coll: str) -> Reply:
        per_page = int(req.arg("per_page", "1000"))
        rows = self._changed(coll)
        if req.arg("cursor"):
            # the cursor encodes (generated_timestamp, id) of the last row served
            ts, _, oid = req.arg("cursor").partition(":")
            rows = [r for r in rows if (r["generated_timestamp"], r["id"]) > (int(ts), int(oid))]
        elif req.arg("start_time") is not None:
            rows = [r for r in rows if r["generated_timestamp"] >= int(req.arg("start_time"))]
        else:
            return Reply(400, {"error": "InvalidValue", "description": "start_time or cursor is required"})
        chunk = rows[:per_page]
        end = len(rows) <= per_page
        last = chunk[-1] if chunk else None
        after = f"{last['generated_timestamp']}:{last['id']}" if last else req.arg("cursor") or \
            f"{req.arg('start_time')}:0"
        return Reply(200, {coll: chunk, "after_cursor": after, "before_cursor": None,
                           "after_url": f"{self.url}{req.path}?cursor={after}", "end_of_stream": end})

    def time_export(self, req: Any) -> Reply:
        start = int(req.arg("start_time"))
        per_page = int(req.arg("per_page", "1000"))
        rows = [r for r in self._changed("organizations") if r["generated_timestamp"] >= start][:per_page]
        end_time = rows[-1]["generated_timestamp"] if rows else start
        more = len([r for r in self._changed("organizations") if r["generated_timestamp"] > end_time]) > 0
        return Reply(200, {"organizations": rows, "count": len(rows), "end_time": end_time,
                           "next_page": f"{self.url}{req.path}?start_time={end_time}" if more else None,
                           "end_of_stream": not more})
