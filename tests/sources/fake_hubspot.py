"""HubSpot CRM v3 as its public docs describe it: bearer token, `after` paging, search, owners,
pipelines, v4 association batch reads, daily-limit 429s and error bodies, and scopes: a private app
token granted only some scopes gets HubSpot's 403 ``MISSING_SCOPES`` body for the rest."""

from __future__ import annotations

import ssl
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._fake import FakeServer, Reply


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def required_scope(method: str, path: str) -> str | None:
    """The scope HubSpot's API reference lists for each endpoint this fake serves."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["crm", "v3", "owners"]:
        return "crm.objects.owners.read"
    if parts[:3] == ["crm", "v3", "properties"]:
        return f"crm.schemas.{parts[3]}.read"
    if parts[:3] == ["crm", "v3", "pipelines"]:
        return f"crm.objects.{parts[3]}.read"
    if parts[:3] == ["crm", "v3", "objects"] or parts[:3] == ["crm", "v4", "associations"]:
        return f"crm.objects.{parts[3]}.read"
    return None


ALL_SCOPES = frozenset({"crm.objects.owners.read", *(f"crm.{kind}.{obj}.read" for kind in ("objects", "schemas")
                                                      for obj in ("contacts", "companies", "deals"))})


class HubSpotFake(FakeServer):
    """``HubSpotFake(granted={...})`` starts it with a token that holds only those scopes."""

    def __init__(self, granted: set[str] | frozenset[str] = ALL_SCOPES) -> None:
        super().__init__()
        self.token = "pat-na1-good"
        self.granted = set(granted)
        self.clock = 1_700_000_000_000
        self.daily_remaining: int | None = None
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"contacts": {}, "companies": {}, "deals": {}}
        self.props: dict[str, list[str]] = {
            "contacts": ["email", "firstname", "lastname", "lifecyclestage", "lastmodifieddate"],
            "companies": ["name", "domain", "hs_lastmodifieddate"],
            "deals": ["dealname", "amount", "dealstage", "hs_lastmodifieddate"],
        }
        self.assoc: dict[tuple[str, str], dict[str, set[str]]] = {}
        self.archived: dict[str, dict[str, dict[str, Any]]] = {}
        self.owners = [{"id": "9", "email": "owner@example.com", "firstName": "Olive", "archived": False}]
        self.route("GET", r"/crm/v3/properties/(\w+)", self.properties)
        self.route("GET", r"/crm/v3/objects/(\w+)", self.list_objects)
        self.route("POST", r"/crm/v3/objects/(\w+)/search", self.search)
        self.route("POST", r"/crm/v4/associations/(\w+)/(\w+)/batch/read", self.batch_assoc)
        self.route("GET", r"/crm/v3/owners", self.list_owners)
        self.route("GET", r"/crm/v3/pipelines/(\w+)", self.pipelines)

    # -- data -------------------------------------------------------------------------------------
    def _mod_prop(self, obj: str) -> str:
        return "lastmodifieddate" if obj == "contacts" else "hs_lastmodifieddate"

    def put(self, obj: str, oid: str, **props: Any) -> None:
        self.clock += 3_600_000
        now = iso(self.clock)
        rec = self.objects[obj].setdefault(oid, {"id": oid, "properties": {}, "createdAt": now, "archived": False})
        rec["properties"].update({k: v for k, v in props.items()})
        rec["properties"][self._mod_prop(obj)] = now
        rec["properties"]["hs_object_id"] = oid
        rec["updatedAt"] = now
        for key in props:
            if key not in self.props[obj]:
                self.props[obj].append(key)

    def archive(self, obj: str, oid: str) -> None:
        self.clock += 3_600_000
        rec = self.objects[obj].pop(oid)
        rec.update(archived=True, archivedAt=iso(self.clock), updatedAt=iso(self.clock))
        self.archived.setdefault(obj, {})[oid] = rec

    def link(self, frm: str, fid: str, to: str, tid: str) -> None:
        self.assoc.setdefault((frm, to), {}).setdefault(fid, set()).add(tid)

    # -- protocol ---------------------------------------------------------------------------------
    def dispatch(self, req: Any) -> Reply:
        if req.headers.get("authorization") != f"Bearer {self.token}":
            with self.lock:
                self.log.append(req)
            return Reply(401, {"status": "error", "message": "Authentication credentials not found. This API "
                               "supports OAuth 2.0 authentication.", "correlationId": "c0ffee",
                               "category": "INVALID_AUTHENTICATION"})
        scope = required_scope(req.method, req.path)
        if scope is not None and scope not in self.granted:
            with self.lock:
                self.log.append(req)
            return Reply(403, {
                "status": "error",
                "message": "This app hasn't been granted all required scopes to make this call. Read more about "
                           "required scopes here: https://developers.hubspot.com/scopes.",
                "correlationId": "5a0b5a0b-0000-4000-8000-000000000403",
                "errors": [{"message": "One or more of the following scopes are required.",
                            "context": {"requiredGranularScopes": [scope]}}],
                "links": {"scopes": "https://developers.hubspot.com/scopes"},
                "category": "MISSING_SCOPES"})
        if self.daily_remaining is not None:
            if self.daily_remaining <= 0:
                with self.lock:
                    self.log.append(req)
                return Reply(429, {"status": "error", "message": "You have reached your daily limit.",
                                   "errorType": "RATE_LIMIT", "correlationId": "c0ffee", "policyName": "DAILY"})
            self.daily_remaining -= 1
        return super().dispatch(req)

    def _view(self, obj: str, rec: dict[str, Any], props: list[str] | None, assoc: list[str]) -> dict[str, Any]:
        wanted = props or ["createdate", self._mod_prop(obj), "hs_object_id"]
        out = {"id": rec["id"], "properties": {k: rec["properties"].get(k) for k in wanted
                                               if k in rec["properties"] or k in self.props[obj]},
               "createdAt": rec["createdAt"], "updatedAt": rec["updatedAt"], "archived": False}
        if assoc:
            out["associations"] = {
                to: {"results": [{"id": t, "type": f"{obj[:-1]}_to_{to[:-1]}"}
                                 for t in sorted(self.assoc.get((obj, to), {}).get(rec["id"], set()))]}
                for to in assoc if self.assoc.get((obj, to), {}).get(rec["id"])
            }
        return out

    def properties(self, req: Any, obj: str) -> Reply:
        return Reply(200, {"results": [{"name": n, "label": n, "type": "string"} for n in self.props[obj]]})

    def list_objects(self, req: Any, obj: str) -> Reply:
        if obj not in self.objects:
            return Reply(404, {"status": "error", "message": f"Unable to infer object type from: {obj}",
                               "category": "OBJECT_NOT_FOUND"})
        limit = min(int(req.arg("limit", "10")), 100)
        start = int(req.arg("after", "0"))
        props = req.arg("properties").split(",") if req.arg("properties") else None
        assoc = req.arg("associations").split(",") if req.arg("associations") else []
        archived = req.arg("archived") == "true"
        source = self.archived.get(obj, {}) if archived else self.objects[obj]
        rows = sorted(source.values(), key=lambda r: int(r["id"]))
        chunk = rows[start: start + limit]
        body: dict[str, Any] = {"results": [self._view(obj, r, props, assoc) for r in chunk]}
        if archived:
            for view, r in zip(body["results"], chunk, strict=True):
                view.update(archived=True, archivedAt=r["archivedAt"])
        if start + limit < len(rows):
            body["paging"] = {"next": {"after": str(start + limit), "link": f"{self.url}{req.path}?after="
                                                                             f"{start + limit}"}}
        return Reply(200, body)

    def search(self, req: Any, obj: str) -> Reply:
        body = req.json()
        limit = min(int(body.get("limit", 10)), 200)
        start = int(body.get("after") or 0)
        if start >= 10000:
            return Reply(400, {"status": "error", "message": "Cannot page beyond 10000 results",
                               "category": "VALIDATION_ERROR"})
        rows = list(self.objects[obj].values())
        for group in body.get("filterGroups", []):
            for f in group.get("filters", []):
                assert f["operator"] == "GTE"
                ms = int(f["value"])
                rows = [r for r in rows if _ms(r["properties"].get(f["propertyName"])) >= ms]
        for sort in body.get("sorts", []):
            rows.sort(key=lambda r: (r["properties"].get(sort["propertyName"]) or "", int(r["id"])),
                      reverse=sort.get("direction") == "DESCENDING")
        chunk = rows[start: start + limit]
        out: dict[str, Any] = {"total": len(rows),
                               "results": [self._view(obj, r, body.get("properties"), []) for r in chunk]}
        if start + limit < len(rows):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return Reply(200, out)

    def batch_assoc(self, req: Any, frm: str, to: str) -> Reply:
        ids = [i["id"] for i in req.json()["inputs"]]
        links = self.assoc.get((frm, to), {})
        return Reply(200, {"status": "COMPLETE", "results": [
            {"from": {"id": i}, "to": [{"toObjectId": int(t), "associationTypes": [
                {"category": "HUBSPOT_DEFINED", "typeId": 1, "label": None}]} for t in sorted(links[i])]}
            for i in ids if links.get(i)]})

    def list_owners(self, req: Any) -> Reply:
        return Reply(200, {"results": self.owners})

    def pipelines(self, req: Any, obj: str) -> Reply:
        return Reply(200, {"results": [{"id": "default", "label": "Sales Pipeline", "displayOrder": 0,
                                        "stages": [{"id": "appointmentscheduled", "label": "Appointment",
                                                    "displayOrder": 0, "metadata": {"probability": "0.2"}},
                                                   {"id": "closedwon", "label": "Closed won", "displayOrder": 1,
                                                    "metadata": {"probability": "1.0"}}]}]})


def _ms(text: str | None) -> int:
    if not text:
        return 0
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def serve_tls(fake: Any, folder: Path) -> Path:
    """Serve ``fake`` (any fake with ``httpd`` and ``url``) over HTTPS with a fresh self-signed certificate
    for 127.0.0.1; returns the certificate file (the private CA to trust)."""
    cert, key = folder / "private-ca.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    accept = fake.httpd.get_request

    def get_request() -> Any:
        sock, addr = accept()
        return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    fake.httpd.get_request = get_request
    fake.url = fake.url.replace("http://", "https://")
    return cert
