"""Warehouse adapters: DuckDB by default; others by configuration (imported only when used)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, Problem
from ..project.config import WarehouseConfig
from .base import QueryResult, Warehouse


def open_warehouse(config: WarehouseConfig, root: Path) -> Warehouse:
    """The adapter for ``config``; heavy SDKs are imported here, on first use only."""
    if config.type == "duckdb":
        from .duckdb import DuckDBWarehouse

        path = Path(config.path)
        if str(path) != ":memory:" and not path.is_absolute():
            path = root / path
        return DuckDBWarehouse(path, threads=config.threads)
    raise ConfigError(
        [Problem("opsloop.yml", None, f"unknown warehouse type {config.type!r}", "use duckdb")]
    )


__all__ = ["QueryResult", "Warehouse", "open_warehouse"]
