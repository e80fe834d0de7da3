"""metric, metrics, alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import JsonOpt, ProjectOpt, fail, load_app, print_json, print_table


def _via_server(app: Any, path: str, params: list[tuple[str, str | int | float | bool | None]]) -> dict[str, Any]:
    """Ask the running server (it owns the DuckDB file) for the same answer."""
    import httpx

    settings = app.settings
    if not settings.api_token:
        fail("the warehouse is in use by `opsloop up` and OPSLOOP_API_TOKEN is not set to ask it instead")
    url = f"http://{settings.host}:{settings.port}{path}"
    try:
        response = httpx.get(url, params=params, headers={"Authorization": f"Bearer {settings.api_token}"},
                             timeout=60)
    except httpx.HTTPError as exc:
        fail(f"the warehouse is locked by another process and the server at {url} did not answer: {exc}")
        raise
    data: dict[str, Any] = response.json()
    if response.status_code != 200:
        fail(str(data.get("error", response.text)))
    return data


def register(app: typer.Typer) -> None:
    @app.command()
    def metric(
        name: Annotated[str, typer.Argument(help="Metric name, as in metrics/*.yml.")],
        grain: Annotated[str | None, typer.Option(help="day, week, month, quarter or year (default: one total).")]
        = None,
        since: Annotated[str | None, typer.Option(help="30d, 12w, 6mo, 1y back from today, or a date.")] = None,
        until: Annotated[str | None, typer.Option(help="Last day included (a date or a duration back).")] = None,
        by: Annotated[list[str] | None, typer.Option("--by", help="Group by a dimension (repeatable).")] = None,
        where: Annotated[list[str] | None, typer.Option("--where", help="DIM=VALUE (also !=, >, <); repeatable.")]
        = None,
        percentile: Annotated[bool, typer.Option(help="Add each row's percentile among the rows.")] = False,
        show_sql: Annotated[bool, typer.Option("--sql", help="Also print the SQL that ran.")] = False,
        project: ProjectOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """Query a metric: the same call as GET /api/metrics/NAME."""
        from ..errors import OpsloopError, WarehouseError
        from ..metrics import MetricQuery, MetricQueryError

        try:
            loaded = load_app(project)
        except OpsloopError as exc:
            fail(str(exc))
            return
        try:
            try:
                query = MetricQuery.from_params(name, grain, since, until, by or [], where or [], percentile)
            except OverflowError:
                given = " and ".join(f"{o} {v!r}" for o, v in (("--since", since), ("--until", until)) if v)
                fail(f"{given or 'the time range'} reaches past the calendar (before year 1 or after 9999); use a "
                     "shorter duration (90d) or a date (2026-01-01)")
            result = loaded.services["metrics"].query(query)
            data = result.as_dict()
            data["sql"] = result.sql
        except MetricQueryError as exc:
            fail(str(exc))
            return
        except WarehouseError as exc:
            if "in use by another process" not in str(exc):
                fail(str(exc))
            params: list[tuple[str, str | int | float | bool | None]] = [
                (k, v) for k, v in (("grain", grain), ("since", since), ("until", until)) if v]
            params += [("by", b) for b in by or []] + [("where", w) for w in where or []]
            params += [("percentile", "1")] if percentile else []
            data = _via_server(loaded, f"/api/metrics/{name}", [*params, ("sql", "1")])
        finally:
            loaded.close()
        if json_out:
            if not show_sql:
                data.pop("sql", None)
            print_json(data)
            return
        print_table(data["columns"], data["rows"], title=data.get("label"))
        if show_sql:
            for text in data.get("sql", []):
                typer.echo(text)

    @app.command()
    def alerts(project: ProjectOpt = Path("."), json_out: JsonOpt = False) -> None:
        """List metric alerts and their state (ok, firing, or unknown until first evaluated)."""
        from ..errors import OpsloopError

        try:
            loaded = load_app(project)
        except OpsloopError as exc:
            fail(str(exc))
            return
        try:
            states = loaded.services["metrics_alerts"].states()
        finally:
            loaded.close()
        if json_out:
            print_json({"alerts": [s.as_dict() for s in states]})
            return
        print_table(["alert", "metric", "rule", "status", "value", "period"],
                    [[s.name, s.metric, s.rule, s.status, s.value, s.period] for s in states])
