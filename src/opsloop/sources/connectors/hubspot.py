"""HubSpot CRM v3 with a private app token.

Full load: ``GET /crm/v3/objects/{object}`` with ``after`` paging (properties and associations inline).
Incremental: ``POST /crm/v3/objects/{object}/search`` filtered on the last-modified property (``GTE``
cursor minus the lag window), sorted ascending, so every page moves the cursor safely; the search API
stops at 10,000 results per query, so the query restarts from the last modified date it reached.
Associations for searched records come from ``POST /crm/v4/associations/{from}/{to}/batch/read``.
Owners (``/crm/v3/owners``) and pipelines (``/crm/v3/pipelines/{object}``) are read whole each run.
A 429 whose ``policyName`` is ``DAILY`` ends the run as partial; other 429s and 5xx are retried.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from .._http import Http
from ..config import HubSpotObject, HubSpotSource
from .base import Page, PullContext, Stream

SEARCH_LIMIT = 10000
_NOUNS = {"companies": "company", "contacts": "contact", "deals": "deal", "tickets": "ticket",
          "line_items": "line_item", "products": "product", "quotes": "quote", "owners": "owner"}


def noun(name: str) -> str:
    if name in _NOUNS:
        return _NOUNS[name]
    if name.endswith("ies"):
        return name[:-3] + "y"
    return name[:-1] if name.endswith("s") else name


def _daily_quota(response: Any) -> bool:
    if response.status_code != 429:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and str(body.get("policyName", "")).upper() == "DAILY"


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _iso_ms(ms: int) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HubSpotConnector:
    def __init__(self, config: HubSpotSource, ctx: PullContext) -> None:
        self.config = config
        self.ctx = ctx
        self.base = config.base_url.rstrip("/")
        self.http = Http(ctx.source, "HubSpot", ctx.budget, attempts=ctx.retry_attempts,
                         max_delay=ctx.max_retry_delay, backoff=ctx.retry_backoff, quota_check=_daily_quota,
                         credentials_hint=f"Check the private app token in {config.token_env} and its scopes "
                                          "(see docs/sources.md#hubspot).")
        self.http.headers["Authorization"] = f"Bearer {ctx.secret(config.token_env) or ''}"

    def streams(self) -> list[Stream]:
        out = [Stream(o.name, ["id"], "merge", noun(o.name), options={"object": o})
               for o in self.config.object_configs()]
        if self.config.owners:
            out.append(Stream("owners", ["id"], "merge", "owner", options={"kind": "owners"}))
        for obj in self.config.pipelines:
            out.append(Stream(f"{obj}_pipelines", ["id"], "merge", "pipeline",
                              options={"kind": "pipelines", "object": obj}))
        return out

    # -- reading ------------------------------------------------------------------------------
    def read(self, stream: Stream, cursor: Any) -> Iterator[Page]:
        kind = stream.options.get("kind")
        if kind == "owners":
            yield from self._owners()
        elif kind == "pipelines":
            data = self.http.get(f"{self.base}/crm/v3/pipelines/{stream.options['object']}")
            yield Page(data.get("results", []))
        else:
            obj: HubSpotObject = stream.options["object"]
            properties = obj.properties or self._property_names(obj.name)
            if isinstance(cursor, dict) and "since" in cursor:
                yield from self._search(obj, properties, cursor["since"])
                yield from self._archived(obj, properties, cursor["since"])
            else:
                yield from self._list(obj, properties, cursor if isinstance(cursor, dict) else {})

    def _owners(self) -> Iterator[Page]:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": self.config.page_size}
            if after:
                params["after"] = after
            data = self.http.get(f"{self.base}/crm/v3/owners", params)
            yield Page(data.get("results", []))
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    def _property_names(self, obj: str) -> list[str]:
        data = self.http.get(f"{self.base}/crm/v3/properties/{obj}")
        return [p["name"] for p in data.get("results", [])]

    def _row(self, item: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"id": item["id"], "created_at": item.get("createdAt"),
                               "updated_at": item.get("updatedAt"), "archived": item.get("archived", False)}
        for key, value in (item.get("properties") or {}).items():
            if key not in row:
                row[key] = value
        for to, assoc in (item.get("associations") or {}).items():
            row[f"{to}_ids"] = sorted({str(a["id"]) for a in assoc.get("results", [])})
        return row

    def _list(self, obj: HubSpotObject, properties: list[str], resume: dict[str, Any]) -> Iterator[Page]:
        after: str | None = resume.get("after")
        newest: str | None = resume.get("newest")
        while True:
            params: dict[str, Any] = {"limit": self.config.page_size, "archived": "false"}
            if properties:
                params["properties"] = ",".join(properties)
            if obj.associations:
                params["associations"] = ",".join(obj.associations)
            if after:
                params["after"] = after
            data = self.http.get(f"{self.base}/crm/v3/objects/{obj.name}", params)
            rows = [self._row(item) for item in data.get("results", [])]
            for row in rows:
                if row["updated_at"] and (newest is None or row["updated_at"] > newest):
                    newest = row["updated_at"]
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if after:
                yield Page(rows, cursor={"after": after, "newest": newest})
            else:
                yield Page(rows, cursor={"since": newest or "1970-01-01T00:00:00.000Z"})
                return

    def _modified_property(self, obj: str) -> str:
        return "lastmodifieddate" if obj == "contacts" else "hs_lastmodifieddate"

    def _search(self, obj: HubSpotObject, properties: list[str], since: str) -> Iterator[Page]:
        prop = self._modified_property(obj.name)
        start_ms = _ms(since) - int(self.ctx.lag * 1000)
        cursor = since
        after: str | None = None
        while True:
            body: dict[str, Any] = {
                "filterGroups": [{"filters": [{"propertyName": prop, "operator": "GTE", "value": str(start_ms)}]}],
                "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                "properties": sorted({*properties, prop}), "limit": self.config.page_size,
            }
            if after:
                body["after"] = after
            data = self.http.post(f"{self.base}/crm/v3/objects/{obj.name}/search", body)
            items = data.get("results", [])
            rows = [self._row(item) for item in items]
            if obj.associations and rows:
                self._associate(obj, rows)
            for row in rows:
                if row["updated_at"] and row["updated_at"] > cursor:
                    cursor = row["updated_at"]
            yield Page(rows, cursor={"since": cursor})
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return
            if int(after) + self.config.page_size > SEARCH_LIMIT:
                # the search API serves at most 10,000 results per query: restart from where we are
                last = rows[-1]["updated_at"] if rows else None
                if last is None or _ms(last) <= start_ms:
                    return
                start_ms, after = _ms(last), None

    def _archived(self, obj: HubSpotObject, properties: list[str], since: str) -> Iterator[Page]:
        """Records archived (deleted) since the cursor: ``GET /crm/v3/objects/{object}?archived=true``."""
        floor = _ms(since) - int(self.ctx.lag * 1000)
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": self.config.page_size, "archived": "true"}
            if properties:
                params["properties"] = ",".join(properties)
            if after:
                params["after"] = after
            data = self.http.get(f"{self.base}/crm/v3/objects/{obj.name}", params)
            rows = []
            for item in data.get("results", []):
                archived_at = item.get("archivedAt")
                if archived_at and _ms(archived_at) >= floor:
                    row = self._row(item)
                    row["archived"] = True
                    row["archived_at"] = archived_at
                    rows.append(row)
            if rows:
                yield Page(rows, deleted=[r["id"] for r in rows])
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    def _associate(self, obj: HubSpotObject, rows: list[dict[str, Any]]) -> None:
        for to in obj.associations:
            data = self.http.post(f"{self.base}/crm/v4/associations/{obj.name}/{to}/batch/read",
                                  {"inputs": [{"id": r["id"]} for r in rows]})
            found = {str(r["from"]["id"]): sorted({str(t["toObjectId"]) for t in r.get("to", [])})
                     for r in data.get("results", [])}
            for row in rows:
                if row["id"] in found:
                    row[f"{to}_ids"] = found[row["id"]]

    def close(self) -> None:
        self.http.close()


def build(config: HubSpotSource, ctx: PullContext) -> HubSpotConnector:
    return HubSpotConnector(config, ctx)
