"""``type: zendesk`` — users by ``create_or_update_many`` (a background job polled to completion), and
organizations by ``create_or_update``.

Endpoints: ``POST /api/v2/users/create_or_update_many`` (up to 100 users; answers a ``job_status``),
``GET /api/v2/job_statuses/{id}`` (polled until ``completed``; ``results[]`` by ``index``),
``DELETE /api/v2/users/destroy_many?ids=...`` (mirror deletes; also a job),
``POST /api/v2/organizations/create_or_update`` (one organization per request).
Auth: an API token, ``{email}/token:{token}`` over basic auth. Permissions: see docs/syncs.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import httpx
from pydantic import BaseModel, model_validator

from .._json import JsonObject, JsonValue
from ..errors import TerminalDeliveryError, TransientDeliveryError
from ..narrow import json_object, json_objects
from . import _http
from .base import Destination, DestinationConfig, DestinationContext, RowOp, RowResult

USER_FIELDS = frozenset({
    "name", "email", "phone", "external_id", "role", "organization_id", "tags", "notes", "details",
    "time_zone", "locale", "verified", "alias", "signature", "shared_phone_number", "user_fields.*",
})
ORG_FIELDS = frozenset({"name", "external_id", "domain_names", "details", "notes", "group_id", "tags",
                        "shared_tickets", "shared_comments", "organization_fields.*"})


class ZendeskConfig(DestinationConfig):
    subdomain: str | None = None
    base_url: str | None = None
    """Overrides ``https://{subdomain}.zendesk.com`` (tests, proxies)."""
    object: Literal["users", "organizations"] = "users"
    id_field: Literal["email", "external_id"] = "email"
    """The user field the sync key fills, by which Zendesk matches an existing user."""
    email: str | None = None
    """The agent's email the API token belongs to, written in the file (``email_env`` is read when unset)."""
    email_env: str = "ZENDESK_EMAIL"
    """Environment variable holding the agent's email (as the zendesk source reads it)."""
    token_env: str = "ZENDESK_TOKEN"  # noqa: S105 (the name of an environment variable)
    poll_interval: float = 1.0
    job_timeout: float = 300.0
    timeout: float | None = None
    """Seconds per request (default: ``channels.http.timeout``, 30)."""
    ca_file: str | None = None
    """PEM file of CAs to trust for the API (default: ``channels.http.ca_file``, else the system's)."""

    @model_validator(mode="after")
    def _where(self) -> ZendeskConfig:
        if not self.subdomain and not self.base_url:
            raise ValueError("zendesk needs subdomain (acme for https://acme.zendesk.com) or base_url")
        return self


def _nest(fields: dict[str, object]) -> dict[str, object]:
    """``user_fields.plan: x`` becomes ``{"user_fields": {"plan": x}}``."""
    out: dict[str, object] = {}
    for name, value in fields.items():
        head, dot, rest = name.partition(".")
        if dot and head in ("user_fields", "organization_fields"):
            group = out.get(head)
            if not isinstance(group, dict):
                group = out[head] = {}
            group[rest] = value
        else:
            out[name] = value
    return out


def _index(value: JsonValue) -> int | None:
    """A job result's ``index`` (its user's place in the batch)."""
    return int(value) if isinstance(value, int | float | str) else None


def _job(body: JsonValue) -> JsonObject:
    """The ``job_status`` of an answer (``{}`` when it has none)."""
    return json_object(json_object(body).get("job_status"))


class ZendeskDestination(Destination):
    type = "zendesk"
    Config = ZendeskConfig
    IDEMPOTENT = True
    DELETES = True
    MAX_BATCH = 100
    config: ZendeskConfig

    def __init__(self, config: BaseModel, ctx: DestinationContext) -> None:
        super().__init__(config, ctx)
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            token = self.ctx.require_secret(self.config.token_env, "zendesk")
            email = self.config.email or self.ctx.require_secret(self.config.email_env, "zendesk")
            base = self.config.base_url or f"https://{self.config.subdomain}.zendesk.com"
            self._client = _http.client(self.ctx, timeout=self.config.timeout, ca_file=self.config.ca_file,
                                        base_url=base.rstrip("/"), auth=(f"{email}/token", token))
        return self._client

    @classmethod
    def validate(cls, config: BaseModel,
                 secret: Callable[[str], str | None]) -> list[tuple[tuple[str, ...], str]]:
        problems = super().validate(config, secret)
        if isinstance(config, ZendeskConfig) and not config.email and not secret(config.email_env):
            problems.append((("email_env",), f"the agent's email is not set; add {config.email_env}=agent@... to "
                                             ".env (or write email: in the destination)"))
        return problems

    def declared_fields(self) -> set[str] | None:
        return set(USER_FIELDS if self.config.object == "users" else ORG_FIELDS)

    def send(self, batch: list[RowOp]) -> list[RowResult]:
        if self.config.object == "organizations":
            return [self._organization(row) for row in batch]
        if batch[0].op == "delete":
            return self._destroy(batch)
        users = [{**_nest(row.fields), self.config.id_field: row.key} for row in batch]
        what = "zendesk users/create_or_update_many"
        response = _http.request(self.client, "POST", "/api/v2/users/create_or_update_many", what,
                                 json={"users": users})
        job = self._wait(_job(_http.json_body(response, what)), what)
        by_index = {_index(r["index"]): r for r in json_objects(job.get("results")) if "index" in r}
        out = []
        for i, row in enumerate(batch):
            item = by_index.get(i)
            if item is None:
                out.append(RowResult(row.key, False, "zendesk's job reported no result for this user"))
            elif item.get("success") is False or item.get("error"):
                error = str(item.get("error") or "failed")
                if item.get("details"):
                    error += f": {item['details']}"
                out.append(RowResult(row.key, False, error))
            else:
                created = str(item.get("action", "")).startswith("create") or item.get("status") == "Created"
                out.append(RowResult(row.key, True, dest_id=str(item.get("id")), created=created))
        return out

    def _wait(self, job: JsonObject, what: str) -> JsonObject:
        deadline = time.monotonic() + self.config.job_timeout
        while job.get("status") in ("queued", "working"):
            if time.monotonic() > deadline:
                raise TransientDeliveryError(f"{what}: job {job.get('id')} still {job.get('status')} after "
                                             f"{self.config.job_timeout:.0f}s")
            time.sleep(self.config.poll_interval * self.ctx.time_scale)
            response = _http.request(self.client, "GET", f"/api/v2/job_statuses/{job['id']}", f"{what} job status")
            job = _job(_http.json_body(response, what))
        if job.get("status") != "completed":
            raise TerminalDeliveryError(f"{what}: job {job.get('id')} {job.get('status')}: {job.get('message')}")
        return job

    def _destroy(self, batch: list[RowOp]) -> list[RowResult]:
        rows = [r for r in batch if r.dest_id]
        results = [RowResult(r.key, False, "no Zendesk user id is known for this row") for r in batch if not r.dest_id]
        if rows:
            what = "zendesk users/destroy_many"
            response = _http.request(self.client, "DELETE", "/api/v2/users/destroy_many", what,
                                     params={"ids": ",".join(str(r.dest_id) for r in rows)})
            self._wait(_job(_http.json_body(response, what)), what)
            results += [RowResult(r.key, True, dest_id=r.dest_id) for r in rows]
        return results

    def _organization(self, row: RowOp) -> RowResult:
        if row.op == "delete":
            what = f"zendesk organizations/{row.dest_id}"
            _http.request(self.client, "DELETE", f"/api/v2/organizations/{row.dest_id}", what)
            return RowResult(row.key, True, dest_id=row.dest_id)
        org = {**_nest(row.fields), "external_id": row.key}
        what = "zendesk organizations/create_or_update"
        try:
            response = _http.request(self.client, "POST", "/api/v2/organizations/create_or_update", what,
                                     json={"organization": org})
        except TerminalDeliveryError as exc:
            return RowResult(row.key, False, str(exc))
        data = json_object(json_object(_http.json_body(response, what)).get("organization"))
        return RowResult(row.key, True, dest_id=str(data.get("id")), created=response.status_code == 201)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
