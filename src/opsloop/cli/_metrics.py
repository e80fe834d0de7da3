"""metric, metrics, alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._json import JsonObject
from ..narrow import json_list, json_object, json_objects
from ._client import Server, jsonable, local_or_server
from ._common import JsonOpt, ProjectOpt, fail, load_app, print_json, print_table


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
        from ..errors import OpsloopError
        from ..metrics import MetricQuery, MetricQueryError

        try:
            loaded = load_app(project)
        except OpsloopError as exc:
            fail(str(exc))
            return

        def here() -> JsonObject:
            try:
                query = MetricQuery.from_params(name, grain, since, until, by or [], where or [], percentile)
            except OverflowError:
                given = " and ".join(f"{o} {v!r}" for o, v in (("--since", since), ("--until", until)) if v)
                fail(f"{given or 'the time range'} reaches past the calendar (before year 1 or after 9999); use a "
                     "shorter duration (90d) or a date (2026-01-01)")
            try:
                result = loaded.metrics.query(query)
            except MetricQueryError as exc:
                fail(str(exc))
            return json_object(jsonable({**result.as_dict(), "sql": result.sql}))

        params: list[tuple[str, str]] = [(k, v) for k, v in (("grain", grain), ("since", since), ("until", until))
                                         if v]
        params += [("by", b) for b in by or []] + [("where", w) for w in where or []]
        params += [("percentile", "1")] if percentile else []
        try:
            data = local_or_server(loaded.project.root, here,
                                   lambda server: server.metric(name, [*params, ("sql", "1")]))
        finally:
            loaded.close()
        if json_out:
            if not show_sql:
                data.pop("sql", None)
            print_json(data)
            return
        label = data.get("label")
        print_table([str(c) for c in json_list(data["columns"])], [json_list(r) for r in json_list(data["rows"])],
                    title=None if label is None else str(label))
        if show_sql:
            for text in json_list(data.get("sql", [])):
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
            runner = loaded.metrics_alerts
            states = local_or_server(loaded.project.root,
                                     lambda: json_objects(jsonable([s.as_dict() for s in runner.states()])),
                                     Server.alerts)
        finally:
            loaded.close()
        if json_out:
            print_json({"alerts": states})
            return
        print_table(["alert", "metric", "rule", "status", "value", "period"],
                    [[s["name"], s["metric"], s["rule"], s["status"], s["value"], s["period"]] for s in states])
