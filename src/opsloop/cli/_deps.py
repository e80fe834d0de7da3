"""deps: install the dbt packages packages.yml names into dbt_packages/ (local: and git: packages)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ._common import ProjectOpt


def register(app: typer.Typer) -> None:
    @app.command()
    def deps(project: ProjectOpt = Path(".")) -> None:
        """Install packages.yml's local: and git: packages into dbt_packages/ (as `dbt deps` does)."""
        from ..errors import ConfigError
        from ..models.packages import DepsError, install
        from ..project import read_project_config

        loaded = read_project_config((project or Path.cwd()).resolve())
        dbt_dir = loaded.config.dbt_project
        root = (loaded.root / dbt_dir).resolve() if dbt_dir else loaded.root
        try:
            lines = install(root, loaded.root)
        except DepsError as exc:
            raise ConfigError(exc.problems) from exc
        for line in lines:
            sys.stdout.write(f"installed {line}\n")
