"""The warehouse adapter contract. One module per engine; shared code reads capability flags."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class Warehouse(ABC):
    """A connection to one warehouse engine."""

    dialect: str = "duckdb"
    """sqlglot dialect name used to generate this engine's SQL."""
    SUPPORTS_ARROW_INSERT: bool = False
    """Bulk loads go through an Arrow table instead of row inserts."""
    SUPPORTS_MERGE: bool = False
    """The engine has MERGE INTO / INSERT ... ON CONFLICT for incremental merges."""
    SINGLE_WRITER: bool = False
    """Only one process may open the warehouse for writing (DuckDB); others go through the server."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> QueryResult: ...

    @abstractmethod
    def insert_arrow(self, table: str, data: Any) -> int:
        """Append an Arrow table to ``table`` (schema-qualified); returns rows written."""

    @abstractmethod
    def close(self) -> None: ...
