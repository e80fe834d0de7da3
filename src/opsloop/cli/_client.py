"""The one way the CLI reaches a running `opsloop up`: a small typed client of the server's own JSON API.

While `opsloop up` runs, it owns the project's warehouse (DuckDB allows one writer process), so every CLI
verb that reads or writes the warehouse asks the server instead of opening the file::

    server = Server.find(root)         # None when no `opsloop up` runs for this project
    if server is not None:
        results = server.build(select=["+orders"])
    else:
        ...                            # the same library call, in this process

``Server.find`` reads ``state/server.json`` (written by `opsloop up`: its pid, host and port) and the
token from ``OPSLOOP_API_TOKEN`` (the environment, then the project's ``.env``). Each method answers
what the route answers, as plain JSON data; the CLI prints it the same way as its in-process result.
Errors are ``ServerError`` (``opsloop.errors``): the HTTP status, the server's message, and the project
problems a 400 carries.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import typer

from .._json import JsonObject, JsonValue
from ..errors import ConfigError, OpsloopError, ServerError, WarehouseLocked

T = TypeVar("T")


class Server:
    """The `opsloop up` that serves a project, at ``url`` with ``token``."""

    def __init__(self, url: str, token: str | None, pid: int | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.pid = pid

    @classmethod
    def find(cls, root: Path) -> Server | None:
        """The server that owns ``root``'s warehouse, or None when none runs (no ``state/server.json``,
        or its process has exited)."""
        info_path = root / "state" / "server.json"
        try:
            info = json.loads(info_path.read_text())
            pid, port = int(info["pid"]), int(info["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if pid == os.getpid():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # a server that was killed leaves its file behind
        except PermissionError:
            pass  # alive, under another user
        from ..project.env import read_dotenv

        token = os.environ.get("OPSLOOP_API_TOKEN") or read_dotenv(root / ".env").get("OPSLOOP_API_TOKEN")
        host = str(info.get("host") or "127.0.0.1")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return cls(f"http://{host}:{port}", token, pid)

    @classmethod
    def configured(cls, root: Path) -> Server:
        """The server at the address the project's settings give (``server:`` in opsloop.yml, OPSLOOP_HOST /
        OPSLOOP_PORT): for a warehouse that is locked while no ``state/server.json`` names its owner."""
        from ..project import read_project_config
        from ..settings import resolve_settings

        settings = resolve_settings(read_project_config(root))
        host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return cls(f"http://{host}:{settings.port}", settings.api_token)

    # -- the call ----------------------------------------------------------------------------------
    def call(self, method: str, path: str, body: Mapping[str, object] | None = None,
             params: list[tuple[str, str]] | None = None, ok: tuple[int, ...] = ()) -> JsonValue:
        """``method path`` on the server; the JSON answer. A status of 400 or more raises ``ServerError``
        unless it is in ``ok`` (then its body is returned as for a success)."""
        import httpx

        if not self.token:
            raise ServerError("`opsloop up` is running and owns the warehouse, but OPSLOOP_API_TOKEN is not set "
                              "here; set it (the project's .env has it) so this command can go through the server")
        try:
            response = httpx.request(method, self.url + path, json=body,
                                     params=None if params is None else tuple(params),
                                     headers={"Authorization": f"Bearer {self.token}"},
                                     timeout=httpx.Timeout(10.0, read=3600.0))
        except httpx.HTTPError as exc:
            raise ServerError(f"`opsloop up` is running (pid {self.pid}, state/server.json) but {self.url} did not "
                              f"answer: {exc}. If it is not running any more, delete state/server.json") from exc
        try:
            data: JsonValue = response.json()
        except ValueError:
            data = {"error": response.text[:500]}
        if response.status_code >= 400 and response.status_code not in ok:
            message = str(data.get("error") or data.get("message")) if isinstance(data, dict) else str(data)
            problems = data.get("problems") if isinstance(data, dict) else None
            raise ServerError(message, response.status_code,
                              [str(p) for p in problems] if isinstance(problems, list) else [])
        return data

    # -- models --------------------------------------------------------------------------------------
    def build(self, select: list[str] | None = None, exclude: list[str] | None = None, full_refresh: bool = False,
              kinds: tuple[str, ...] = ("model", "seed", "test")) -> list[JsonObject]:
        """``POST /api/models/build``: one result per node (``NodeResult.as_dict()``)."""
        data = self._object("POST", "/api/models/build", {"select": select, "exclude": exclude,
                                                          "full_refresh": full_refresh, "kinds": list(kinds)})
        return _objects(data.get("results"), "/api/models/build")

    def compiled(self, model: str) -> str:
        return str(self._object("GET", f"/api/models/{_seg(model)}/compiled").get("sql"))

    def query(self, sql: str, limit: int, timeout: float | None = None) -> JsonObject:
        """``POST /api/query``: ``{"columns", "rows", "truncated"}``."""
        body: dict[str, object] = {"sql": sql, "limit": limit}
        if timeout is not None:
            body["timeout"] = timeout
        return self._object("POST", "/api/query", body)

    # -- identity and segments -------------------------------------------------------------------------
    def identity_build(self, full: bool = False, segments: bool = True) -> JsonObject:
        return self._object("POST", "/api/identity/build", {"full": full, "segments": segments})

    def profile(self, query: str) -> JsonObject:
        return self._object("GET", "/api/identity/profile", params=[("query", query)])

    def conflicts(self, limit: int = 50) -> list[JsonObject]:
        data = self._object("GET", "/api/identity/conflicts", params=[("limit", str(limit))])
        return _objects(data.get("conflicts"), "/api/identity/conflicts")

    def segments(self) -> list[JsonObject]:
        return _objects(self._object("GET", "/api/segments").get("segments"), "/api/segments")

    def segment_preview(self, name: str, limit: int = 20) -> JsonObject:
        return self._object("GET", f"/api/segments/{_seg(name)}/preview", params=[("limit", str(limit))])

    def run_segments(self, names: list[str] | None = None) -> list[JsonObject]:
        return _objects(self._object("POST", "/api/segments/run", {"names": names}).get("segments"),
                        "/api/segments/run")

    # -- sources and syncs -----------------------------------------------------------------------------
    def sources(self) -> list[JsonObject]:
        return _objects(self.call("GET", "/api/sources"), "/api/sources")

    def pull(self, source: str, full_refresh: bool = False) -> JsonObject:
        """``POST /api/sources/{name}/pull``: the run; a refused or unreachable vendor (409, 502) is a run whose
        ``status`` is ``failed``, as in-process."""
        data = self._object("POST", f"/api/sources/{_seg(source)}/pull",
                            params=[("full_refresh", "true")] if full_refresh else None, ok=(404, 409, 502))
        if data.get("status") == "failed" or "error" in data:
            return {"source": data.get("source", source), "status": "failed", "message": data.get("message")}
        return data

    def syncs(self) -> list[JsonObject]:
        return _objects(self.call("GET", "/api/syncs"), "/api/syncs")

    def sync(self, name: str) -> JsonObject:
        return self._object("GET", f"/api/syncs/{_seg(name)}")

    def run_sync(self, name: str, dry_run: bool = False, full: bool = False, confirm_deletes: bool = False,
                 reset: bool = False) -> JsonObject:
        return self._object("POST", f"/api/syncs/{_seg(name)}/run", {
            "dry_run": dry_run, "full": full, "confirm_deletes": confirm_deletes, "reset": reset})

    # -- metrics ---------------------------------------------------------------------------------------
    def metric(self, name: str, params: list[tuple[str, str]]) -> JsonObject:
        return self._object("GET", f"/api/metrics/{_seg(name)}", params=params)

    def alerts(self) -> list[JsonObject]:
        return _objects(self._object("GET", "/api/alerts").get("alerts"), "/api/alerts")

    def _object(self, method: str, path: str, body: Mapping[str, object] | None = None,
                params: list[tuple[str, str]] | None = None, ok: tuple[int, ...] = ()) -> JsonObject:
        """``call`` of a route that answers a JSON object."""
        data = self.call(method, path, body, params, ok)
        if not isinstance(data, dict):
            raise ServerError(f"{method} {path} answered {type(data).__name__}, not a JSON object; is the server "
                              "the same opsloop version as this command?")
        return data


def _objects(data: JsonValue, path: str) -> list[JsonObject]:
    """A route's answer (or the field of it) that is a list of JSON objects."""
    items = data if isinstance(data, list) else []
    objects = [item for item in items if isinstance(item, dict)]
    if not isinstance(data, list) or len(objects) != len(items):
        raise ServerError(f"{path} answered something other than a list of JSON objects; is the server the same "
                          "opsloop version as this command?")
    return objects


def local_or_server(root: Path, local: Callable[[], T], remote: Callable[[Server], T]) -> T:
    """``remote(server)`` when `opsloop up` runs for the project at ``root``, else ``local()``; and
    ``remote`` after all when ``local`` finds the warehouse locked by a server that wrote no
    ``state/server.json`` (asked at the project's configured address)."""
    try:
        return _either(root, local, remote)
    except OpsloopError as exc:  # printed as `opsloop` prints it, also where a test invokes the Typer app itself
        problems = exc.problems if isinstance(exc, ConfigError | ServerError) else []
        sys.stderr.write("".join(f"{p}\n" for p in problems) if problems else f"error: {exc}\n")
        raise typer.Exit(1) from exc


def _either(root: Path, local: Callable[[], T], remote: Callable[[Server], T]) -> T:
    server = Server.find(root)
    if server is not None:
        return remote(server)
    try:
        return local()
    except WarehouseLocked as exc:
        server = Server.configured(root)
        try:
            return remote(server)
        except ServerError as refused:
            if refused.status is not None:
                raise
            raise ServerError(f"{exc}; and no opsloop server answers at {server.url} ({refused})") from exc


def _seg(name: str) -> str:
    """A name as one path segment (a name with ``/`` or ``?`` stays one segment, and 404s as unknown)."""
    from urllib.parse import quote

    return quote(name, safe="")


def jsonable(data: object) -> JsonValue:
    """``data`` as it comes back from the server (datetimes and decimals as text): an in-process result
    goes through this before printing, so a verb prints the same with and without a server."""
    found: JsonValue = json.loads(json.dumps(data, default=str))
    return found
