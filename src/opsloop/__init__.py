"""opsloop: Data Operations in one pip install.

The public surface is this module's ``__all__``; everything else is private and may change.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .errors import (
    ConfigError,
    OpsloopError,
    TerminalError,
    TransientError,
)

if TYPE_CHECKING:
    from ._subsystems import load_project
    from .app import App
    from .project import Project
    from .settings import Settings, resolve_settings
    from .workflows import Context, workflow

__version__ = "0.1.0"

# Where each lazily imported name lives. ``import opsloop`` (and so ``opsloop --help``) must not build the
# project's pydantic models, the workflow context or the web stack: each name is imported on first use.
_LAZY = {
    "App": "opsloop.app",
    "Context": "opsloop.workflows",
    "Project": "opsloop.project",
    "Settings": "opsloop.settings",
    "load_project": "opsloop._subsystems",
    "resolve_settings": "opsloop.settings",
    "workflow": "opsloop.workflows",
}


def __getattr__(name: str) -> object:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'opsloop' has no attribute {name!r}")
    value = getattr(import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "App",
    "ConfigError",
    "Context",
    "OpsloopError",
    "Project",
    "Settings",
    "TerminalError",
    "TransientError",
    "__version__",
    "load_project",
    "resolve_settings",
    "workflow",
]
