"""Reads ``metrics/*.yml`` and ``dashboards/*.yml`` when a project loads."""

from __future__ import annotations

from ..errors import Problem
from ..project.loader import Project, register_loader
from .catalog import load_catalog


def _load(project: Project, problems: list[Problem]) -> None:
    project.extras["metrics"] = load_catalog(project.root, problems)


register_loader(_load)
