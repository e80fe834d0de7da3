"""Local stand-ins for vendor APIs, written from their public docs (request shapes, answers, errors)."""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlparse

from .conftest import Request

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
Reply = tuple[int, dict[str, str], Any]


class FakeHubSpot:
    """CRM v3 objects: batch upsert/update by idProperty (200, or 207 with per-input errors), batch archive,
    properties; Bearer auth; 429 ``RATE_LIMIT`` and 5xx on demand."""

    PROPERTIES = ("email", "firstname", "lastname", "phone", "company", "lifecyclestage", "plan")

    def __init__(self, token: str = "pat-test") -> None:
        self.token = token
        self.contacts: dict[str, dict[str, Any]] = {}
        self.next_id = 1000
        self.writes: Counter[str] = Counter()
        self.inject: list[tuple[int, dict[str, str]]] = []
        self.whole_batch_errors = False
        """Answer 400 for the whole batch when any input is invalid (instead of 207 multi-status)."""
        self.archived: list[str] = []

    def add_existing(self, email: str, **props: Any) -> str:
        self.next_id += 1
        self.contacts[email] = {"id": str(self.next_id), "properties": {"email": email, **props}, "by": "someone",
                                "updatedAt": _now()}
        return str(self.next_id)

    def edit(self, email: str, **props: Any) -> None:
        """A person edits the contact in HubSpot's UI: the properties change, ``updatedAt`` moves on."""
        contact = self.contacts[email]
        contact["properties"].update(props)
        contact["updatedAt"] = _now()

    def calls(self, server: Any, path_end: str) -> list[Request]:
        return [r for r in server.requests if r.path.endswith(path_end)]

    def __call__(self, req: Request) -> Reply:
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {}, {"status": "error", "category": "INVALID_AUTHENTICATION",
                             "message": "Authentication credentials not found."}
        if self.inject:
            status, headers = self.inject.pop(0)
            if status == 429:
                return 429, headers, {"status": "error", "message": "You have reached your secondly limit.",
                                      "errorType": "RATE_LIMIT", "policyName": "SECONDLY"}
            return status, headers, {"status": "error", "message": "internal error", "category": "INTERNAL"}
        path = urlparse(req.path).path
        if req.method == "GET" and path == "/crm/v3/properties/contacts":
            return 200, {}, {"results": [{"name": n, "type": "string"} for n in self.PROPERTIES]}
        m = re.fullmatch(r"/crm/v3/objects/contacts/batch/(upsert|update|archive)", path)
        if not m or req.method != "POST":
            return 404, {}, {"status": "error", "category": "OBJECT_NOT_FOUND", "message": f"no route {path}"}
        inputs = req.json().get("inputs")
        if not isinstance(inputs, list) or not 0 < len(inputs) <= 100:
            return 400, {}, {"status": "error", "category": "VALIDATION_ERROR",
                             "message": "inputs must hold between 1 and 100 items"}
        if m.group(1) == "archive":
            for item in inputs:
                for email, c in list(self.contacts.items()):
                    if c["id"] == item["id"]:
                        del self.contacts[email]
                        self.archived.append(email)
            return 204, {}, None
        return self._write(m.group(1), inputs)

    def _write(self, action: str, inputs: list[dict[str, Any]]) -> Reply:
        results, errors = [], []
        for item in inputs:
            props = item.get("properties") or {}
            trace = item.get("objectWriteTraceId")
            unknown = [p for p in props if p not in self.PROPERTIES]
            if unknown or item.get("idProperty") != "email":
                return 400, {}, {"status": "error", "category": "VALIDATION_ERROR",
                                 "message": f"Property values were not valid: unknown {unknown or 'idProperty'}"}
            phone = props.get("phone")
            if phone not in (None, "") and not E164.match(str(phone)):
                error = {"status": "error", "category": "VALIDATION_ERROR",
                         "message": f'Property values were not valid: [{{"isValid":false,"message":"{phone} is '
                                    'not a valid phone number","error":"INVALID_PHONE_NUMBER","name":"phone"}]',
                         "context": {"objectWriteTraceId": [trace]}}
                if self.whole_batch_errors:
                    return 400, {}, {k: v for k, v in error.items() if k != "context"}
                errors.append(error)
                continue
            email = str(item["id"])
            existing = self.contacts.get(email)
            if existing is None and action == "update":
                errors.append({"status": "error", "category": "OBJECT_NOT_FOUND", "message": "Object not found",
                               "context": {"ids": [email]}})
                continue
            new = existing is None
            if new:
                self.next_id += 1
                existing = self.contacts[email] = {"id": str(self.next_id), "properties": {"email": email},
                                                   "by": "api"}
            existing["properties"].update(props)
            existing["updatedAt"] = _now()
            self.writes[email] += 1
            results.append({"id": existing["id"], "new": new, "objectWriteTraceId": trace,
                            "properties": dict(existing["properties"]), "archived": False})
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": "2026-01-01T00:00:00Z",
                                "completedAt": "2026-01-01T00:00:01Z"}
        if errors:
            body.update(numErrors=len(errors), errors=errors)
            return 207, {}, body
        return 200, {}, body


def _now() -> str:
    """An object's ``updatedAt`` as HubSpot writes it (ISO 8601, UTC, milliseconds)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def zendesk_now() -> str:
    """A user's ``updated_at`` as Zendesk writes it (ISO 8601, UTC, whole seconds)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeZendesk:
    """Users create_or_update_many and destroy_many as background jobs (job_status polled: queued, working,
    completed, results by index); organizations create_or_update; basic auth with an API token; 429."""

    def __init__(self, email: str = "agent@example.com", token: str = "zd-test") -> None:
        self.auth = "Basic " + base64.b64encode(f"{email}/token:{token}".encode()).decode()
        self.users: dict[str, dict[str, Any]] = {}
        self.orgs: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.next_id = 5000
        self.inject: list[tuple[int, dict[str, str]]] = []
        self.polls = 0
        self.writes: Counter[str] = Counter()

    def add_existing(self, email: str, **fields: Any) -> int:
        self.next_id += 1
        self.users[email] = {"id": self.next_id, "email": email, **fields, "updated_at": zendesk_now()}
        return self.next_id

    def edit(self, email: str, **fields: Any) -> None:
        """An agent edits the user in Zendesk: the fields change, ``updated_at`` moves on."""
        self.users[email].update(fields, updated_at=zendesk_now())

    def _job(self, results: list[dict[str, Any]]) -> Reply:
        job_id = f"job{len(self.jobs) + 1:08x}"
        self.jobs[job_id] = {"id": job_id, "results": results, "polls": 0, "total": len(results)}
        return 200, {}, {"job_status": {"id": job_id, "status": "queued", "url": f"/api/v2/job_statuses/{job_id}.json",
                                        "total": len(results), "progress": 0, "results": None}}

    def __call__(self, req: Request) -> Reply:
        if req.headers.get("authorization") != self.auth:
            return 401, {}, {"error": "Couldn't authenticate you"}
        if self.inject:
            status, headers = self.inject.pop(0)
            return status, headers, {"error": "APIRateLimitExceeded" if status == 429 else "InternalError"}
        url = urlparse(req.path)
        path = url.path.removesuffix(".json")
        if req.method == "POST" and path == "/api/v2/users/create_or_update_many":
            users = req.json().get("users") or []
            if len(users) > 100:
                return 400, {}, {"error": "RecordInvalid", "description": "Too many users (max 100)"}
            return self._job([self._upsert_user(i, u) for i, u in enumerate(users)])
        if req.method == "DELETE" and path == "/api/v2/users/destroy_many":
            ids = {int(i) for i in parse_qs(url.query)["ids"][0].split(",")}
            results = []
            for email, user in list(self.users.items()):
                if user["id"] in ids:
                    del self.users[email]
                    results.append({"id": user["id"], "action": "delete", "success": True, "status": "Deleted"})
            return self._job(results)
        m = re.fullmatch(r"/api/v2/job_statuses/(\w+)", path)
        if req.method == "GET" and m:
            self.polls += 1
            job = self.jobs[m.group(1)]
            job["polls"] += 1
            status = "working" if job["polls"] == 1 else "completed"
            done = status == "completed"
            return 200, {}, {"job_status": {"id": job["id"], "status": status, "total": job["total"],
                                            "progress": job["total"] if done else 0,
                                            "results": job["results"] if done else None,
                                            "message": "Completed" if done else None}}
        if req.method == "POST" and path == "/api/v2/organizations/create_or_update":
            org = req.json()["organization"]
            existing = self.orgs.get(org["external_id"])
            created = existing is None
            if created:
                self.next_id += 1
                existing = self.orgs[org["external_id"]] = {"id": self.next_id}
            existing.update(org)
            return (201 if created else 200), {}, {"organization": existing}
        return 404, {}, {"error": "InvalidEndpoint", "description": f"no route {path}"}

    def _upsert_user(self, index: int, user: dict[str, Any]) -> dict[str, Any]:
        phone = user.get("phone")
        if phone is not None and not E164.match(str(phone)):
            return {"index": index, "error": "PhoneNumberInvalid",
                    "details": f"Phone number: {phone} is not a valid phone number", "id": None}
        email = user["email"]
        existing = self.users.get(email)
        self.writes[email] += 1
        if existing is None:
            self.next_id += 1
            self.users[email] = {"id": self.next_id, **user, "updated_at": zendesk_now()}
            return {"index": index, "id": self.next_id, "action": "create", "status": "Created", "success": True}
        existing.update(user, updated_at=zendesk_now())
        return {"index": index, "id": existing["id"], "action": "update", "status": "Updated", "success": True}


class FakeSalesforce:
    """REST sObject Collections: upsert by external id (PATCH, allOrNone false, one result per record in
    order), update by id, DELETE by ids; describe; Bearer token; per-record REQUIRED_FIELD_MISSING."""

    PREFIX = "/services/data/v61.0"
    FIELDS = ("FirstName", "LastName", "Email", "Phone", "Ext_Id__c")

    def __init__(self, token: str = "00Dtest") -> None:
        self.token = token
        self.records: dict[str, dict[str, Any]] = {}
        self.next_id = 1
        self.inject: list[tuple[int, dict[str, str]]] = []
        self.deleted: list[str] = []

    def __call__(self, req: Request) -> Reply:
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {}, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
        if self.inject:
            status, headers = self.inject.pop(0)
            return status, headers, [{"message": "Service unavailable", "errorCode": "SERVER_UNAVAILABLE"}]
        url = urlparse(req.path)
        path = url.path.removeprefix(self.PREFIX)
        if req.method == "GET" and path == "/sobjects/Contact/describe":
            return 200, {}, {"name": "Contact", "fields": [{"name": f, "createable": True, "updateable": True}
                                                            for f in self.FIELDS]}
        if req.method == "PATCH" and path == "/composite/sobjects/Contact/Ext_Id__c":
            body = req.json()
            if len(body["records"]) > 200:
                return 400, {}, [{"message": "too many records", "errorCode": "EXCEEDED_ID_LIMIT"}]
            return 200, {}, [self._upsert(r) for r in body["records"]]
        if req.method == "DELETE" and path == "/composite/sobjects":
            out = []
            for rid in parse_qs(url.query)["ids"][0].split(","):
                ext = next((k for k, v in self.records.items() if v["Id"] == rid), None)
                if ext is None:
                    out.append({"id": rid, "success": False, "errors": [
                        {"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}]})
                else:
                    del self.records[ext]
                    self.deleted.append(ext)
                    out.append({"id": rid, "success": True, "errors": []})
            return 200, {}, out
        return 404, {}, [{"errorCode": "NOT_FOUND", "message": f"no route {path}"}]

    def _upsert(self, record: dict[str, Any]) -> dict[str, Any]:
        assert record["attributes"]["type"] == "Contact"
        ext = record["Ext_Id__c"]
        existing = self.records.get(ext)
        fields = {k: v for k, v in record.items() if k != "attributes"}
        if existing is None and not fields.get("LastName"):
            return {"success": False, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING",
                                                  "message": "Required fields are missing: [LastName]",
                                                  "fields": ["LastName"]}]}
        created = existing is None
        if created:
            existing = self.records[ext] = {"Id": f"003{self.next_id:015d}"}
            self.next_id += 1
        existing.update(fields)
        return {"id": existing["Id"], "success": True, "errors": [], "created": created}


class FakeSlack:
    """chat.postMessage (JSON or form body): ok/ts, ``ok: false`` errors with HTTP 200, 429 with Retry-After."""

    def __init__(self, token: str = "xoxb-test") -> None:
        self.token = token
        self.messages: list[dict[str, Any]] = []
        self.inject: list[tuple[int, dict[str, str]]] = []

    def __call__(self, req: Request) -> Reply:
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        if self.inject:
            status, headers = self.inject.pop(0)
            return status, headers, {"ok": False, "error": "ratelimited"}
        if not req.path.startswith("/chat.postMessage"):
            return 404, {}, {"ok": False, "error": "unknown_method"}
        if req.headers.get("content-type", "").startswith("application/json"):
            args = req.json()
        else:
            args = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        if args.get("channel") != "#sales":
            return 200, {}, {"ok": False, "error": "channel_not_found"}
        ts = f"1700000000.{len(self.messages) + 1:06d}"
        self.messages.append({"channel": args["channel"], "text": args.get("text"), "ts": ts})
        return 200, {}, {"ok": True, "channel": "C0SALES", "ts": ts, "message": {"text": args.get("text")}}
