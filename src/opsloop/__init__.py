"""opsloop: Data Operations in one pip install.

The public surface is this module's ``__all__``; everything else is private and may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigError,
    OpsloopError,
    TerminalError,
    TransientError,
)
from .project import Project, load_project
from .settings import Settings, resolve_settings
from .workflows import Context, workflow

if TYPE_CHECKING:
    from .app import App

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # ``App`` pulls in the web stack and Arrow; importing it lazily keeps `opsloop <verb>` start-up fast
    if name == "App":
        from .app import App

        return App
    raise AttributeError(f"module 'opsloop' has no attribute {name!r}")


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
