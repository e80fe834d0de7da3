"""``type: rest`` — any REST API, configured in dlt's rest_api shape, on dlt's REST client and paginators.

Each page becomes one Arrow table (dlt's Arrow path). Supported keys: ``client`` (``base_url``,
``headers``, ``auth``, ``paginator``), ``resource_defaults`` and ``resources`` (``name``, ``endpoint``
with ``path``, ``method``, ``params``, ``json``, ``data_selector``, ``paginator`` and ``incremental``,
``primary_key``, ``write_disposition``). Incremental: ``endpoint.incremental`` (``start_param``,
``cursor_path``, ``initial_value``) or a param written as ``{type: incremental, cursor_path: ...}``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from .._arrow import column_max, records_to_arrow
from .._http import Http
from ..config import RestSource
from .base import Page, PullContext, Stream, prefetch


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _minus_lag(value: object, lag: float) -> object:
    if not lag or value is None:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value - lag
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        text = (parsed - timedelta(seconds=lag)).isoformat()
        return text.replace("+00:00", "Z") if value.endswith("Z") else text
    return value


def _dig(record: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(record, dict):
            return None
        record = record.get(part)
    return record


class RestConnector:
    def __init__(self, config: RestSource, ctx: PullContext) -> None:
        from dlt.sources.rest_api.config_setup import create_auth

        self.config = config
        self.ctx = ctx
        client = config.client
        self.http = Http(ctx.source, client["base_url"], ctx.budget, credentials_hint="Check client.auth in the "
                         "source's YAML and the environment variable it reads.", attempts=ctx.retry_attempts,
                         max_delay=ctx.max_retry_delay, backoff=ctx.retry_backoff)
        self.auth = create_auth(client.get("auth")) if client.get("auth") else None

    def _resource(self, item: str | dict[str, Any]) -> dict[str, Any]:
        spec = {"name": item, "endpoint": {"path": item}} if isinstance(item, str) else dict(item)
        if isinstance(spec.get("endpoint"), str):
            spec["endpoint"] = {"path": spec["endpoint"]}
        spec.setdefault("endpoint", {"path": spec["name"]})
        return _merge(self.config.resource_defaults, spec)

    def streams(self) -> list[Stream]:
        out = []
        for item in self.config.resources:
            spec = self._resource(item)
            keys = spec.get("primary_key")
            keys = [keys] if isinstance(keys, str) else keys
            endpoint = spec.get("endpoint") or {}
            incremental = bool(endpoint.get("incremental")) or any(
                isinstance(v, dict) and v.get("type") == "incremental" for v in (endpoint.get("params") or {}).values())
            disposition = spec.get("write_disposition") or ("merge" if keys else "append" if incremental else "replace")
            if isinstance(disposition, dict):
                disposition = disposition.get("disposition", "append")
            out.append(Stream(spec["name"], keys, disposition, options={"spec": spec}))
        return out

    def read(self, stream: Stream, cursor: object) -> Iterator[Page]:
        return prefetch(self._read(stream, cursor))

    def _read(self, stream: Stream, cursor: Any) -> Iterator[Page]:
        from dlt.sources.helpers.rest_client.client import RESTClient
        from dlt.sources.rest_api.config_setup import create_paginator

        spec = stream.options["spec"]
        if not isinstance(spec, dict):
            raise TypeError(f"stream {stream.name!r} has no resource spec")
        endpoint = dict(spec["endpoint"])
        params = dict(endpoint.get("params") or {})
        incremental = endpoint.get("incremental")
        param_name: str | None = None
        if incremental:
            param_name = incremental.get("start_param")
        for key, value in list(params.items()):
            if isinstance(value, dict) and value.get("type") == "incremental":
                param_name, incremental = key, value
        cursor_path = incremental.get("cursor_path") if incremental else None
        if incremental and param_name:
            start = cursor if cursor is not None else incremental.get("initial_value")
            if cursor is not None:
                start = _minus_lag(start, float(incremental.get("lag", self.ctx.lag) or 0))
            if start is not None:
                params[param_name] = start
            else:
                params.pop(param_name, None)
        client_cfg = self.config.client
        paginator_cfg = endpoint.get("paginator") or client_cfg.get("paginator")
        http = self.http

        class _Client(RESTClient):
            def _send_request(self, request: Any, **kwargs: Any) -> Any:
                # after dlt's retries (429/5xx with Retry-After): map a final error to a SourceError, and
                # parse the body once with orjson (paginators read it again)
                response = super()._send_request(request, **kwargs)
                http.raise_for(response)
                import orjson

                doc = orjson.loads(response.content) if response.content else None
                response.json = lambda *a, **k: doc  # type: ignore[method-assign]
                return response

        client = _Client(
            base_url=client_cfg["base_url"], headers=client_cfg.get("headers"), auth=self.auth,
            paginator=create_paginator(paginator_cfg) if paginator_cfg else None,
            data_selector=endpoint.get("data_selector") or client_cfg.get("data_selector"),
            session=self.http.session,
        )

        best = cursor
        self.ctx.budget.check(self.ctx.source)
        pages = client.paginate(
            endpoint.get("path", stream.name), method=endpoint.get("method", "GET"), params=params,
            json=endpoint.get("json"), hooks={"response": []},
        )
        for page in pages:
            records = list(page)
            table = records_to_arrow(records)
            if cursor_path:
                value = column_max(table, cursor_path) if "." not in cursor_path else max(
                    (v for v in (_dig(r, cursor_path) for r in records) if v is not None), default=None)
                if value is not None and (best is None or value > best):
                    best = value
            yield Page(table, cursor=best if cursor_path else None)
            if page.paginator is not None and page.paginator.has_next_page:
                self.ctx.budget.check(self.ctx.source)

    def close(self) -> None:
        self.http.close()


def build(config: RestSource, ctx: PullContext) -> RestConnector:
    return RestConnector(config, ctx)
