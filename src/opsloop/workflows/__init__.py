"""Durable workflows: ``from opsloop import workflow, Context``.

Python workflows live in ``workflows/*.py`` (functions decorated with :func:`workflow`), YAML workflows in
``workflows/*.yml``. See docs/workflows.md.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._api import CancelOn, Schedule, WorkflowDef, workflow
    from .context import Context, StepFailed

# The names below load on first use: the CLI imports ``opsloop.workflows.runs`` for its verbs, and that must
# not build the step context and its Jinja templates before `opsloop runs --help` prints.
_LAZY = {
    "CancelOn": "._api",
    "Context": ".context",
    "Schedule": "._api",
    "StepFailed": ".context",
    "WorkflowDef": "._api",
    "workflow": "._api",
}


def __getattr__(name: str) -> object:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'opsloop.workflows' has no attribute {name!r}")
    value = getattr(import_module(where, __name__), name)
    globals()[name] = value
    return value


__all__ = ["CancelOn", "Context", "Schedule", "StepFailed", "WorkflowDef", "workflow"]
