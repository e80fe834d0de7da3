"""Reads models/, seeds/ and dbt_project.yml into ``project.extras["models"]`` when a project loads."""

from __future__ import annotations

from ..errors import Problem
from ..project.loader import Project, register_loader


def _load(project: Project, problems: list[Problem]) -> None:
    root = project.root
    dbt = project.config.dbt_project
    if not dbt and not any((root / p).exists() for p in ("models", "seeds", "dbt_project.yml")):
        return
    from .project import read_model_project

    mp = read_model_project(root, dbt, problems)
    if mp is not None:
        project.extras["models"] = mp


register_loader(_load)
