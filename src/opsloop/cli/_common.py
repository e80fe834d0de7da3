"""Shared CLI plumbing: the --project option, output that is Rich on a terminal and plain otherwise."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from ..app import App

ProjectOpt = Annotated[
    Path, typer.Option("--project", "-p", help="Project folder (default: the current folder).", show_default=False)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    """A Rich table on a terminal; tab-separated lines with a header otherwise."""
    if sys.stdout.isatty():
        from rich.table import Table

        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        console().print(table)
        return
    sys.stdout.write("\t".join(columns) + "\n")
    for row in rows:
        sys.stdout.write("\t".join("" if v is None else str(v) for v in row) + "\n")


def load_app(project: Path | None, **overrides: Any) -> App:
    from ..app import App

    return App.from_path(project or Path.cwd(), **overrides)


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(code)
