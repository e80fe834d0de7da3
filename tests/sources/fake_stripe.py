"""Stripe as its API reference describes it: bearer secret key, list objects newest first with
`limit`/`starting_after`/`has_more`, the events list with `type` wildcards and `created[gte]`, and
`{"error": {...}}` bodies."""

from __future__ import annotations

from typing import Any, ClassVar

from ._fake import FakeServer, Reply


class StripeFake(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.key = "sk_test_good"
        self.clock = 1_700_000_000
        self.data: dict[str, dict[str, dict[str, Any]]] = {"customers": {}, "subscriptions": {}, "invoices": {},
                                                           "charges": {}}
        self.events: list[dict[str, Any]] = []
        self.route("GET", r"/v1/events", self.list_events)
        self.route("GET", r"/v1/(\w+)", self.list_objects)

    KINDS: ClassVar[dict[str, str]] = {
        "customers": "customer", "subscriptions": "subscription", "invoices": "invoice", "charges": "charge"}

    def put(self, coll: str, oid: str, **fields: Any) -> dict[str, Any]:
        self.clock += 60
        kind = self.KINDS[coll]
        created = oid not in self.data[coll]
        obj = self.data[coll].setdefault(oid, {"id": oid, "object": kind, "created": self.clock, "livemode": False})
        obj.update(fields)
        prefix = "customer.subscription" if kind == "subscription" else kind
        self.events.append({"id": f"evt_{len(self.events) + 1}", "object": "event", "created": self.clock,
                            "type": f"{prefix}.{'created' if created else 'updated'}",
                            "data": {"object": dict(obj)}})
        return obj

    def delete(self, coll: str, oid: str) -> None:
        self.clock += 60
        obj = self.data[coll].pop(oid)
        self.events.append({"id": f"evt_{len(self.events) + 1}", "object": "event", "created": self.clock,
                            "type": f"{self.KINDS[coll]}.deleted", "data": {"object": dict(obj)}})

    def dispatch(self, req: Any) -> Reply:
        if req.headers.get("authorization") != f"Bearer {self.key}":
            with self.lock:
                self.log.append(req)
            shown = (req.headers.get("authorization") or "")[-4:]
            return Reply(401, {"error": {"message": f"Invalid API Key provided: sk_test_****{shown}",
                                         "type": "invalid_request_error"}})
        return super().dispatch(req)

    def _page(self, req: Any, rows: list[dict[str, Any]], path: str) -> Reply:
        limit = min(int(req.arg("limit", "10")), 100)
        after = req.arg("starting_after")
        if after:
            ids = [r["id"] for r in rows]
            if after not in ids:
                return Reply(400, {"error": {"message": f"No such object: '{after}'", "param": "starting_after",
                                             "type": "invalid_request_error"}})
            rows = rows[ids.index(after) + 1:]
        return Reply(200, {"object": "list", "url": path, "has_more": len(rows) > limit, "data": rows[:limit]})

    def list_objects(self, req: Any, coll: str) -> Reply:
        if coll not in self.data:
            return Reply(404, {"error": {"message": f"Unrecognized request URL (GET: /v1/{coll}).",
                                         "type": "invalid_request_error"}})
        rows = sorted(self.data[coll].values(), key=lambda o: (o["created"], o["id"]), reverse=True)
        return self._page(req, rows, f"/v1/{coll}")

    def list_events(self, req: Any) -> Reply:
        rows = list(reversed(self.events))
        pattern = req.arg("type")
        if pattern:
            if pattern.endswith(".*"):
                rows = [e for e in rows if e["type"].startswith(pattern[:-1])]
            else:
                rows = [e for e in rows if e["type"] == pattern]
        gte = req.arg("created[gte]")
        if gte:
            rows = [e for e in rows if e["created"] >= int(gte)]
        return self._page(req, rows, "/v1/events")
