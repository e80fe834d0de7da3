"""init, validate, up."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import ProjectOpt, console, fail, print_json
from ._progress import Progress

if TYPE_CHECKING:
    from ..errors import Problem


def register(app: typer.Typer) -> None:
    @app.command()
    def init(
        directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
        example: Annotated[str | None, typer.Option(help="Write an example project: saas.")] = None,
        force: Annotated[bool, typer.Option(help="Overwrite an existing opsloop.yml.")] = False,
    ) -> None:
        """Create a working project folder with an example webhook and generated secrets."""
        from ..project.scaffold import init_project

        if example not in (None, "saas"):
            fail(f"unknown example {example!r}; the examples are: saas")
        init_project(directory, example=example, force=force)
        out = console()
        out.print(f"Created an opsloop {'example company' if example else 'project'} in {directory}")
        if example == "saas":
            out.print(f"See it run with no accounts: opsloop demo {directory}   (docs/example.md)")
        out.print("Next:")
        out.print(f"  cd {directory}")
        out.print("  opsloop validate")
        out.print("  opsloop up                       # serves http://127.0.0.1:8620")
        out.print("  opsloop send demo_request @samples/demo_request.json   # in another terminal")
        out.print("  opsloop events")

    @app.command()
    def validate(
        project: ProjectOpt = Path("."),
        json_out: Annotated[bool, typer.Option("--json", help="Print errors and warnings as JSON.")] = False,
        strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors (for CI).")] = False,
    ) -> None:
        """Check the whole project; report every problem with file:line and what to do.

        Errors exit 1. Warnings (a destination that cannot be reached, a table the first build, pull or
        identity build creates) are printed and exit 0, unless --strict."""
        from .._subsystems import load_project, validate_project
        from ..errors import ConfigError

        try:
            loaded = load_project(project)
        except ConfigError as exc:
            _report_problems(exc.problems, json_out, strict, {})
            raise typer.Exit(1) from None
        problems = validate_project(loaded)
        if not _report_problems(problems, json_out, strict, {"endpoints": sorted(loaded.endpoints)}):
            raise typer.Exit(1)
        if not json_out:
            typer.echo(f"ok: {loaded.config.name} ({len(loaded.endpoints)} endpoint(s))"
                       + (f", {len(problems)} warning(s)" if problems else ""))

    @app.command()
    def up(
        project: ProjectOpt = Path("."),
        port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port to listen on.")] = None,
        host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
        role: Annotated[str, typer.Option(help="all (default); receiver, worker, scheduler past one machine.")] = "all",
        receivers: Annotated[
            int | None, typer.Option(min=0, help="Extra processes that take webhooks (server.receiver_processes).")
        ] = None,
    ) -> None:
        """Serve webhooks, the API and pages, and run the background work."""
        from .._server import serve

        serve(project, host=host, port=port, role=role, receivers=receivers)


def _report_problems(problems: Sequence[Problem], json_out: bool, strict: bool, extra: Mapping[str, object]) -> bool:
    """Print errors and warnings; True when validate passes (no errors; with ``strict``, no warnings)."""
    errors = [p for p in problems if p.severity == "error" or strict]
    warnings = [p for p in problems if p not in errors]
    ok = not errors
    if json_out:
        print_json({"ok": ok, "errors": [p.__dict__ for p in errors], "warnings": [p.__dict__ for p in warnings],
                    "problems": [p.__dict__ for p in errors], **(extra if ok else {})})
        return ok
    for problem in problems:
        typer.echo(str(problem), err=True)
    if errors:
        counts = f"{len(errors)} problem(s) found" + (f", and {len(warnings)} warning(s)" if warnings else "")
        typer.echo(counts + (" (--strict: warnings count as errors)" if strict and any(
            p.severity == "warning" for p in errors) else ""), err=True)
    return ok


def register_demo(app: typer.Typer) -> None:
    @app.command()
    def demo(
        directory: Annotated[Path, typer.Argument(help="Where to write (or reuse) the example project.")] = Path(
            "opsloop-demo"
        ),
        port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8620,
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        duration: Annotated[float | None, typer.Option(min=0, help="Stop after this many seconds.")] = None,
        rate: Annotated[float, typer.Option(min=0.001, help="Generated demo requests per second.")] = 0.5,
    ) -> None:
        """Run the example company with no accounts: sample traffic, live pages, sandbox destinations."""
        with Progress() as progress:
            progress.add("demo", "opsloop demo")

            def step(text: str | None) -> None:
                if text is None:  # the demo is up: its URL and its traffic's lines follow
                    progress.close()
                    return
                progress.update("demo", detail=text)
                progress.step(f"demo: {text}")

            step("loading opsloop")
            from ..demo import run_demo

            run_demo(directory, port=port, host=host, duration=duration, rate=rate, on_step=step)
