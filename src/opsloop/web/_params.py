"""Typed input for the JSON API, declared once per route and used twice: to parse, and to publish.

Each API route has an :class:`Endpoint` (declared in ``web/openapi.py``): method, path, a pydantic model
for its query string, one for its JSON body, its path parameters and its answers. The handler parses with
that object, and ``web/openapi.py`` writes the OpenAPI document from it, so the document cannot promise
what the handler does not check::

    EVENTS = Endpoint("GET", "/api/events", "List events, newest first", EventsQuery, Empty, EVENT_LIST)

    async def api_events(self, request):
        q = EVENTS.query(request)          # an EventsQuery, or ParamError (400) naming the parameter

Input that does not parse raises :class:`ParamError`; the app answers it as JSON (``error_response``)::

    400 {"error": "query parameter 'limit': Input should be a valid integer (got 'abc')",
         "parameter": "limit", "in": "query"}

400 for a query parameter, a path parameter, or a body that is not a JSON object; 422 for a JSON object
whose fields are wrong; 404 (``not_found``) for a name or id that does not exist.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Generic, NoReturn, TypeVar, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import core_schema
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .._json import JsonObject, JsonValue

Q = TypeVar("Q", bound=BaseModel, covariant=True)
B = TypeVar("B", bound=BaseModel, covariant=True)

ERROR_SCHEMA: JsonObject = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what went wrong and what to do"},
        "parameter": {"type": "string", "description": "the parameter or body field at fault"},
        "in": {"type": "string", "enum": ["query", "path", "body"]},
    },
    "additionalProperties": True,
}
ERROR_TEXT = {
    400: "A query or path parameter is malformed, or the body is not a JSON object (`parameter` names it)",
    401: "No bearer token, or the wrong one",
    403: "Cookie-authenticated write without the X-CSRF-Token header",
    404: "The named thing does not exist",
    409: "The request conflicts with the current state (the error says which)",
    422: "The JSON body has a missing, unknown or wrongly typed field (`parameter` names it)",
    502: "A vendor's API could not be reached or asked to wait; try again later",
}


class ParamError(Exception):
    """A request's input is wrong; answered as ``{"error", "parameter", "in"}`` with ``status``.

    Not an ``OpsloopError`` on purpose: handlers catch those around the work they call, and this one must
    reach the app's exception handler.
    """

    def __init__(self, status: int, message: str, parameter: str | None = None, where: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.parameter = parameter
        self.where = where

    def body(self) -> JsonObject:
        data: JsonObject = {"error": str(self)}
        if self.parameter is not None:
            data["parameter"] = self.parameter
        if self.where is not None:
            data["in"] = self.where
        return data


def not_found(what: str, parameter: str) -> ParamError:
    """The 404 for a path parameter naming nothing: ``raise not_found("no source 'x'; sources: a, b", "name")``."""
    return ParamError(404, what, parameter, "path")


async def error_response(request: Request, exc: Exception) -> Response:
    """The app's answer to a ``ParamError``, and JSON instead of Starlette's text for /api/ 404s and 405s."""
    if isinstance(exc, ParamError):
        return JSONResponse(exc.body(), status_code=exc.status)
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        text = {404: "no such API route; the routes are listed in GET /api/openapi.json",
                405: f"{request.method} is not allowed here; see GET /api/openapi.json"}.get(exc.status_code,
                                                                                             str(exc.detail))
        return JSONResponse({"error": text}, status_code=exc.status_code, headers=exc.headers)
    if exc.status_code in (204, 304):  # as Starlette's own handler: no body
        return Response(status_code=exc.status_code, headers=exc.headers)
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code, headers=exc.headers)


# -- value types ---------------------------------------------------------------------------------
def _epoch(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected seconds since the epoch or an ISO 8601 time")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            try:
                return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
            except (ValueError, OverflowError, OSError):
                raise ValueError(f"{value!r} is neither seconds since the epoch (1767225600) nor an ISO 8601 time "
                                 "(2026-01-01T00:00:00Z)") from None
    else:
        raise ValueError("expected seconds since the epoch or an ISO 8601 time")
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number of seconds")
    return number


Timestamp = Annotated[
    float,
    BeforeValidator(_epoch),
    WithJsonSchema({"type": "string", "description": "seconds since the epoch (1767225600) or an ISO 8601 time "
                                                     "(2026-01-01T00:00:00Z)"}),
]
"""A point in time as a query value or body field: epoch seconds or ISO 8601; parsed to epoch seconds."""


@dataclass(frozen=True)
class Choice:
    """``Annotated[str, Choice(("a", "b"))]``: one of fixed values, published as a JSON Schema ``enum``."""

    values: tuple[str, ...]

    def __get_pydantic_core_schema__(self, source: object, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> JsonObject:
        js: JsonObject = handler(schema)
        js["enum"] = [*self.values]
        return js

    def _check(self, value: str) -> str:
        if value not in self.values:
            raise ValueError(f"{value!r} is not one of {', '.join(self.values)}")
        return value


class Empty(BaseModel):
    """No query parameters, or no body."""

    model_config = ConfigDict(extra="forbid")


class Body(BaseModel):
    """Base of a JSON body: unknown fields are refused (a typo is an error, not a silent default)."""

    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    """Base of a query string; unknown parameters are ignored, as browsers and proxies add their own."""

    model_config = ConfigDict(extra="ignore")


# -- the declaration -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint(Generic[Q, B]):
    """One API route: what it takes and what it answers (frozen, so an ``Endpoint[EventsQuery, Empty]`` is an
    ``Endpoint[BaseModel, BaseModel]`` where routes are listed together)."""

    method: str
    path: str
    summary: str
    query_model: type[Q]
    body_model: type[B]
    ok: JsonObject
    """JSON Schema of the success answer."""
    status: int = 200
    path_params: Mapping[str, str | JsonObject] = field(default_factory=dict)
    """name -> a description (a string) or a JSON Schema."""
    errors: tuple[int, ...] = ()
    """Answers beyond 400/401/403/422, which follow from the declaration."""
    media_type: str = "application/json"
    example: JsonObject | None = None
    """A body that works, shown in the document (and sent first by a fuzzer)."""
    description: str = ""
    tag: str = "api"

    # -- parsing ---------------------------------------------------------------------------------
    def query(self, request: Request) -> Q:
        """The query string as ``query_model``; empty values count as absent. Raises ``ParamError`` (400)."""
        data: dict[str, str | list[str]] = {}
        for name, info in self.query_model.model_fields.items():
            values = [v for v in request.query_params.getlist(name) if v != ""]
            if values:
                data[name] = values if _is_list(info.annotation) else values[-1]
        try:
            return self.query_model.model_validate(data)
        except ValidationError as exc:
            raise _param_error(exc, 400, "query") from None

    async def body(self, request: Request) -> B:
        """The JSON body as ``body_model`` (an empty body is ``{}``). Raises ``ParamError`` (400 or 422)."""
        raw = await request.body()
        data: JsonValue = {}
        if raw.strip():
            try:
                data = json.loads(raw, parse_constant=_no_constant)
            except (ValueError, RecursionError) as exc:
                reason = str(exc).splitlines()[0] if not isinstance(exc, RecursionError) else "nested too deeply"
                raise ParamError(400, f"the body is not JSON ({reason}); send a JSON object", "body",
                                 "body") from None
        if not isinstance(data, dict):
            raise ParamError(400, f"the body must be a JSON object, not {type(data).__name__}", "body", "body")
        try:
            return self.body_model.model_validate(data)
        except ValidationError as exc:
            raise _param_error(exc, 422, "body", tuple(self.body_model.model_fields)) from None

    # -- publishing ------------------------------------------------------------------------------
    @property
    def has_body(self) -> bool:
        return bool(self.body_model.model_fields)

    def statuses(self) -> list[int]:
        codes = {self.status, 401, 403, *self.errors}
        if self.query_model.model_fields or self.path_params:
            codes.add(400)
        if self.has_body or self.method == "POST":
            codes |= {400, 422} if self.has_body else {400}
        return sorted(codes)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number (RFC 8259)")


def _is_list(annotation: object) -> bool:
    if get_origin(annotation) is list:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_list(a) for a in get_args(annotation))
    if get_origin(annotation) is Annotated:
        return _is_list(get_args(annotation)[0])
    return False


def _param_error(exc: ValidationError, status: int, where: str, fields: tuple[str, ...] = ()) -> ParamError:
    first = exc.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    name = loc[0] if loc else where
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] == "missing":
        message = "required"
    shown = ".".join(loc) or where
    text = f"{'query parameter' if where == 'query' else 'body field'} {shown!r}: {message}"
    given = first.get("input")
    if (first["type"] not in ("missing", "extra_forbidden") and isinstance(given, str | int | float | bool)
            and repr(given) not in message):
        text += f" (got {str(given)[:80]!r})"
    if first["type"] == "extra_forbidden" and fields:
        text += f"; the fields are {', '.join(fields)}"
    return ParamError(status, text, name, where)
