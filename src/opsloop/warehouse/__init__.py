"""Warehouse adapters: DuckDB by default; others by configuration (imported only when used).

``opsloop.yml``::

    warehouse: {type: duckdb, path: warehouse.duckdb}
    warehouse: {type: postgres, url: "postgresql://user@host:5432/db?schema=analytics"}
    warehouse: {type: clickhouse, path: warehouse.chdb}          # embedded ClickHouse (chdb)
    warehouse: {type: snowflake, options: {account: ..., user: ..., database: ..., schema: ...}}
    warehouse: {type: bigquery, options: {project: ..., dataset: ...}}
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, Problem
from ..project.config import WarehouseConfig
from ._sandbox import DEFAULT_LIMIT, DEFAULT_TIMEOUT, MAX_LIMIT, QueryRefused, QueryTimeout, query_timeout
from .base import Params, QueryResult, Row, Warehouse

TYPES = ("duckdb", "postgres", "clickhouse", "snowflake", "bigquery")


def open_warehouse(config: WarehouseConfig, root: Path, read_only: bool = False) -> Warehouse:
    """The adapter for ``config``; heavy SDKs are imported here, on first use only."""
    if config.type == "duckdb":
        from .duckdb import DuckDBWarehouse

        path = Path(config.path)
        if str(path) != ":memory:" and not path.is_absolute():
            path = root / path
        return DuckDBWarehouse(path, read_only=read_only, threads=config.threads)
    if config.type == "postgres":
        from .postgres import PostgresWarehouse

        if not config.url:
            raise ConfigError([Problem("opsloop.yml", None, "warehouse type postgres needs url:",
                                       "e.g. url: postgresql://user@127.0.0.1:5432/db?schema=analytics")])
        role = config.options.get("query_role")
        return PostgresWarehouse(config.url, query_role=str(role) if role else None)
    if config.type == "clickhouse":
        from .clickhouse import ClickHouseWarehouse

        path = Path(config.path if config.path != "warehouse.duckdb" else "warehouse.chdb")
        if not path.is_absolute():
            path = root / path
        return ClickHouseWarehouse(path)
    if config.type == "snowflake":
        from .snowflake import SnowflakeWarehouse

        return SnowflakeWarehouse(dict(config.options))
    if config.type == "bigquery":
        from .bigquery import BigQueryWarehouse

        return BigQueryWarehouse(dict(config.options))
    raise ConfigError(
        [Problem("opsloop.yml", None, f"unknown warehouse type {config.type!r}", f"use one of {', '.join(TYPES)}")]
    )


__all__ = ["DEFAULT_LIMIT", "DEFAULT_TIMEOUT", "MAX_LIMIT", "Params", "QueryRefused", "QueryResult", "QueryTimeout",
           "Row", "Warehouse", "open_warehouse", "query_timeout"]
