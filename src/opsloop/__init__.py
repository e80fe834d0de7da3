"""opsloop: Data Operations in one pip install.

The public surface is this module's ``__all__``; everything else is private and may change.
"""

from __future__ import annotations

from .app import App
from .errors import (
    ConfigError,
    OpsloopError,
    TerminalError,
    TransientError,
)
from .project import Project, load_project
from .settings import Settings, resolve_settings
from .workflows import Context, workflow

__version__ = "0.1.0"

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
