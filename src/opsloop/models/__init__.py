"""The dbt-layout model engine: Jinja rendering, DAG, materializations, incremental, seeds, data tests."""

from __future__ import annotations

from .engine import ModelEngine, ModelError
from .runner import NodeResult

__all__ = ["ModelEngine", "ModelError", "NodeResult"]
