"""Salesforce as its REST API docs describe it: the OAuth2 token endpoint (client credentials and
refresh token), /limits, sObject describe, SOQL query/queryAll with nextRecordsUrl, Sforce-Limit-Info,
INVALID_SESSION_ID and REQUEST_LIMIT_EXCEEDED error bodies."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from ._fake import FakeServer, Reply

V = "v59.0"


def stamp(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


class SalesforceFake(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.client_id, self.client_secret, self.refresh_token = "cid", "csecret", "rtok"
        self.tokens: set[str] = set()
        self.issued = 0
        self.clock = 1_700_000_000
        self.max_requests, self.used = 15000, 0
        self.batch = 2000
        self.fields = {"Account": ["Id", "Name", "Industry", "IsDeleted", "SystemModstamp", "BillingAddress"],
                       "Contact": ["Id", "Email", "AccountId", "IsDeleted", "SystemModstamp"]}
        self.rows: dict[str, dict[str, dict[str, Any]]] = {"Account": {}, "Contact": {}}
        self.cursors: dict[str, list[dict[str, Any]]] = {}
        self.route("POST", r"/services/oauth2/token", self.token)
        self.route("GET", rf"/services/data/{V}/limits", self.limits)
        self.route("GET", rf"/services/data/{V}/sobjects/(\w+)/describe", self.describe)
        self.route("GET", rf"/services/data/{V}/(query|queryAll)", self.query)
        self.route("GET", rf"/services/data/{V}/query/([\w-]+)", self.more)

    def put(self, obj: str, oid: str, **fields: Any) -> None:
        self.clock += 60
        row = self.rows[obj].setdefault(oid, {"Id": oid, "IsDeleted": False})
        row.update(fields)
        row["SystemModstamp"] = stamp(self.clock)
        for key in fields:
            if key not in self.fields[obj]:
                self.fields[obj].append(key)

    def dispatch(self, req: Any) -> Reply:
        if req.path != "/services/oauth2/token":
            auth = (req.headers.get("authorization") or "").removeprefix("Bearer ")
            if auth not in self.tokens:
                with self.lock:
                    self.log.append(req)
                return Reply(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
            if self.used >= self.max_requests:
                with self.lock:
                    self.log.append(req)
                return Reply(403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
            self.used += 1
        reply = super().dispatch(req)
        reply.headers.setdefault("Sforce-Limit-Info", f"api-usage={self.used}/{self.max_requests}")
        return reply

    def token(self, req: Any) -> Reply:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return Reply(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        if form.get("grant_type") == "refresh_token" and form.get("refresh_token") != self.refresh_token:
            return Reply(400, {"error": "invalid_grant", "error_description": "expired access/refresh token"})
        if form.get("grant_type") not in ("client_credentials", "refresh_token"):
            return Reply(400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
        self.issued += 1
        token = f"00D!tok{self.issued}"
        self.tokens.add(token)
        return Reply(200, {"access_token": token, "instance_url": self.url, "token_type": "Bearer",
                           "issued_at": "1700000000000", "signature": "sig"})

    def limits(self, req: Any) -> Reply:
        return Reply(200, {"DailyApiRequests": {"Max": self.max_requests, "Remaining": self.max_requests - self.used}})

    def describe(self, req: Any, obj: str) -> Reply:
        return Reply(200, {"name": obj, "fields": [
            {"name": f, "type": "address" if f.endswith("Address") else "string"} for f in self.fields[obj]]})

    def query(self, req: Any, kind: str) -> Reply:
        q = req.arg("q")
        m = re.match(r"SELECT (.+) FROM (\w+)(?: WHERE SystemModstamp >= (\S+))? ORDER BY SystemModstamp ASC$", q)
        if not m:
            return Reply(400, [{"message": f"unexpected token: {q[:40]}", "errorCode": "MALFORMED_QUERY"}])
        fields, obj, since = [f.strip() for f in m.group(1).split(",")], m.group(2), m.group(3)
        for f in fields:
            if f not in self.fields[obj]:
                return Reply(400, [{"message": f"No such column '{f}' on entity '{obj}'",
                                    "errorCode": "INVALID_FIELD"}])
        rows = [r for r in self.rows[obj].values() if kind == "queryAll" or not r["IsDeleted"]]
        if since:
            floor = datetime.fromisoformat(since.replace("Z", "+00:00"))
            rows = [r for r in rows if datetime.fromisoformat(r["SystemModstamp"].replace("+0000", "+00:00")) >= floor]
        rows.sort(key=lambda r: r["SystemModstamp"])
        out = [{"attributes": {"type": obj, "url": f"/services/data/{V}/sobjects/{obj}/{r['Id']}"},
                **{f: r.get(f) for f in fields}} for r in rows]
        return self._batch(out, f"01g{len(self.cursors)}")

    def _batch(self, rows: list[dict[str, Any]], locator: str, start: int = 0) -> Reply:
        self.cursors[locator] = rows
        chunk = rows[start: start + self.batch]
        done = start + self.batch >= len(rows)
        body: dict[str, Any] = {"totalSize": len(rows), "done": done, "records": chunk}
        if not done:
            body["nextRecordsUrl"] = f"/services/data/{V}/query/{locator}-{start + self.batch}"
        return Reply(200, body)

    def more(self, req: Any, locator: str) -> Reply:
        base, _, start = locator.rpartition("-")
        if base not in self.cursors:
            return Reply(400, [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}])
        return self._batch(self.cursors[base], base, int(start))
