"""The OpenAPI 3.1 document of the JSON API, served at ``GET /api/openapi.json``.

It is written from the running app's routes: every ``/api/`` route's handler carries the ``Endpoint``
declarations (``web/_params.py``) it parses its input with, so the document describes exactly what the
handlers check. A route without one is a bug that ``undeclared`` reports (and a test fails on).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema
from pydantic import JsonValue as PydanticJson
from starlette.routing import BaseRoute, Route

from .._json import JsonObject, JsonValue
from ..metrics.spec import GRAINS
from ..models.project_files import MODELS as MODELS_SECTION
from ..sources.project_files import SOURCES as SOURCES_SECTION
from ..state import ALL_STATUSES
from ..syncs.project_files import SYNCS as SYNCS_SECTION
from ..workflows.project_files import WORKFLOWS as WORKFLOWS_SECTION
from ..workflows.runs import RUN_STATUSES, list_runs
from ._params import ERROR_SCHEMA, ERROR_TEXT, Body, Choice, Empty, Endpoint, Query, Timestamp

OPENAPI = Endpoint("GET", "/api/openapi.json", "This document: every API route, its parameters, bodies and answers",
                   query_model=Empty, body_model=Empty, ok={"type": "object", "required": ["openapi", "paths"]},
                   tag="meta")

if TYPE_CHECKING:
    from ..app import App

AnyEndpoint = Endpoint[BaseModel, BaseModel]
"""An endpoint of whatever query and body models (``Endpoint`` is covariant in both)."""

_CONVERTOR = re.compile(r"{(\w+):\w+}")


def openapi_path(path: str) -> str:
    """``/api/x/{index:int}`` (Starlette) as ``/api/x/{index}`` (OpenAPI)."""
    return _CONVERTOR.sub(r"{\1}", path)


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[tuple[Route, str]]:
    """Every (route, method) under ``/api/``."""
    for route in routes:
        if isinstance(route, Route) and route.path.startswith("/api/"):
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                yield route, method


def declared(routes: Iterable[BaseRoute]) -> list[AnyEndpoint]:
    """The declarations of the app's API routes, in route order (a project without sources has no
    source routes, and its document none either)."""
    by_route = {(e.method, e.path): e for e in ENDPOINTS}
    return [by_route[(m, r.path)] for r, m in api_routes(routes) if (m, r.path) in by_route]


def undeclared(routes: Iterable[BaseRoute]) -> list[str]:
    """``METHOD /path`` of every API route whose handler declares no ``Endpoint`` for it."""
    have = {(e.method, e.path) for e in ENDPOINTS}
    return [f"{m} {r.path}" for r, m in api_routes(routes) if (m, r.path) not in have]


def document(routes: Iterable[BaseRoute], title: str, version: str,
             names: Mapping[str, list[str]] | None = None) -> JsonObject:
    """The OpenAPI 3.1 document for the API routes among ``routes``; ``names`` (``live_names``) gives each
    path parameter the project's own names and ids as ``examples``."""
    schemas: JsonObject = {"Error": ERROR_SCHEMA}
    by_path: dict[str, JsonObject] = {}
    for endpoint in declared(routes):
        op = _operation(endpoint, schemas, names or {})
        by_path.setdefault(openapi_path(endpoint.path), {})[endpoint.method.lower()] = op
    paths: JsonObject = {**by_path}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"opsloop API: {title}", "version": version,
                 "description": "Every route takes `Authorization: Bearer $OPSLOOP_API_TOKEN` (or the login cookie "
                                "plus `X-CSRF-Token` for writes). Errors are JSON: `{\"error\": ..., "
                                "\"parameter\": ..., \"in\": ...}`."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def live_names(app: App) -> dict[str, list[str]]:
    """The project's names (and a few recent event and run ids) by kind, for the path parameters' examples."""
    project = app.project
    names = {"source": sorted(SOURCES_SECTION.of(project)), "sync": sorted(SYNCS_SECTION.of(project)),
             "workflow": sorted(WORKFLOWS_SECTION.of(project)),
             "event": [e.id for e in app.store.list_events(limit=3)],
             "run": [r.id for r in list_runs(app.store, limit=3)]}
    models = MODELS_SECTION.of(project)
    if models is not None and not models.empty:
        names["model"] = sorted(models.models)
    if "identity" in app.services:
        names["segment"] = sorted(app.identity.project.segments)
    if "metrics" in app.services:
        metrics = app.metrics
        names["metric"] = sorted(metrics.catalog.metrics)
        names["dashboard"] = sorted(metrics.catalog.dashboards)
    return names


def _operation(endpoint: AnyEndpoint, schemas: JsonObject, names: Mapping[str, list[str]]) -> JsonObject:
    op: JsonObject = {
        "operationId": re.sub(r"\W+", "_", f"{endpoint.method.lower()}{openapi_path(endpoint.path)}").strip("_"),
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "parameters": [*_path_parameters(endpoint, names), *_query_parameters(endpoint)],
        "responses": _responses(endpoint),
    }
    if endpoint.description:
        op["description"] = endpoint.description
    if endpoint.has_body:
        body = endpoint.body_model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        content: JsonObject = {"schema": body}
        if endpoint.example is not None:
            content["example"] = endpoint.example
        op["requestBody"] = {"required": False, "content": {"application/json": content},
                             "description": "A JSON object; an empty body means every field's default."}
    return op


def _path_parameters(endpoint: AnyEndpoint, names: Mapping[str, list[str]]) -> list[JsonObject]:
    out: list[JsonObject] = []
    for name, spec in endpoint.path_params.items():
        schema: JsonObject = {"type": "string", "description": spec} if isinstance(spec, str) else dict(spec)
        kind = schema.pop("x-names", None)
        if isinstance(kind, str) and names.get(kind):
            schema["examples"] = [*names[kind][:5]]
        out.append({"name": name, "in": "path", "required": True, "schema": schema,
                    "description": schema.get("description", "")})
    return out


def _query_parameters(endpoint: AnyEndpoint) -> list[JsonObject]:
    model = endpoint.query_model
    if not model.model_fields:
        return []
    full = model.model_json_schema()
    required = set(full.get("required", []))
    out: list[JsonObject] = []
    for name, info in model.model_fields.items():
        schema = _without_null(full["properties"][name])
        schema.pop("title", None)
        param: JsonObject = {"name": name, "in": "query", "required": name in required, "schema": schema}
        if name not in required:
            param["allowEmptyValue"] = True  # `?status=` is the same as no status (as an HTML form sends it)
        if info.description:
            param["description"] = info.description
        if schema.get("type") == "array":
            param |= {"style": "form", "explode": True}
        out.append(param)
    return out


def _without_null(schema: JsonObject) -> JsonObject:
    """A query value is absent or a string: drop the ``null`` branch pydantic writes for ``X | None``."""
    branches = schema.get("anyOf")
    if isinstance(branches, list) and branches:
        rest = [b for b in branches if isinstance(b, dict) and b.get("type") != "null"]
        if len(rest) == 1:
            merged = {**{k: v for k, v in schema.items() if k != "anyOf"}, **rest[0]}
            if merged.get("default") is None:
                merged.pop("default", None)
            return merged
    return dict(schema)


def _responses(endpoint: AnyEndpoint) -> JsonObject:
    out: JsonObject = {}
    for code in endpoint.statuses():
        if code == endpoint.status:
            out[str(code)] = {"description": "Success",
                              "content": {endpoint.media_type: {"schema": endpoint.ok}}}
        else:
            out[str(code)] = {"description": ERROR_TEXT.get(code, "Error"),
                              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return out


# -- the declarations: one per API route -----------------------------------------------------------
# Handlers parse with these (``EVENTS.query(request)``); ``document`` publishes them. Schemas of answers
# name the fields a client can rely on; objects may carry more.
def _obj(required: JsonObject | None = None, **optional: JsonValue) -> JsonObject:
    props: JsonObject = {**(required or {}), **optional}
    schema: JsonObject = {"type": "object", "properties": props}
    if required:
        schema["required"] = [*required]
    return schema


def _arr(items: JsonObject) -> JsonObject:
    return {"type": "array", "items": items}


_STR: JsonObject = {"type": "string"}
_NUM: JsonObject = {"type": "number"}
_INT: JsonObject = {"type": "integer"}
_BOOL: JsonObject = {"type": "boolean"}
_ANY: JsonObject = {}


def _named(kind: str, description: str) -> JsonObject:
    """A string path parameter naming a ``kind`` of thing (``live_names`` lists the project's)."""
    return {"type": "string", "description": description, "x-names": kind}

_OBJ: JsonObject = {"type": "object"}
_OPT_STR: JsonObject = {"type": ["string", "null"]}
_EVENT = _obj({"id": _STR, "seq": _INT, "endpoint": _OPT_STR, "name": _STR, "received_at": _NUM, "status": _STR},
              error={"type": ["object", "null"]})
_RUN = _obj({"id": _STR, "workflow": _STR, "status": _STR, "created_at": _NUM}, error=_ANY)
_REPLAYED = _obj({"results": _arr(_obj({"original": _STR}, id=_OPT_STR, error=_OPT_STR))})


class EventsQuery(Query):
    status: Annotated[str, Choice(ALL_STATUSES)] | None = Field(None, description="only events with this status")
    endpoint: str | None = Field(None, description="only events received on this webhook endpoint")
    name: str | None = Field(None, description="only events with this name")
    since: Timestamp | None = Field(None, description="received at or after")
    limit: int = Field(100, ge=1, le=10_000, description="at most this many, newest first")


AnyJson = Annotated[PydanticJson, WithJsonSchema({})]
"""A body field that holds whatever JSON value (typed as ``opsloop._json.JsonValue`` is; published as ``{}``)."""
JsonObjectBody = Annotated[dict[str, PydanticJson], WithJsonSchema({"type": "object", "additionalProperties": True})]
"""A JSON object of any values in a body."""


class ReplayOneBody(Body):
    payload: AnyJson = Field(None, title="Payload", description="replay with this payload instead of the original one")


class ReplayManyBody(Body):
    endpoint: str | None = None
    status: Annotated[str, Choice(ALL_STATUSES)] | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None
    limit: int = Field(1000, ge=1, le=10_000, description="replay at most this many (the newest that match)")


_EVENT_ID = {"event_id": _named("event", "the event's id")}
EVENTS = Endpoint("GET", "/api/events", "List events, newest first", EventsQuery, Empty,
                  _obj({"events": _arr(_EVENT)}), tag="events")
EVENT = Endpoint("GET", "/api/events/{event_id}", "One event with its headers, payload and body", Empty, Empty,
                 _obj({"id": _STR, "status": _STR}, headers=_ANY, payload=_ANY, body=_OPT_STR),
                 path_params=_EVENT_ID, errors=(404,), tag="events")
REPLAY_EVENT = Endpoint("POST", "/api/events/{event_id}/replay", "Replay one event (optionally with a new payload)",
                        Empty, ReplayOneBody, _obj({"replayed": _STR, "id": _STR}), status=202,
                        path_params=_EVENT_ID, errors=(404, 409), tag="events")
REPLAY_EVENTS = Endpoint("POST", "/api/replay", "Replay the events that match", Empty, ReplayManyBody, _REPLAYED,
                         status=202, tag="events")
_STAGE = _obj({"cpu_seconds": _NUM, "events": _INT, "calls": _INT})
STATUS = Endpoint("GET", "/api/status", "The project's name, its events counted by status, and the CPU each stage of "
                  "the event path has spent since the server started", Empty, Empty,
                  _obj({"project": _STR, "events": {"type": "object", "additionalProperties": _INT},
                        "ingest_cpu": {"type": "object", "additionalProperties": _STAGE}}), tag="events")


class RunsQuery(Query):
    workflow: str | None = Field(None, description="only runs of this workflow")
    status: Annotated[str, Choice(RUN_STATUSES)] | None = Field(None, description="only runs with this status")
    since: Timestamp | None = Field(None, description="created at or after")
    until: Timestamp | None = Field(None, description="created at or before")
    limit: int = Field(100, ge=1, le=10_000, description="at most this many, newest first")


class RunsReplayBody(Body):
    workflow: str | None = None
    status: Annotated[str, Choice(RUN_STATUSES)] | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None
    limit: int = Field(1000, ge=1, le=10_000, description="rerun at most this many")


class RerunBody(Body):
    from_step: str | None = Field(None, description="start again at this step (earlier steps keep their results)")
    input: JsonObjectBody | None = Field(None, description="run with this input instead of the original one")


_RUN_ID = {"run_id": _named("run", "the run's id")}
_WORKFLOW = {"workflow": _named("workflow", "the workflow's name")}
RUNS = Endpoint("GET", "/api/runs", "List workflow runs, newest first", RunsQuery, Empty,
                _obj({"runs": _arr(_RUN)}), tag="workflows")
REPLAY_RUNS = Endpoint("POST", "/api/runs/replay", "Start the matching runs again from their trigger event", Empty,
                       RunsReplayBody, _obj({"results": _arr(_obj({"original": _STR, "id": _STR}))}), status=202,
                       tag="workflows")
RUN = Endpoint("GET", "/api/runs/{run_id}", "One run with its steps and events", Empty, Empty, _RUN,
               path_params=_RUN_ID, errors=(404,), tag="workflows")
RERUN = Endpoint("POST", "/api/runs/{run_id}/rerun", "Run again as a new run", Empty, RerunBody,
                 _obj({"rerun_of": _STR, "id": _STR}), status=202, path_params=_RUN_ID, errors=(404, 409),
                 tag="workflows")
CANCEL = Endpoint("POST", "/api/runs/{run_id}/cancel", "Cancel a run that has not finished", Empty, Empty, _RUN,
                  path_params=_RUN_ID, errors=(404, 409), tag="workflows")
WORKFLOWS = Endpoint("GET", "/api/workflows", "The project's workflows and whether each is paused", Empty, Empty,
                     _obj({"workflows": _arr(_obj({"name": _STR, "paused": _BOOL}))}), tag="workflows")
PAUSE = Endpoint("POST", "/api/workflows/{workflow}/pause", "Pause a workflow: no new runs start", Empty, Empty,
                 _obj({"workflow": _STR, "paused": _BOOL}), path_params=_WORKFLOW, errors=(404,), tag="workflows")
RESUME = Endpoint("POST", "/api/workflows/{workflow}/resume", "Resume a paused workflow", Empty, Empty,
                  _obj({"workflow": _STR, "paused": _BOOL}), path_params=_WORKFLOW, errors=(404,), tag="workflows")


class BuildBody(Body):
    select: list[str] | None = Field(None, description="dbt-style selectors (+orders, tag:daily); all when absent")
    exclude: list[str] | None = None
    full_refresh: bool = False
    kinds: list[Annotated[str, Choice(("model", "seed", "snapshot", "test"))]] | None = None


class QueryBody(Body):
    sql: str = Field(min_length=1, description="one read-only statement")
    limit: int = Field(1000, ge=1, le=1_000_000, description="at most this many rows")
    timeout: float | None = Field(None, gt=0, description="stop after this many seconds")


_MODEL_NAME = {"name": _named("model", "the model's (or data test's) name")}
MODELS = Endpoint("GET", "/api/models", "The project's models", Empty, Empty,
                  _arr(_obj({"name": _STR, "materialized": _STR, "relation": _STR})), tag="models")
BUILD = Endpoint("POST", "/api/models/build", "Build models, seeds and tests", Empty, BuildBody,
                 _obj({"results": _arr(_obj({"name": _STR, "status": _STR})), "ok": _BOOL}), tag="models",
                 example={"select": ["+customers"], "full_refresh": False})
COMPILED = Endpoint("GET", "/api/models/{name}/compiled", "The SQL a model runs", Empty, Empty,
                    _obj({"model": _STR, "sql": _STR}), path_params=_MODEL_NAME, errors=(404,), tag="models")
QUERY = Endpoint("POST", "/api/query", "Run a read-only query on the warehouse", Empty, QueryBody,
                 _obj({"columns": _arr(_STR), "rows": _arr(_arr(_ANY))}), tag="models",
                 example={"sql": "select 42 as answer", "limit": 10})


class PullQuery(Query):
    full_refresh: bool = Field(False, description="pull everything again, not only what changed since the cursor")


SOURCES = Endpoint("GET", "/api/sources", "The project's sources and their last runs", Empty, Empty,
                   _arr(_obj({"name": _STR, "type": _STR, "state": _STR})), tag="sources")
PULL = Endpoint("POST", "/api/sources/{name}/pull", "Pull a source now", PullQuery, Empty,
                _obj({"source": _STR, "status": _STR}), path_params={"name": _named("source", "the source's name")},
                errors=(404, 409, 502), tag="sources",
                description="409 when the vendor refused the pull (credentials, a bad request), 502 when it could "
                            "not be reached or asked to wait (`message` says which); the run is recorded either way.")


class SyncRunBody(Body):
    dry_run: bool = Field(False, description="compute the diff, send nothing")
    full: bool = Field(False, description="send every row, not only the changed ones")
    confirm_deletes: bool = Field(False, description="allow a run that deletes more than the safety limit")
    reset: bool = Field(False, description="forget what was sent before")


_SYNC_NAME = {"name": _named("sync", "the sync's name")}
SYNCS = Endpoint("GET", "/api/syncs", "The project's syncs and their last runs", Empty, Empty,
                 _arr(_obj({"sync": _STR, "destination": _STR, "mode": _STR, "health": _STR})), tag="syncs")
SYNC = Endpoint("GET", "/api/syncs/{name}", "One sync with its recent runs and failed rows", Empty, Empty,
                _obj({"sync": _STR, "runs": _arr(_OBJ)}), path_params=_SYNC_NAME, errors=(404,), tag="syncs")
RUN_SYNC = Endpoint("POST", "/api/syncs/{name}/run", "Run a sync now", Empty, SyncRunBody,
                    _obj({"status": _STR}), path_params=_SYNC_NAME, errors=(404,), tag="syncs")


def _since_text(value: str) -> str:
    from ..metrics.periods import parse_since

    try:
        parse_since(value)
    except (ValueError, OverflowError, TypeError):
        raise ValueError(f"{value!r} is neither a duration back from today (30d, 12w, 6mo, 1y) nor a date "
                         "(2026-01-31), or it reaches past year 1") from None
    return value


Since = Annotated[str, AfterValidator(_since_text)]
"""A start or end for metrics: ``30d``, ``12w``, ``6mo``, ``1y``, ``all`` or an ISO date; kept as text."""


class MetricQueryParams(Query):
    grain: Annotated[str, Choice(("none", "total", *GRAINS))] | None = Field(None, description="time grain")
    since: Since | None = Field(None, description="30d, 12w, 6mo, 1y, all, or an ISO date")
    until: Since | None = None
    by: list[str] = Field(default_factory=list, description="group by these dimensions")
    where: list[str] = Field(default_factory=list, description="dimension=value filters")
    percentile: bool = False
    sql: bool = Field(False, description="include the SQL that ran")


class TileQuery(Query):
    since: Since | None = Field(None, description="30d, 12w, 6mo, 1y, all, or an ISO date")
    where: list[str] = Field(default_factory=list, description="dimension=value filters")


class OutboxQuery(Query):
    destination: str | None = Field(None, description="only items for this destination")


_BOARD = {"name": _named("dashboard", "the dashboard's name")}
METRICS = Endpoint("GET", "/api/metrics", "The project's metrics and their dimensions", Empty, Empty,
                   _obj({"metrics": _arr(_obj({"name": _STR, "dimensions": _arr(_STR)}))}), tag="metrics")
METRIC = Endpoint("GET", "/api/metrics/{name}", "Query one metric", MetricQueryParams, Empty,
                  _obj({"metric": _STR, "columns": _arr(_STR), "rows": _arr(_arr(_ANY))}),
                  path_params={"name": _named("metric", "the metric's name")}, errors=(404,), tag="metrics")
ALERTS = Endpoint("GET", "/api/alerts", "The state of every alert", Empty, Empty, _obj({"alerts": _arr(_OBJ)}),
                  tag="metrics")
OUTBOX = Endpoint("GET", "/api/outbox", "Items waiting in the outbox", OutboxQuery, Empty,
                  _obj({"items": _arr(_obj({"id": _ANY, "destination": _STR}))}), tag="metrics")
DASHBOARD = Endpoint("GET", "/api/dashboards/{name}", "A dashboard and its tiles", Empty, Empty,
                     _obj({"name": _STR, "title": _STR, "tiles": _arr(_obj({"id": _INT, "type": _STR}))}),
                     path_params=_BOARD, errors=(404,), tag="dashboards")
TILE = Endpoint("GET", "/api/dashboards/{name}/tiles/{index:int}", "One tile's data", TileQuery, Empty, _OBJ,
                path_params={**_BOARD, "index": {"type": "integer", "minimum": 0, "description": "the tile's index",
                                              "examples": [0, 1]}},
                errors=(404,), tag="dashboards")
BOARD_EVENTS = Endpoint("GET", "/api/dashboards/{name}/events", "Server push: `event: refresh` when tiles change",
                        Empty, Empty, _STR, path_params=_BOARD, errors=(404,), media_type="text/event-stream",
                        tag="dashboards", description="An endless text/event-stream; it ends when the server stops.")
REFRESH = Endpoint("POST", "/api/dashboards/{name}/refresh", "Recompute every tile now", Empty, Empty,
                   _obj({"refreshed": _STR}), status=202, path_params=_BOARD, errors=(404,), tag="dashboards")



class IdentityBuildBody(Body):
    full: bool = Field(False, description="re-resolve every record, not only the changed ones")
    segments: bool = Field(True, description="evaluate the segments after the build")


class ProfileQuery(Query):
    query: str = Field(min_length=1, description="a person id, system:record_id, or an email / phone / other id")


class ConflictsQuery(Query):
    limit: int = Field(50, ge=1, le=10_000, description="at most this many, newest first")


class PreviewQuery(Query):
    limit: int = Field(20, ge=1, le=10_000, description="show at most this many members")


class SegmentsRunBody(Body):
    names: list[str] | None = Field(None, description="the segments to evaluate; all when absent")


_SEGMENT = _obj({"segment": _STR, "members": _INT})
_SEGMENT_NAME = {"name": _named("segment", "the segment's name (segments/<name>.yml)")}
_NO_IDENTITY = "404 when the project has no identity.yml (or no such segment); the error says what to write."
IDENTITY_BUILD = Endpoint("POST", "/api/identity/build", "Resolve identities, rebuild the golden record and segments",
                          Empty, IdentityBuildBody,
                          _obj({"records": _INT, "persons": _INT, "segments": _arr(_SEGMENT), "events": _INT}),
                          errors=(404, 409), tag="identity", example={"full": False, "segments": True},
                          description=_NO_IDENTITY + " 409 when what identity.yml reads is not built yet.")
PROFILE = Endpoint("GET", "/api/identity/profile", "One person: identifiers, records, golden fields with provenance",
                   ProfileQuery, Empty,
                   _obj({"person_id": _STR, "identifiers": _arr(_OBJ), "records": _arr(_OBJ), "fields": _OBJ,
                         "segments": _arr(_STR), "merged_from": _arr(_STR)}),
                   errors=(404,), tag="identity",
                   description="404 when no person matches (or several do: the error lists them).")
CONFLICTS = Endpoint("GET", "/api/identity/conflicts", "Identifier values that were not used to merge people",
                     ConflictsQuery, Empty,
                     _obj({"conflicts": _arr(_obj({"rule": _STR, "id_type": _STR, "value": _ANY, "reason": _STR}))}),
                     errors=(404,), tag="identity", description=_NO_IDENTITY)
SEGMENTS = Endpoint("GET", "/api/segments", "Segments with their member counts", Empty, Empty,
                    _obj({"segments": _arr(_SEGMENT)}), errors=(404,), tag="identity", description=_NO_IDENTITY)
SEGMENT_PREVIEW = Endpoint("GET", "/api/segments/{name}/preview",
                           "Who is in a segment now and who would enter or exit (records nothing)", PreviewQuery,
                           Empty, _obj({"segment": _STR, "members": _INT, "would_enter": _INT, "would_exit": _INT,
                                        "sample": _arr(_OBJ)}),
                           path_params=_SEGMENT_NAME, errors=(404, 409), tag="identity",
                           description=_NO_IDENTITY + " 409 before the first identity build.")
SEGMENTS_RUN = Endpoint("POST", "/api/segments/run", "Evaluate segments now: record changes, write enter/exit events",
                        Empty, SegmentsRunBody, _obj({"segments": _arr(_SEGMENT)}), errors=(404, 409),
                        tag="identity", description=_NO_IDENTITY + " 409 before the first identity build.")

ENDPOINTS: tuple[AnyEndpoint, ...] = (
    OPENAPI, EVENTS, EVENT, REPLAY_EVENT, REPLAY_EVENTS, STATUS, RUNS, REPLAY_RUNS, RUN, RERUN, CANCEL, WORKFLOWS,
    PAUSE, RESUME, MODELS, BUILD, COMPILED, QUERY, SOURCES, PULL, SYNCS, SYNC, RUN_SYNC, METRICS, METRIC, ALERTS,
    OUTBOX, DASHBOARD, TILE, BOARD_EVENTS, REFRESH,
    IDENTITY_BUILD, PROFILE, CONFLICTS, SEGMENTS, SEGMENT_PREVIEW, SEGMENTS_RUN,
)
"""Every API route's declaration."""
