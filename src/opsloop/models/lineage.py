"""Column lineage (placeholder)."""

from __future__ import annotations

from typing import Any

from ..project import Project


def lineage(project: Project, target: str) -> dict[str, Any]:
    return {"target": target, "lines": []}
