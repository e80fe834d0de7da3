"""deps: install the dbt packages packages.yml names into dbt_packages/ (local, git, hub, tarball)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ._common import ProjectOpt
from ._progress import Progress


def register(app: typer.Typer) -> None:
    @app.command()
    def deps(project: ProjectOpt = Path("."),
             upgrade: bool = typer.Option(False, "--upgrade", help="resolve afresh, ignore package-lock.yml")) -> None:
        """Install packages.yml's packages (local:, git:, hub package:, tarball:) into dbt_packages/, as
        `dbt deps` does; package-lock.yml pins them (DBT_PACKAGE_HUB_URL names another hub)."""
        from ..errors import ConfigError
        from ..models.deps import DepsError, install
        from ..project import read_project_config

        loaded = read_project_config((project or Path.cwd()).resolve())
        dbt_dir = loaded.config.dbt_project
        root = (loaded.root / dbt_dir).resolve() if dbt_dir else loaded.root
        try:
            with Progress() as progress:
                progress.add("deps", "deps", detail="reading packages.yml")

                def step(text: str) -> None:
                    progress.update("deps", detail=text)
                    progress.step(text)

                lines = install(root, loaded.root, upgrade=upgrade, on_step=step)
        except DepsError as exc:
            raise ConfigError(exc.problems) from exc
        for line in lines:
            sys.stdout.write(f"installed {line}\n")
