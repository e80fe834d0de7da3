"""The composition root's lists: every subsystem's project loader and service, one line each.

A subsystem package ``opsloop.<name>`` may provide:

- ``project_files.py`` with ``LOADER = ProjectLoader(name, load=..., validate=...)``: reads its own project
  files (``workflows/*.yml``, ``models/``, ``syncs/*.yml`` ...) and checks the whole project for
  `opsloop validate`. Listed in :func:`project_loaders`.
- ``service.py`` with ``attach(app: App) -> None``: called when an ``App`` is made; adds event handlers
  (``app.on_event``), background tasks (``app.background``) and shutdown hooks (``app.on_stop``), and
  puts its plain Python service on the app. Listed in :func:`service_attachers`. Its HTTP routes live in
  ``opsloop.web`` (``api_<name>.py``, listed by ``web.server.create_asgi``) and call that service; no
  subsystem imports Starlette.

CLI verbs live in ``opsloop/cli/_<name>.py`` modules with a ``register(typer_app)`` function. Nothing
registers itself by being imported; docs/development.md shows where a new part goes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import App
    from .errors import Problem
    from .project.loader import Project, ProjectLoader


def project_loaders() -> list[ProjectLoader]:
    """Every subsystem's project loader, in load order (a later one may read what an earlier one loaded)."""
    from .channels.project_files import LOADER as channels
    from .events.project_files import LOADER as events
    from .identity.project_files import LOADER as identity
    from .metrics.project_files import LOADER as metrics
    from .models.project_files import LOADER as models
    from .sources.project_files import LOADER as sources
    from .syncs.project_files import LOADER as syncs
    from .workflows.project_files import LOADER as workflows

    return [events, channels, workflows, models, sources, syncs, identity, metrics]


def service_attachers() -> list[Callable[[App], None]]:
    """Every subsystem's ``attach(app)``, in the order an App attaches them."""
    from .identity.service import attach as identity
    from .metrics.service import attach as metrics
    from .models.service import attach as models
    from .sources.service import attach as sources
    from .syncs.service import attach as syncs
    from .workflows.service import attach as workflows

    return [workflows, models, sources, syncs, identity, metrics]


def load_project(root: Path | str, environ: Mapping[str, str] | None = None) -> Project:
    """Load the project at ``root`` with every subsystem's files. Raises ``ConfigError`` listing every problem."""
    from .project.loader import load_project as load

    return load(root, environ, loaders=project_loaders())


def validate_project(project: Project) -> list[Problem]:
    """Every subsystem's whole-project checks (what `opsloop validate` runs after loading)."""
    from .project.loader import run_validators

    return run_validators(project, project_loaders())

