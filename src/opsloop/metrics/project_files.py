"""Reads ``metrics/*.yml`` and ``dashboards/*.yml`` when a project loads."""

from __future__ import annotations

from ..errors import Problem
from ..project.loader import Project, ProjectLoader
from .catalog import CATALOG, load_catalog


def _load(project: Project, problems: list[Problem]) -> None:
    CATALOG.put(project, load_catalog(project.root, problems))


LOADER = ProjectLoader("metrics", load=_load)
"""What the composition root (``opsloop._subsystems``) lists to load and check this subsystem's files."""
