"""Shared CLI plumbing: the --project option, output that is Rich on a terminal and plain otherwise."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from typing import Unpack

    from rich.console import Console

    from ..app import App
    from ..settings import SettingsOverrides

ProjectOpt = Annotated[
    Path, typer.Option("--project", "-p", help="Project folder (default: the current folder).", show_default=False)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(columns: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> None:
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


def load_app(project: Path | None, **overrides: Unpack[SettingsOverrides]) -> App:
    from ..app import App

    return App.from_path(project or Path.cwd(), **overrides)


def fail(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(code)


def when(ts: float | None) -> str:
    """A timestamp as the listings show it (UTC)."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def parse_time(text: str | None, option: str = "--since") -> float | None:
    """A ``--since``/``--until`` value: a duration back from now (15m, 2h, 7d) or an ISO time (UTC if no offset)."""
    if text is None:
        return None
    from .._durations import parse_duration

    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    except ValueError:
        fail(f"{option} {text!r} is neither a duration (15m, 2h, 7d) nor an ISO time (2026-11-24T10:00)")
    return None
