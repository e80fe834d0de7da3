"""``type: hubspot`` — CRM v3 batch upsert by a unique property (``idProperty``), per-record errors.

Endpoints: ``POST /crm/v3/objects/{object}/batch/upsert`` (upsert, insert), ``.../batch/update`` (update),
``.../batch/archive`` (mirror deletes), ``GET /crm/v3/properties/{object}`` (declared fields for validate).
Each input carries ``objectWriteTraceId`` = the row's key, so a 207 multi-status answer maps every error
back to its row. Auth: a private app token (``Authorization: Bearer``). Scopes: see docs/syncs.md.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel

from .._json import JsonObject
from ..narrow import json_list, json_object, json_objects
from . import _http
from .base import Destination, DestinationConfig, DestinationContext, RowOp, RowResult


def record_error(err: JsonObject) -> str:
    """One per-record error as a person reads it, with HubSpot's codes beside each message::

        VALIDATION_ERROR: phone: INVALID_PHONE_NUMBER: 555-CALL-NOW is not a valid phone number

    HubSpot puts property errors as a JSON list inside ``message`` ("Property values were not valid:
    [{"error": "INVALID_PHONE_NUMBER", "name": "phone", "message": ...}]") and other details in
    ``errors[]`` (``code``, ``message``, ``context.propertyName``)."""
    import json

    message = str(err.get("message") or "rejected")
    details: list[str] = []
    head, sep, tail = message.partition(": [")
    if sep:
        try:
            items = json.loads("[" + tail)
        except ValueError:
            items = None
        if isinstance(items, list) and items and all(isinstance(i, dict) for i in items):
            message = head
            details = [": ".join(str(p) for p in (i.get("name"), i.get("error") or i.get("code"), i.get("message"))
                                 if p) for i in items]
    for sub in json_objects(err.get("errors")):
        context = json_object(sub.get("context"))
        props = json_list(context.get("propertyName"))
        scopes = json_list(context.get("requiredGranularScopes"))
        said = str(sub.get("message") or "").rstrip(". ") if scopes else sub.get("message")
        parts = [", ".join(map(str, props)), sub.get("code"), said, " ".join(map(str, scopes))]
        details.append(": ".join(str(p) for p in parts if p))
    text = "; ".join([message.rstrip(". "), *(d for d in details if d)]) if details else message
    text = text.replace("; ", ": ", 1)
    category = err.get("category")
    return f"{category}: {text}" if category else text


def _described(response: httpx.Response) -> str | None:
    """A whole-batch error body (400) read like a per-record one, so its codes show too."""
    try:
        body = response.json()
    except ValueError:
        return None
    return record_error(body) if isinstance(body, dict) and body.get("message") else None


class HubSpotConfig(DestinationConfig):
    object: str = "contacts"
    id_property: str = "email"
    """A unique property (``email`` for contacts, ``domain`` or a custom unique property otherwise)."""
    token_env: str = "HUBSPOT_TOKEN"  # noqa: S105 (the name of an environment variable)
    base_url: str = "https://api.hubapi.com"
    timeout: float | None = None
    """Seconds per request (default: ``channels.http.timeout``, 30)."""
    ca_file: str | None = None
    """PEM file of CAs to trust for ``base_url`` (relative to the project folder); default:
    ``channels.http.ca_file``, else the system's."""


class HubSpotDestination(Destination):
    type = "hubspot"
    Config = HubSpotConfig
    IDEMPOTENT = True
    DELETES = True
    MAX_BATCH = 100
    REQUESTS_PER_SECOND = 10.0
    config: HubSpotConfig

    def __init__(self, config: BaseModel, ctx: DestinationContext) -> None:
        super().__init__(config, ctx)
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            token = self.ctx.require_secret(self.config.token_env, "hubspot")
            self._client = _http.client(self.ctx, timeout=self.config.timeout, ca_file=self.config.ca_file,
                                        base_url=self.config.base_url.rstrip("/"),
                                        headers={"authorization": f"Bearer {token}"})
        return self._client

    def _path(self, action: str) -> str:
        return f"/crm/v3/objects/{self.config.object}/batch/{action}"

    def declared_fields(self) -> set[str] | None:
        response = _http.request(self.client, "GET", f"/crm/v3/properties/{self.config.object}",
                                 f"hubspot properties of {self.config.object}", describe=_described)
        data = _http.json_body(response, "hubspot properties")
        return {str(p["name"]) for p in json_objects(json_object(data).get("results"))}

    def send(self, batch: list[RowOp]) -> list[RowResult]:
        if batch[0].op == "delete":
            return self._archive(batch)
        action = "update" if batch[0].op == "update" else "upsert"
        inputs = [
            {"idProperty": self.config.id_property, "id": row.key, "objectWriteTraceId": row.key,
             "properties": {k: ("" if v is None else v) for k, v in row.fields.items()}}
            for row in batch
        ]
        what = f"hubspot {self.config.object} batch/{action}"
        response = _http.request(self.client, "POST", self._path(action), what, describe=_described,
                                 json={"inputs": inputs})
        data = _http.json_body(response, what)
        return self._results(batch, json_object(data))

    def _results(self, batch: list[RowOp], data: JsonObject) -> list[RowResult]:
        keys = {row.key for row in batch}
        out: dict[str, RowResult] = {}
        for item in json_objects(data.get("results")):
            props = json_object(item.get("properties"))
            key = item.get("objectWriteTraceId") or props.get(self.config.id_property)
            if isinstance(key, str) and key in keys:
                out[key] = RowResult(key, True, dest_id=str(item.get("id")), created=bool(item.get("new")))
        for err in json_objects(data.get("errors")):
            message = record_error(err)
            context = json_object(err.get("context"))
            ids = [err.get("objectWriteTraceId"), *json_list(context.get("objectWriteTraceId")),
                   *json_list(context.get("ids"))]
            for key in ids:
                if isinstance(key, str) and key in keys:
                    out[key] = RowResult(key, False, error=message)
        for row in batch:
            out.setdefault(row.key, RowResult(row.key, False, error="hubspot returned no result for this record"))
        return list(out.values())

    def _archive(self, batch: list[RowOp]) -> list[RowResult]:
        missing = [r for r in batch if not r.dest_id]
        rows = [r for r in batch if r.dest_id]
        results = [RowResult(r.key, False, "no HubSpot record id is known for this row") for r in missing]
        if rows:
            what = f"hubspot {self.config.object} batch/archive"
            _http.request(self.client, "POST", self._path("archive"), what,
                          json={"inputs": [{"id": r.dest_id} for r in rows]})
            results += [RowResult(r.key, True, dest_id=r.dest_id) for r in rows]
        return results

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
