from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsloop.app import App
from opsloop.project.scaffold import init_project
from tests.conftest import make_app, use_postgres_warehouse


class Proj:
    """A project folder with sources; ``app()`` makes a fresh App (as each CLI run would)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.apps: list[App] = []

    def source(self, name: str, yaml_text: str) -> None:
        (self.root / "sources").mkdir(exist_ok=True)
        (self.root / "sources" / f"{name}.yml").write_text(textwrap.dedent(yaml_text))

    def env(self, **values: str) -> None:
        with (self.root / ".env").open("a") as fh:
            for k, v in values.items():
                fh.write(f"{k}={v}\n")

    def app(self, **overrides: Any) -> App:
        for a in self.apps:
            a.close()
        a = make_app(self.root, **overrides)
        self.apps.append(a)
        return a

    def pull(self, name: str, full_refresh: bool = False) -> Any:
        from opsloop.sources import pull

        return pull(self.app(), name, full_refresh)

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        app = self.apps[-1] if self.apps else self.app()
        return app.warehouse.query(query).rows

    def events(self, prefix: str = "") -> list[Any]:
        app = self.apps[-1] if self.apps else self.app()
        return [e for e in reversed(app.store.list_events(limit=100000)) if e.name.startswith(prefix)]


@pytest.fixture
def proj(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Proj]:
    """A project on the DuckDB warehouse, or (``indirect`` parameter ``"postgres"``) on a fresh Postgres database."""
    root = tmp_path / "proj"
    init_project(root)
    if getattr(request, "param", "duckdb") == "postgres":
        use_postgres_warehouse(root, request.getfixturevalue("pg_database"))
    p = Proj(root)
    yield p
    for a in p.apps:
        a.close()
