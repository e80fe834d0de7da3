"""send, events, replay."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from ._common import JsonOpt, ProjectOpt, fail, load_app, parse_time, print_json, print_table, when


def _read_payload(value: str) -> bytes:
    if value.startswith("@"):
        path = Path(value[1:])
        if not path.is_file():
            fail(f"payload file {path} not found (give JSON text, @file.json with the path of a file, or - for stdin)")
        try:
            return path.read_bytes()
        except OSError as exc:
            fail(f"cannot read the payload file {path}: {exc.strerror}")
    if value == "-":
        return sys.stdin.buffer.read()
    return value.encode()


def _payload_json(value: str, option: str = "--payload") -> object:
    """The parsed JSON of a payload argument (text, @file or -), or a message saying where it is wrong."""
    raw = _read_payload(value)
    where = f"the file {value[1:]}" if value.startswith("@") else ("stdin" if value == "-" else option)
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        fail(f"{where} is not UTF-8 text; {option} takes a JSON document")
    except ValueError as exc:
        fail(f"{where} is not valid JSON ({exc}); fix it and run the command again")


def register(app: typer.Typer) -> None:
    @app.command()
    def send(
        endpoint: Annotated[str, typer.Argument(help="Endpoint name, as in events/<name>.yml.")],
        payload: Annotated[str, typer.Argument(help="JSON text, @file.json, or - for stdin.")],
        project: ProjectOpt = Path("."),
        url: Annotated[str | None, typer.Option(help="Server base URL (default: from opsloop.yml).")] = None,
        header: Annotated[list[str] | None, typer.Option("--header", "-H", help="Extra header 'Name: value'.")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Post a test event through the real HTTP path, signed with the project's secret."""
        import httpx

        from .._subsystems import load_project
        from ..events.signatures import SignedRequest, make_preset
        from ..settings import resolve_settings

        loaded = load_project(project)
        settings = resolve_settings(loaded)
        cfg = loaded.endpoints.get(endpoint)
        if cfg is None:
            fail(f"no endpoint {endpoint!r}; endpoints: {', '.join(sorted(loaded.endpoints)) or 'none'}")
            return
        body = _read_payload(payload)
        base = url or f"http://{settings.host}:{settings.port}"
        target = f"{base.rstrip('/')}/hooks/{endpoint}"
        extra = {}
        for item in header or []:
            name, _, value = item.partition(":")
            extra[name.strip()] = value.strip()
        secret = loaded.secret(cfg.signature.secret_env) if cfg.signature.secret_env else None
        preset = make_preset(cfg.signature, secret)
        lower = {k.lower(): v for k, v in extra.items()}
        headers = {"content-type": "application/json", **extra}
        headers.update(preset.sign(SignedRequest(body, lower, target, "POST"), time.time()))
        try:
            response = httpx.post(target, content=body, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            fail(f"could not reach {target}: {exc}. Is `opsloop up` running?")
            return
        try:
            data = response.json()
        except ValueError:
            data = {"body": response.text}
        if json_out:
            print_json({"status": response.status_code, **data})
        else:
            typer.echo(f"{response.status_code} {json.dumps(data)}")
        if response.status_code >= 400:
            raise typer.Exit(1)

    events_app = typer.Typer(help="List, show and inspect events in the log.", invoke_without_command=True)
    app.add_typer(events_app, name="events")

    @events_app.callback()
    def events(
        ctx: typer.Context,
        project: ProjectOpt = Path("."),
        status: Annotated[str | None, typer.Option(help="received, rejected, duplicate, quarantined, dispatched, "
                                                        "failed, replayed")] = None,
        endpoint: Annotated[str | None, typer.Option(help="Only this endpoint.")] = None,
        since: Annotated[str | None, typer.Option(help="A duration (15m, 2d) or an ISO time.")] = None,
        limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
        json_out: JsonOpt = False,
    ) -> None:
        """List recent events with their status."""
        if ctx.invoked_subcommand is not None:
            ctx.obj = {"project": project, "json": json_out}
            return
        from ..state import ALL_STATUSES

        if status is not None and status not in ALL_STATUSES:
            fail(f"unknown status {status!r}; use one of: {', '.join(ALL_STATUSES)}")
        app_ = load_app(project)
        try:
            rows = app_.store.list_events(status=status, endpoint=endpoint, since=parse_time(since), limit=limit)
        finally:
            app_.close()
        if json_out:
            print_json([r.summary() for r in rows])
            return
        print_table(
            ["received", "id", "endpoint", "name", "status", "error"],
            [
                [when(r.received_at), r.id, r.endpoint, r.name, r.status,
                 json.dumps(r.error) if r.error else ""]
                for r in rows
            ],
        )

    @events_app.command("show")
    def show(
        ctx: typer.Context,
        event_id: Annotated[str, typer.Argument(help="The event id (evt_...).")],
        project: ProjectOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """Show one event with its headers and raw payload."""
        parent = ctx.obj or {}
        app_ = load_app(parent.get("project") if project == Path(".") else project)
        try:
            record = app_.store.get_event(event_id)
        finally:
            app_.close()
        if record is None:
            fail(f"no event {event_id!r}; list events with `opsloop events`")
            return
        detail = record.detail()
        if json_out or parent.get("json"):
            print_json(detail)
            return
        for key in ("id", "name", "endpoint", "status", "source", "idempotency_key", "related_id"):
            typer.echo(f"{key}: {detail.get(key) or ''}")
        typer.echo(f"received_at: {when(record.received_at)}")
        if record.error:
            typer.echo(f"error: {json.dumps(record.error)}")
        typer.echo("headers:")
        for name, value in sorted(record.headers.items()):
            typer.echo(f"  {name}: {value}")
        typer.echo("body:")
        typer.echo(detail.get("body") or "(binary)")

    @app.command()
    def replay(
        event_id: Annotated[str | None, typer.Argument(help="Replay this one event.")] = None,
        project: ProjectOpt = Path("."),
        endpoint: Annotated[str | None, typer.Option(help="Replay a range: this endpoint.")] = None,
        since: Annotated[str | None, typer.Option(help="Range start: a duration (2h) or ISO time.")] = None,
        status: Annotated[str | None, typer.Option(help="Range: only events with this status.")] = None,
        payload: Annotated[str | None, typer.Option(help="Corrected payload for one event: JSON or @file.")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Re-dispatch one event, or a range by endpoint, time and status, as new log entries."""
        from ..app import ReplayError

        if event_id is None and not (endpoint or since or status):
            fail("give an event id, or a range with --endpoint / --since / --status")
        from ..state import ALL_STATUSES

        if status is not None and status not in ALL_STATUSES:
            fail(f"unknown status {status!r}; use one of: {', '.join(ALL_STATUSES)}")
        app_ = load_app(project)
        try:
            if event_id is not None:
                data = _payload_json(payload) if payload else None
                try:
                    new = app_.replay(event_id, data)
                except ReplayError as exc:
                    fail(str(exc))
                    return
                results: list[tuple[str, str | None, str | None]] = [(event_id, new, None)]
            else:
                results = app_.replay_many(endpoint, parse_time(since), status)
        finally:
            app_.close()
        if json_out:
            print_json([{"original": o, "id": n, "error": e} for o, n, e in results])
            return
        for original, new_id, error in results:
            typer.echo(f"{original} -> {new_id}" if new_id else f"{original}: {error}")
        typer.echo(f"{sum(1 for r in results if r[1])} replayed, {sum(1 for r in results if not r[1])} refused")
