"""workflows, runs (list, show, replay), rerun, cancel, pause, resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from .._json import JsonValue
from ..workflows import runs as R
from ._common import JsonOpt, ProjectOpt, fail, load_app, parse_time, print_json, print_table, when

if TYPE_CHECKING:
    from ..app import App






T = TypeVar("T")


def _open(project: Path | None) -> App:
    return load_app(project)


def _known(app_: App) -> set[str]:
    from ..workflows.project_files import WORKFLOWS

    return set(WORKFLOWS.of(app_.project))


def _on_store(project: Path | None, work: Callable[[App], T]) -> T:
    """Run ``work`` on the project's app, then close it; a RunError becomes the CLI's one-line failure."""
    app_ = _open(project)
    try:
        return work(app_)
    except R.RunError as exc:
        fail(str(exc))
    finally:
        app_.close()


def register(app: typer.Typer) -> None:
    @app.command("workflows")
    def workflows_cmd(project: ProjectOpt = Path("."), json_out: JsonOpt = False) -> None:
        """List the project's workflows, their triggers and whether they are paused."""
        app_ = _open(project)
        try:
            paused = R.paused_workflows(app_.store)
            from ..workflows.project_files import WORKFLOWS

            defs = list(WORKFLOWS.of(app_.project).values())
        finally:
            app_.close()
        rows = [{"name": d.name, "source": d.source, "on": ", ".join(d.on),
                 "schedule": f"{d.schedule.cron} ({d.schedule.timezone})" if d.schedule else "",
                 "paused": d.name in paused} for d in defs]
        if json_out:
            print_json(rows)
            return
        print_table(["name", "source", "on", "schedule", "paused"],
                    [[r["name"], r["source"], r["on"], r["schedule"], "yes" if r["paused"] else ""] for r in rows])

    runs_app = typer.Typer(help="List, show and replay workflow runs.", invoke_without_command=True)
    app.add_typer(runs_app, name="runs")

    @runs_app.callback()
    def runs_cmd(
        ctx: typer.Context,
        project: ProjectOpt = Path("."),
        workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
        status: Annotated[str | None, typer.Option(help="queued, running, sleeping, waiting, completed, failed, "
                                                        "cancelled")] = None,
        since: Annotated[str | None, typer.Option(help="A duration (15m, 2d) or an ISO time.")] = None,
        limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
        json_out: JsonOpt = False,
    ) -> None:
        """List recent workflow runs."""
        if ctx.invoked_subcommand is not None:
            ctx.obj = {"project": project, "json": json_out}
            return
        found = _on_store(project, lambda a: R.list_runs(a.store, workflow, status, parse_time(since, "--since"),
                                                         None, limit))
        if json_out:
            print_json([r.summary() for r in found])
            return
        print_table(
            ["created", "id", "workflow", "status", "trigger", "error"],
            [[when(r.created_at), r.id, r.workflow, r.status, (r.trigger or {}).get("name", ""),
              (r.error or "")[:80]] for r in found],
        )

    @runs_app.command("show")
    def show(
        ctx: typer.Context,
        run_id: Annotated[str, typer.Argument(help="The run id (run_...).")],
        project: ProjectOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """Show one run: its trigger event and each step's input, output, error, attempts and timing."""
        parent = ctx.obj or {}
        detail = _on_store(parent.get("project") if project == Path(".") else project,
                           lambda a: R.run_detail(a.store, run_id))
        if json_out or parent.get("json"):
            print_json(detail)
            return
        for key in ("id", "workflow", "status", "attempts", "rerun_of", "error"):
            if detail.get(key) not in (None, ""):
                typer.echo(f"{key}: {detail[key]}")
        for key, stamp in (("created_at", detail["created_at"]), ("started_at", detail["started_at"]),
                           ("finished_at", detail["finished_at"]), ("wake_at", detail["wake_at"])):
            if stamp:
                typer.echo(f"{key}: {when(stamp)}")
        trigger = detail.get("trigger") or {}
        if trigger:
            typer.echo(f"trigger: {trigger.get('name')} {trigger.get('id')} {json.dumps(trigger.get('data'))}")
        typer.echo("steps:")
        for step in detail["steps"]:
            line = (f"  {step['position']:>3} {step['step']} [{step['kind']}] {step['status']}"
                    f" attempts={step['attempts']}")
            if step["duration_ms"] is not None:
                line += f" {step['duration_ms']}ms"
            typer.echo(line)
            if step["input"] is not None:
                typer.echo(f"      input: {json.dumps(step['input'])}")
            if step["output"] is not None:
                typer.echo(f"      output: {json.dumps(step['output'])}")
            if step["error"]:
                typer.echo(f"      error: {step['error']}")
        if detail.get("output") is not None:
            typer.echo(f"output: {json.dumps(detail['output'])}")

    @runs_app.command("replay")
    def replay_runs(
        ctx: typer.Context,
        project: ProjectOpt = Path("."),
        workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
        status: Annotated[str | None, typer.Option(help="Only runs with this status (completed, failed, "
                                                        "cancelled).")] = None,
        since: Annotated[str | None, typer.Option(help="Runs created since: a duration or ISO time.")] = None,
        until: Annotated[str | None, typer.Option(help="Runs created until: a duration ago or ISO time.")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Bulk replay: start each finished run matching the filters again, from the start."""
        if not (workflow or status or since or until):
            fail("choose the runs to replay with --workflow, --status, --since and/or --until")
        parent = ctx.obj or {}

        def replay(app_: App) -> list[tuple[str, str]]:
            if workflow is not None and workflow not in _known(app_):
                fail(f"no workflow {workflow!r}; workflows: {', '.join(sorted(_known(app_))) or 'none'}")
            return R.replay_runs(app_.store, workflow, status, parse_time(since, "--since"),
                                 parse_time(until, "--until"))

        pairs = _on_store(parent.get("project") if project == Path(".") else project, replay)
        if json_out or parent.get("json"):
            print_json([{"original": o, "id": n} for o, n in pairs])
            return
        for old, new in pairs:
            typer.echo(f"{old} -> {new}")
        typer.echo(f"{len(pairs)} runs replayed")

    @app.command()
    def rerun(
        run_id: Annotated[str, typer.Argument(help="The run to run again.")],
        project: ProjectOpt = Path("."),
        from_step: Annotated[str | None, typer.Option(help="Reuse the results of the steps before this one.")] = None,
        input: Annotated[str | None, typer.Option(help="New input: JSON text or @file.json.")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Start a run again (a new run), optionally from a step, optionally with new input."""
        data: JsonValue = None
        if input is not None:
            text = input
            if input.startswith("@"):
                path = Path(input[1:])
                if not path.is_file():
                    fail(f"input file {path} not found")
                text = path.read_text(encoding="utf-8")
            try:
                data = json.loads(text)
            except ValueError as exc:
                fail(f"--input is not JSON: {exc}")
        new = _on_store(project, lambda a: R.rerun(a.store, run_id, from_step, data))
        if json_out:
            print_json({"rerun_of": run_id, "id": new})
        else:
            typer.echo(new)

    @app.command()
    def cancel(
        run_id: Annotated[str, typer.Argument(help="The run to cancel.")],
        project: ProjectOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """Cancel a run that has not finished."""
        run = _on_store(project, lambda a: R.cancel_run(a.store, run_id))
        if json_out:
            print_json(run.summary())
        else:
            typer.echo(f"{run.id} cancelled")

    def _pause(workflow: str, project: Path, paused: bool, json_out: bool) -> None:
        _on_store(project, lambda a: R.set_paused(a.store, workflow, paused, _known(a)))
        if json_out:
            print_json({"workflow": workflow, "paused": paused})
        else:
            typer.echo(f"{workflow} {'paused: its triggers keep queueing runs' if paused else 'resumed'}")

    @app.command()
    def pause(
        workflow: Annotated[str, typer.Argument(help="The workflow to pause.")],
        project: ProjectOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """Pause a workflow: its triggers keep queueing runs, which start on resume."""
        _pause(workflow, project, True, json_out)

    @app.command()
    def resume(
        workflow: Annotated[str, typer.Argument(help="The workflow to resume.")],
        project: ProjectOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """Resume a paused workflow; the runs queued meanwhile start."""
        _pause(workflow, project, False, json_out)
