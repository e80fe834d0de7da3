"""HubSpot CRM v3 with a private app token.

Full load: ``GET /crm/v3/objects/{object}`` with ``after`` paging (properties and associations inline).
Incremental: ``POST /crm/v3/objects/{object}/search`` filtered on the last-modified property (``GTE``
cursor minus the lag window), sorted ascending, so every page moves the cursor safely; the search API
stops at 10,000 results per query, so the query restarts from the last modified date it reached.
Associations for searched records come from ``POST /crm/v4/associations/{from}/{to}/batch/read``.
Owners (``/crm/v3/owners``) and pipelines (``/crm/v3/pipelines/{object}``) are read whole each run.
A 429 whose ``policyName`` is ``DAILY`` ends the run as partial; other 429s and 5xx are retried.

Scopes: a stream the project asked for by name fails the pull when HubSpot answers 403 ``MISSING_SCOPES``
(the message names the scope); a stream that is only on by default (owners, deal pipelines, the default
objects) and the property list are skipped with a warning naming the scope, and the other streams load.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._errors import SourceAuthError, SourceError, SourceRequestError
from .._http import Http
from ..config import HubSpotObject, HubSpotSource
from .base import Page, PullContext, Stream

if TYPE_CHECKING:
    from requests import Response

SEARCH_LIMIT = 10000
_NOUNS = {"companies": "company", "contacts": "contact", "deals": "deal", "tickets": "ticket",
          "line_items": "line_item", "products": "product", "quotes": "quote", "owners": "owner"}


def noun(name: str) -> str:
    if name in _NOUNS:
        return _NOUNS[name]
    if name.endswith("ies"):
        return name[:-3] + "y"
    return name[:-1] if name.endswith("s") else name


def _daily_quota(response: Response) -> bool:
    if response.status_code != 429:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and str(body.get("policyName", "")).upper() == "DAILY"


def scope_for(path: str) -> str:
    """The scope HubSpot documents for a read endpoint (what the docs list; a 403 names the real one)."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["crm", "v3", "owners"]:
        return "crm.objects.owners.read"
    if parts[:3] == ["crm", "v3", "properties"] and len(parts) > 3:
        return f"crm.schemas.{parts[3]}.read"
    if parts[:3] == ["crm", "v3", "pipelines"] and len(parts) > 3:
        return f"crm.objects.{parts[3]}.read"
    if len(parts) > 3 and parts[2] in ("objects", "associations"):
        return f"crm.objects.{parts[3]}.read"
    return "the scope for this endpoint"


def missing_scopes(exc: SourceError) -> list[str]:
    """The scopes a 403 ``MISSING_SCOPES`` body names (``errors[].context.requiredGranularScopes``)."""
    body = exc.body
    if not isinstance(body, dict):
        return []
    found: list[str] = []
    for err in body.get("errors") or []:
        context = err.get("context") if isinstance(err, dict) else None
        if isinstance(context, dict):
            for key in ("requiredGranularScopes", "requiredScopes", "missingScopes"):
                found += [str(s) for s in context.get(key) or [] if str(s) not in found]
    context = body.get("context")
    if isinstance(context, dict):
        found += [str(s) for s in context.get("missingScopes") or [] if str(s) not in found]
    return found


def _refused(exc: BaseException) -> bool:
    """A 403 (scope not granted) or 404 (endpoint or object not there): what an optional stream may skip."""
    return isinstance(exc, SourceAuthError | SourceRequestError) and exc.status in (403, 404)


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
        ca_file = str(ctx.project_root / config.ca_file) if config.ca_file else None
        self.http = Http(ctx.source, "HubSpot", ctx.budget, attempts=ctx.retry_attempts,
                         max_delay=ctx.max_retry_delay, backoff=ctx.retry_backoff, quota_check=_daily_quota,
                         timeout=config.timeout, ca_file=ca_file,
                         credentials_hint=f"Check the private app token in {config.token_env} and its scopes "
                                          "(see docs/sources.md#hubspot).")
        self.http.headers["Authorization"] = f"Bearer {ctx.secret(config.token_env) or ''}"
        self._count = 0
        self._refused: list[str] = []
        """Optional streams skipped for a 403/404; when that is every stream, the pull fails."""
        self._read_any = False

    def streams(self) -> list[Stream]:
        out = self._streams()
        self._count = len(out)
        return out

    def _streams(self) -> list[Stream]:
        objects_required = self.config.required("objects")
        out = [Stream(o.name, ["id"], "merge", noun(o.name),
                      options={"object": o, "required": objects_required, "path": f"/crm/v3/objects/{o.name}"})
               for o in self.config.object_configs()]
        if self.config.owners:
            out.append(Stream("owners", ["id"], "merge", "owner",
                              options={"kind": "owners", "required": self.config.required("owners"),
                                       "path": "/crm/v3/owners"}))
        for obj in self.config.pipelines:
            out.append(Stream(f"{obj}_pipelines", ["id"], "merge", "pipeline",
                              options={"kind": "pipelines", "object": obj, "path": f"/crm/v3/pipelines/{obj}",
                                       "required": self.config.required("pipelines")}))
        return out

    # -- reading ------------------------------------------------------------------------------
    def read(self, stream: Stream, cursor: object) -> Iterator[Page]:
        try:
            for page in self._read(stream, cursor):
                self._read_any = True
                yield page
        except SourceError as exc:
            if not _refused(exc):
                raise
            if stream.options.get("required"):
                raise self._explained(exc, stream) from exc
            self._refused.append(self._skipped(exc, stream).removeprefix("warning: skipped "))
            if len(self._refused) == self._count and not self._read_any:
                # not one stream readable: a token that can read nothing is a mistake, not a warning
                error = SourceAuthError(
                    f"source {self.ctx.source!r}: the HubSpot token in {self.config.token_env} can read none of "
                    f"the streams: {'; '.join(self._refused)} (see docs/sources.md#hubspot)")
                error.status, error.body = exc.status, exc.body
                raise error from exc
            self.ctx.warn(self._skipped(exc, stream))

    def _scopes(self, exc: SourceError, path: str) -> str:
        return ", ".join(missing_scopes(exc)) or scope_for(path)

    def _explained(self, exc: SourceError, stream: Stream) -> SourceError:
        if exc.status != 403:
            return exc
        error = SourceAuthError(
            f"source {self.ctx.source!r}: the HubSpot token in {self.config.token_env} lacks the scope "
            f"{self._scopes(exc, str(stream.options['path']))} needed for the {stream.name} stream (HTTP 403). "
            "Add it to the private app, or drop the stream from the source's YAML (see docs/sources.md#hubspot)."
        )
        error.status, error.body = exc.status, exc.body
        return error

    def _skipped(self, exc: SourceError, stream: Stream) -> str:
        kind = stream.options.get("kind")
        stop = ("set owners: false" if kind == "owners" else "set pipelines: []" if kind == "pipelines"
                else f"list objects: without {stream.name}")
        if exc.status == 403:
            why = f"the token lacks the scope {self._scopes(exc, str(stream.options['path']))}; grant it, or {stop}"
        else:
            why = f"HubSpot answered 404 for {stream.options['path']}; {stop}"
        return f"warning: skipped {stream.name} ({why} to stop asking)"

    def _read(self, stream: Stream, cursor: object) -> Iterator[Page]:
        kind = stream.options.get("kind")
        if kind == "owners":
            yield from self._owners()
        elif kind == "pipelines":
            data = self.http.get(f"{self.base}/crm/v3/pipelines/{stream.options['object']}")
            yield Page(data.get("results", []))
        else:
            obj = stream.options["object"]
            if not isinstance(obj, HubSpotObject):
                raise TypeError(f"stream {stream.name!r} has no HubSpot object")
            properties = obj.properties or self._property_names(obj.name)
            if obj.properties:  # a listed set still carries the modified date the next pull's search compares
                properties = list(dict.fromkeys([*obj.properties, self._modified_property(obj.name)]))
            if isinstance(cursor, dict) and "since" in cursor:
                yield from self._search(obj, properties, cursor["since"])
                yield from self._archived(obj, properties, cursor["since"])
            else:
                yield from self._list(obj, properties, cursor if isinstance(cursor, dict) else {})

    def _owners(self) -> Iterator[Page]:
        after: str | None = None
        while True:
            params: dict[str, object] = {"limit": self.config.page_size}
            if after:
                params["after"] = after
            data = self.http.get(f"{self.base}/crm/v3/owners", params)
            yield Page(data.get("results", []))
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    def _property_names(self, obj: str) -> list[str]:
        """Every property of ``obj``; without the schema scope, HubSpot's default properties (a warning)."""
        path = f"/crm/v3/properties/{obj}"
        try:
            data = self.http.get(f"{self.base}{path}")
        except SourceError as exc:
            if not _refused(exc):
                raise
            why = (f"the token lacks the scope {self._scopes(exc, path)}" if exc.status == 403
                   else f"HubSpot answered 404 for {path}")
            self.ctx.warn(f"warning: {obj} has only HubSpot's default properties ({why} to list them; grant "
                          f"it, or list the properties under objects: [{{name: {obj}, properties: [...]}}])")
            return []
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
            params: dict[str, object] = {"limit": self.config.page_size, "archived": "false"}
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
            body: dict[str, object] = {
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
            params: dict[str, object] = {"limit": self.config.page_size, "archived": "true"}
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
