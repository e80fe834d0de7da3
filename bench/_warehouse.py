"""Shared by the benchmarks: point a project written by `opsloop init` at a Postgres warehouse."""

from __future__ import annotations

from pathlib import Path


def use_postgres(root: Path, url: str) -> None:
    config = root / "opsloop.yml"
    text = config.read_text()
    start, end = text.index("warehouse:"), text.index("state:")
    config.write_text(text[:start] + f"warehouse:\n  type: postgres\n  url: {url}\n" + text[end:])
