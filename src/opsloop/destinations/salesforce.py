"""``type: salesforce`` — sObject Collections upsert by an external id field, with per-record errors.

Endpoints (REST API, ``/services/data/{api_version}``): ``PATCH /composite/sobjects/{object}/{external_id_field}``
with ``allOrNone: false`` (upsert, up to 200 records; answers one ``{id, success, created, errors}`` per record,
in order), ``PATCH /composite/sobjects`` by record id (update), ``DELETE /composite/sobjects?ids=...``
(mirror deletes), ``GET /sobjects/{object}/describe`` (declared fields). Auth: an OAuth access token.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel

from .._json import JsonObject
from ..narrow import json_list, json_object, json_objects
from . import _http
from .base import Destination, DestinationConfig, DestinationContext, RowOp, RowResult


class SalesforceConfig(DestinationConfig):
    instance_url: str
    """``https://yourdomain.my.salesforce.com``."""
    api_version: str = "v61.0"
    object: str = "Contact"
    external_id_field: str
    """An External ID field of the object (e.g. ``Opsloop_Id__c``); the sync key fills it."""
    token_env: str = "SALESFORCE_TOKEN"  # noqa: S105 (the name of an environment variable)
    timeout: float = 60.0
    ca_file: str | None = None
    """PEM file of CAs to trust for ``instance_url`` (default: ``channels.http.ca_file``, else the system's)."""


def _errors(item: JsonObject) -> str:
    parts = []
    for err in json_objects(item.get("errors")):
        text = f"{err.get('statusCode', 'ERROR')}: {err.get('message', '')}"
        if err.get("fields"):
            text += f" ({', '.join(map(str, json_list(err['fields'])))})"
        parts.append(text)
    return "; ".join(parts) or "rejected"


class SalesforceDestination(Destination):
    type = "salesforce"
    Config = SalesforceConfig
    IDEMPOTENT = True
    DELETES = True
    MAX_BATCH = 200
    config: SalesforceConfig

    def __init__(self, config: BaseModel, ctx: DestinationContext) -> None:
        super().__init__(config, ctx)
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            token = self.ctx.require_secret(self.config.token_env, "salesforce")
            base = f"{self.config.instance_url.rstrip('/')}/services/data/{self.config.api_version}"
            self._client = _http.client(self.ctx, timeout=self.config.timeout, ca_file=self.config.ca_file,
                                        base_url=base, headers={"authorization": f"Bearer {token}"})
        return self._client

    def declared_fields(self) -> set[str] | None:
        what = f"salesforce describe {self.config.object}"
        data = _http.json_body(_http.request(self.client, "GET", f"/sobjects/{self.config.object}/describe", what),
                               what)
        return {str(f["name"]) for f in json_objects(json_object(data).get("fields"))
                if f.get("createable") or f.get("updateable")}

    def send(self, batch: list[RowOp]) -> list[RowResult]:
        if batch[0].op == "delete":
            return self._delete(batch)
        cfg = self.config
        if batch[0].op == "update":
            known = [r for r in batch if r.dest_id]
            out = [RowResult(r.key, False, "no Salesforce id is known for this row yet; use mode: upsert")
                   for r in batch if not r.dest_id]
            if known:
                records = [{"attributes": {"type": cfg.object}, "id": r.dest_id, **r.fields} for r in known]
                out += self._collection("PATCH", "/composite/sobjects", known, records)
            return out
        records = [{"attributes": {"type": cfg.object}, **r.fields, cfg.external_id_field: r.key} for r in batch]
        return self._collection("PATCH", f"/composite/sobjects/{cfg.object}/{cfg.external_id_field}", batch, records)

    def _collection(self, method: str, path: str, batch: list[RowOp],
                    records: list[dict[str, object]]) -> list[RowResult]:
        what = f"salesforce {method} {path}"
        response = _http.request(self.client, method, path, what, json={"allOrNone": False, "records": records})
        items = _http.json_body(response, what)
        out = []
        for row, answer in zip(batch, json_list(items), strict=False):
            item = json_object(answer)
            if item.get("success"):
                found = item.get("id")
                out.append(RowResult(row.key, True, dest_id=None if found is None else str(found),
                                     created=bool(item.get("created"))))
            else:
                out.append(RowResult(row.key, False, _errors(item)))
        return out

    def _delete(self, batch: list[RowOp]) -> list[RowResult]:
        rows = [r for r in batch if r.dest_id]
        out = [RowResult(r.key, False, "no Salesforce id is known for this row") for r in batch if not r.dest_id]
        if rows:
            what = "salesforce DELETE /composite/sobjects"
            response = _http.request(self.client, "DELETE", "/composite/sobjects", what,
                                     params={"ids": ",".join(str(r.dest_id) for r in rows), "allOrNone": "false"})
            for row, answer in zip(rows, json_list(_http.json_body(response, what)), strict=False):
                item = json_object(answer)
                out.append(RowResult(row.key, bool(item.get("success")), None if item.get("success") else _errors(item),
                                     dest_id=row.dest_id))
        return out

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
