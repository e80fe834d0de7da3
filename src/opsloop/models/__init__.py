"""The dbt-layout model engine: Jinja rendering, DAG, materializations, incremental, seeds, data tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .engine import ModelEngine, ModelError
    from .runner import NodeResult

# imported on first use: importing one module of the package (its project_files for `opsloop validate`)
# must not load the rest
__getattr__ = lazy_exports(__name__, {
    "ModelEngine": ".engine",
    "ModelError": ".engine",
    "NodeResult": ".runner",
})

__all__ = ["ModelEngine", "ModelError", "NodeResult"]
