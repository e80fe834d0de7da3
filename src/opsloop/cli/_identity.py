"""identity build / conflicts, profile, segments (list, preview, run)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .._json import JsonObject, JsonValue
from ..narrow import json_list, json_object, json_objects, number
from ._client import Server, jsonable, local_or_server
from ._common import JsonOpt, ProjectOpt, fail, load_app, print_json, print_table
from ._progress import Progress, seconds

if TYPE_CHECKING:
    from ..app import App
    from ..identity.service import IdentityService


def _fmt(value: object) -> str:
    """A value as the tables show it; a timestamp (a datetime, or its text as the server sends it) to the
    second."""
    if value is None:
        return ""
    if isinstance(value, str) and len(value) >= 19 and value[10:11] in (" ", "T") and value[4:5] == "-":
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _names(value: JsonValue) -> str:
    """A JSON list of names (``merged_from``, ``systems``, ``segments``) as the text lines show it."""
    return ", ".join(str(name) for name in json_list(value))


def _root(project: Path | None) -> Path:
    return (project or Path.cwd()).resolve()


def _here(project: Path | None, work: Callable[[IdentityService], object]) -> JsonValue:
    """``work(identity_service)`` in this process, its answer as the server would send it."""
    app_ = _service(project)
    try:
        app_.warehouse.query("SELECT 1")  # a locked warehouse: WarehouseLocked, before any read swallows it
        return jsonable(work(app_.identity))
    finally:
        app_.close()


def _service(project: Path | None) -> App:
    from ..identity.project_files import identity_of

    app_ = load_app(project)
    ip = identity_of(app_.project)
    if ip.config is None and not ip.segments:
        app_.close()
        fail("there is no identity.yml in this project; write one (see docs/identity.md)")
    return app_


_STAGE_LABELS = {"stage": "staging records", "diff": "finding changed records", "normalize": "normalizing identifiers",
                 "scope": "choosing whom to re-resolve", "merge": "merging", "ids": "assigning stable ids",
                 "golden": "building the golden record", "segments": "evaluating segments",
                 "events": "writing events to the log"}


class _Stages:
    """An identity build's ``on_stage`` callback: a bar of stages done on a terminal, with the one running;
    a line per stage otherwise."""

    def __init__(self, progress: Progress, segments: bool) -> None:
        from ..identity.resolve import BUILD_STAGES
        from ..identity.service import SERVICE_STAGES

        self.progress = progress
        self.names = [*BUILD_STAGES, *(s for s in SERVICE_STAGES if segments or s != "segments")]
        self.done = 0
        progress.add("identity", "identity build", total=len(self.names), detail=self._running())

    def _running(self) -> str:
        if self.done >= len(self.names):
            return ""
        name = self.names[self.done]
        return f"{_STAGE_LABELS.get(name, name)}…"

    def __call__(self, name: str, took: float) -> None:
        self.done = min(self.done + 1, len(self.names))
        self.progress.update("identity", completed=self.done, detail=self._running())
        self.progress.step(f"identity build: {name} ({_STAGE_LABELS.get(name, name)}) done in {seconds(took)} "
                           f"({self.done} of {len(self.names)})")


def register(app: typer.Typer) -> None:
    identity_app = typer.Typer(help="Resolve identities into people and build the golden record.")
    app.add_typer(identity_app, name="identity")

    @identity_app.command("build")
    def build(
        project: ProjectOpt = Path("."),
        full: Annotated[bool, typer.Option("--full", help="Re-resolve every record, not only changed ones.")] = False,
        no_segments: Annotated[bool, typer.Option("--no-segments", help="Do not evaluate segments.")] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Resolve identities, rebuild the golden record and segments; write their events to the log."""

        def here() -> JsonObject:
            with Progress(json_out) as progress:
                stages = _Stages(progress, segments=not no_segments)
                return json_object(_here(project, lambda s: s.build(full=full, segments=not no_segments,
                                                                    on_stage=stages)))

        result = local_or_server(_root(project), here, lambda server: server.identity_build(full, not no_segments))
        if json_out:
            print_json(result)
            return
        typer.echo(f"{result['kind']} build: {result['records']} records ({result['changed']} changed, "
                   f"{result['deleted']} deleted), {result['scope']} re-resolved, {result['persons']} people, "
                   f"{result['profile_updates']} profile updates, {result['refused']} merges refused by limits, "
                   f"in {result['seconds']:.2f}s")
        for seg in json_objects(result["segments"]):
            typer.echo(f"segment {seg['segment']}: {seg['members']} members (+{seg['entered']} -{seg['exited']})")
        count = int(number(result["events"]) or 0)
        typer.echo(f"{count} event{'' if count == 1 else 's'} written to the log")

    @identity_app.command("conflicts")
    def conflicts(
        project: ProjectOpt = Path("."),
        limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
        json_out: JsonOpt = False,
    ) -> None:
        """Identifier values that were not used to merge people (limits, shared values, unlinks)."""
        rows = local_or_server(_root(project), lambda: json_objects(_here(project, lambda s: s.conflicts(limit))),
                               lambda server: server.conflicts(limit))
        if json_out:
            print_json(rows)
            return
        print_table(["recorded_at", "rule", "type", "value", "reason"],
                    [[_fmt(r["recorded_at"]), r["rule"], r["id_type"], r["value"], r["reason"]] for r in rows])

    @app.command("profile")
    def profile(
        query: Annotated[str, typer.Argument(help="A person id, system:record_id, or an email / phone / other id.")],
        project: ProjectOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """Show one person: identifiers, linked records per system, golden fields with provenance."""
        data = local_or_server(_root(project), lambda: json_object(_here(project, lambda s: s.profile(query))),
                               lambda server: server.profile(query))
        if json_out:
            print_json(data)
            return
        typer.echo(f"person {data['person_id']}")
        if data["merged_from"]:
            typer.echo(f"merged from: {_names(data['merged_from'])}")
        typer.echo("identifiers:")
        for item in json_objects(data["identifiers"]):
            typer.echo(f"  {item['type']}: {item['value']}  ({_names(item['systems'])})")
        typer.echo("records:")
        for rec in json_objects(data["records"]):
            typer.echo(f"  {rec['system']}:{rec['record_id']}  updated {_fmt(rec['updated_at'])}")
        typer.echo("fields:")
        fields = {name: json_object(f) for name, f in json_object(data["fields"]).items()}
        print_table(["field", "value", "source", "updated_at"],
                    [[name, _fmt(f["value"]), f["source"], _fmt(f["updated_at"])] for name, f in fields.items()])
        typer.echo(f"segments: {_names(data['segments']) or '(none)'}")

    segments_app = typer.Typer(help="Audiences over the golden record, with enter/exit events.",
                               invoke_without_command=True)
    app.add_typer(segments_app, name="segments")

    @segments_app.callback()
    def segments(ctx: typer.Context, project: ProjectOpt = Path("."), json_out: JsonOpt = False) -> None:
        """List segments with their member counts."""
        if ctx.invoked_subcommand is not None:
            ctx.obj = {"project": project, "json": json_out}
            return
        rows = local_or_server(_root(project), lambda: json_objects(_here(project, lambda s: s.segment_summary())),
                               Server.segments)
        if json_out:
            print_json(rows)
            return
        print_table(["segment", "members", "last_evaluated", "entered", "exited", "schedule", "description"],
                    [[str(r["segment"]) + ("" if r["enabled"] else " (disabled)"), r["members"],
                      _fmt(r["last_evaluated"]), _fmt(r["last_entered"]), _fmt(r["last_exited"]),
                      r["schedule"] or "", r["description"]] for r in rows])

    @segments_app.command("preview")
    def preview(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help="Segment name (segments/<name>.yml).")],
        project: ProjectOpt = Path("."),
        limit: Annotated[int, typer.Option(min=1, help="Show at most this many members.")] = 20,
        json_out: JsonOpt = False,
    ) -> None:
        """Show who is in a segment now and who would enter or exit, without recording anything."""
        parent = ctx.obj or {}
        chosen = parent.get("project") or project if project == Path(".") else project
        data = local_or_server(_root(chosen),
                               lambda: json_object(_here(chosen, lambda s: s.segment_preview(name, limit))),
                               lambda server: server.segment_preview(name, limit))
        if json_out or parent.get("json"):
            print_json(data)
            return
        typer.echo(f"segment {name}: {data['members']} members; would enter: {data['would_enter']}, "
                   f"would exit: {data['would_exit']}")
        sample = json_objects(data["sample"])
        if sample:
            cols = [c for c in sample[0] if not c.endswith(("__source", "__updated_at")) and
                    c not in ("systems", "resolved_at")]
            print_table(cols, [[_fmt(row[c]) for c in cols] for row in sample])

    @segments_app.command("run")
    def run(
        ctx: typer.Context,
        names: Annotated[list[str] | None, typer.Argument(help="Segments to evaluate (default: all).")] = None,
        project: ProjectOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """Evaluate segments now: record membership changes and write segment.entered / exited events."""
        parent = ctx.obj or {}
        chosen = parent.get("project") or project if project == Path(".") else project
        results = local_or_server(_root(chosen),
                                  lambda: json_objects(_here(chosen, lambda s: s.evaluate_segments(names or None))),
                                  lambda server: server.run_segments(names or None))
        if json_out or parent.get("json"):
            print_json(results)
            return
        for seg in results:
            typer.echo(f"segment {seg['segment']}: {seg['members']} members (+{seg['entered']} -{seg['exited']})")
