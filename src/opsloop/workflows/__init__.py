"""Durable workflows: ``from opsloop import workflow, Context``.

Python workflows live in ``workflows/*.py`` (functions decorated with :func:`workflow`), YAML workflows in
``workflows/*.yml``. See docs/workflows.md.
"""

from ._api import CancelOn, Schedule, WorkflowDef, workflow
from .context import Context, StepFailed

__all__ = ["CancelOn", "Context", "Schedule", "StepFailed", "WorkflowDef", "workflow"]
