"""Where the subsystems plug in, without a central file that each of them edits.

A subsystem package ``opsloop.<name>`` may provide:

- ``_project.py`` — imported before a project loads; calls ``register_loader`` / ``register_validator``
  to read its own project files (``workflows/*.yml``, ``models/``, ``syncs/*.yml`` ...).
- ``_service.py`` — ``attach(app: App) -> None``; called when an ``App`` is made; adds event handlers
  (``app.on_event``), background tasks (``app.background``) and shutdown hooks (``app.on_stop``), and
  puts its plain Python service in ``app.services``. Its HTTP routes live in ``opsloop.web`` (``api_<name>.py``,
  listed by ``web.server.create_asgi``) and call that service; no subsystem imports Starlette.

CLI verbs live in ``opsloop/cli/_<name>.py`` modules with a ``register(typer_app)`` function.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

SUBSYSTEMS = ("channels", "workflows", "models", "sources", "syncs", "identity", "metrics")


def hooks(kind: str) -> list[ModuleType]:
    """Import ``opsloop.<subsystem>.<kind>`` for every subsystem that has one, in SUBSYSTEMS order."""
    found = []
    for name in SUBSYSTEMS:
        module_name = f"opsloop.{name}.{kind}"
        try:
            spec = importlib.util.find_spec(module_name)
        except ModuleNotFoundError:
            spec = None
        if spec is not None:
            found.append(importlib.import_module(module_name))
    return found
