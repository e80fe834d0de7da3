"""sync, syncs, syncs show."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypedDict

import typer

from .._json import JsonValue
from ..narrow import json_object, json_objects
from ._client import Server, jsonable, local_or_server
from ._common import JsonOpt, ProjectOpt, fail, load_app, print_json, print_table
from ._progress import Progress, count

if TYPE_CHECKING:
    from ..app import App
    from ..syncs import RunResult, SyncRunner


class _Options(TypedDict):
    """What `opsloop sync` asks of each run (``SyncRunner.run``'s and ``POST /api/syncs/{name}/run``'s options)."""

    dry_run: bool
    full: bool
    confirm_deletes: bool
    reset: bool


def _summary(r: RunResult) -> str:
    p = r.planned
    if r.status == "reset":
        return f"{r.sync}: diff reset; {p.get('reset', 0)} row(s) marked as delivered, nothing sent"
    if r.status == "dry_run":
        return (f"{r.sync}: dry run: would create {p.get('create', 0)}, update {p.get('update', 0)}, "
                f"delete {p.get('delete', 0)}; nothing sent")
    text = (f"{r.sync}: {r.status}: {p.get('create', 0)} to create, {p.get('update', 0)} to update, "
            f"{p.get('delete', 0)} to delete; sent {r.sent}, failed {r.failed}")
    if r.unconfirmed:
        text += f", {r.unconfirmed} unconfirmed after an interrupted run"
    text += f" ({r.seconds:.1f}s, {r.run_id})"
    if r.error:
        text += f"\n  {r.error}"
    elif r.failed:
        text += f"\n  see the errors with `opsloop syncs show {r.sync}`; failed rows are retried on the next run"
    return text


def register(app: typer.Typer) -> None:
    @app.command()
    def sync(
        name: Annotated[str | None, typer.Argument(help="The sync (syncs/<name>.yml); all syncs when omitted.")] = None,
        project: ProjectOpt = Path("."),
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Show planned creates/updates/deletes; send nothing.")]
        = False,
        full: Annotated[bool, typer.Option("--full", help="Send every row, not only the changed ones.")] = False,
        confirm_deletes: Annotated[bool, typer.Option("--confirm-deletes",
                                                      help="Allow a mirror run over its max_delete_share.")] = False,
        reset: Annotated[bool, typer.Option("--reset", help="Mark the current rows as delivered without sending.")]
        = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Run a sync now: send the rows added, changed or removed since the last successful delivery."""
        from ..syncs import SyncError, SyncRunner

        app_ = load_app(project)
        options: _Options = {"dry_run": dry_run, "full": full, "confirm_deletes": confirm_deletes, "reset": reset}
        try:
            runner = SyncRunner(app_)
            names = [name] if name else sorted(runner.syncs)
            if not names:
                fail("no syncs in this project; add one in syncs/<name>.yml (see docs/syncs.md)")
            for item in names:
                try:
                    runner.get(item)
                except SyncError as exc:
                    fail(str(exc))
            results = [_run_one(app_, runner, item, options, json_out) for item in names]
        finally:
            app_.close()
        if json_out:
            print_json([r.as_dict() for r in results])
        else:
            for r in results:
                typer.echo(_summary(r))
                for label, rows in r.samples.items():
                    if rows:
                        typer.echo(f"  sample {label}s:")
                        for row in rows:
                            typer.echo(f"    {row['key']}: {row['fields']}")
        if any(r.status in ("failed", "stopped", "partial", "quota") for r in results):
            raise typer.Exit(1)

    syncs_app = typer.Typer(help="List syncs with their status; show one with its failed rows.",
                            invoke_without_command=True)
    app.add_typer(syncs_app, name="syncs")

    @syncs_app.callback()
    def syncs(ctx: typer.Context, project: ProjectOpt = Path("."), json_out: JsonOpt = False) -> None:
        """Every sync: destination, mode, status, last run, rows sent / failed / pending retry."""
        if ctx.invoked_subcommand is not None:
            ctx.obj = {"project": project, "json": json_out}
            return
        from ..syncs.listing import sync_listing

        app_ = load_app(project)
        try:
            listing = local_or_server(app_.project.root, lambda: json_objects(_here(app_, sync_listing)), Server.syncs)
        finally:
            app_.close()
        if json_out:
            print_json(listing)
            return
        print_table(
            ["sync", "destination", "mode", "health", "last status", "last run", "sent", "failed", "pending retry"],
            [[s["sync"], s["destination"], s["mode"], s["health"], s["last_status"], s["last_run_at"],
              s["last_sent"], s["last_failed"], s["pending_retry"]] for s in listing],
        )

    @syncs_app.command("show")
    def show(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help="The sync.")],
        project: ProjectOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """One sync: its recent runs, and the failed rows with the destination's own error."""
        from ..syncs import SyncError
        from ..syncs.listing import sync_detail
        from ..syncs.project_files import SYNCS

        parent = ctx.obj or {}
        app_ = load_app(parent.get("project") if project == Path(".") else project)
        try:
            known = sorted(SYNCS.of(app_.project))
            if name not in known:
                fail(str(SyncError(f"no sync {name!r}; syncs: {', '.join(known) or 'none'}")))
            detail = local_or_server(
                app_.project.root, lambda: json_object(_here(app_, lambda a: sync_detail(a, name) or {})),
                lambda server: server.sync(name))
        finally:
            app_.close()
        if json_out or parent.get("json"):
            print_json(detail)
            return
        runs, failed = json_objects(detail["runs"]), json_objects(detail["failed_rows"])
        info = detail
        for key in ("sync", "file", "destination", "mode", "health", "last_status", "last_run_at", "pending_retry"):
            typer.echo(f"{key}: {info[key] if info[key] is not None else ''}")
        typer.echo("recent runs:")
        print_table(["run", "started", "status", "sent", "failed", "error"],
                    [[r["run_id"], r["started_at"], r["status"], r["sent"], r["failed"], r["error"] or ""]
                     for r in runs])
        typer.echo(f"failed rows ({len(failed)}):")
        print_table(["key", "attempts", "error"], [[r["key"], r["attempts"], r["error"]] for r in failed])


def _here(app_: App, read: Callable[[App], object]) -> JsonValue:
    """``read(app_)`` as the server would answer it; a locked warehouse raises ``WarehouseLocked`` first (the
    listing itself reads a missing table as no runs)."""
    app_.warehouse.query("SELECT 1")
    return jsonable(read(app_))


def _run_one(app_: App, runner: SyncRunner, name: str, options: _Options, json_out: bool) -> RunResult:
    """One sync run, here or through the running server (whose answer is parsed back into a ``RunResult``)."""
    from pydantic import TypeAdapter

    from ..syncs import RunResult

    def here() -> RunResult:
        app_.warehouse.query("SELECT 1")  # WarehouseLocked here, before a run that would report it as its failure
        with Progress(json_out) as progress:
            result: RunResult = runner.run(name, progress=_SyncProgress(name, progress), **options)
            return result

    answer = TypeAdapter(RunResult).validate_python
    return local_or_server(app_.project.root, here, lambda server: answer(server.run_sync(name, **options)))


class _SyncProgress:
    """A sync run's ``progress(done, total)`` callback: a bar of rows sent on a terminal; a line per batch
    (at most one a second) and one at the end otherwise."""

    def __init__(self, name: str, progress: Progress) -> None:
        self.key = f"sync {name}"
        self.progress = progress
        progress.add(self.key, self.key)

    def __call__(self, done: int, total: int) -> None:
        self.progress.update(self.key, completed=done, total=total)
        line = f"{self.key}: {count(done)} of {count(total)} rows sent"
        self.progress.step(line, throttle=None if done >= total else self.key)
