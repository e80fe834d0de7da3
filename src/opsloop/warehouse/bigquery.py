"""BigQuery (optional extra ``opsloop[bigquery]``); the client is imported only when connecting.

Schemas are BigQuery datasets. BigQuery has no ``CREATE SCHEMA IF NOT EXISTS`` semantics differences
that matter here, and DML MERGE is supported.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..errors import WarehouseError
from .base import Params, QueryResult, Row, Warehouse

if TYPE_CHECKING:
    import pyarrow as pa
    from google.cloud.bigquery import Client


class BigQueryWarehouse(Warehouse):
    dialect = "bigquery"
    SUPPORTS_MERGE = True
    CREATE_OR_REPLACE_TABLE = True
    PARALLEL_SESSIONS = False

    def __init__(self, options: dict[str, object]) -> None:
        self.options = options
        self.default_schema = str(options.get("dataset") or "analytics")
        self._client: Client | None = None
        self._lock = threading.RLock()

    @property
    def client(self) -> Client:
        if self._client is None:
            try:
                from google.cloud import bigquery
            except ImportError as exc:
                raise WarehouseError("the BigQuery warehouse needs `pip install 'opsloop[bigquery]'`") from exc
            self._client = bigquery.Client(project=self.options.get("project"))
        return self._client

    def execute(self, sql: str, params: Params = ()) -> None:
        self.query(sql, params)

    def query(self, sql: str, params: Params = ()) -> QueryResult:
        if params:
            raise WarehouseError("the BigQuery adapter takes no positional parameters")
        with self._lock:
            try:
                job = self.client.query(sql)
                result = job.result()
            except Exception as exc:
                raise WarehouseError(str(exc)) from exc
            columns = [f.name for f in result.schema] if result.schema else []
            rows: list[Row] = [tuple(r.values()) for r in result]
        return QueryResult(columns, rows)

    def relations(self) -> dict[tuple[str, str], str]:
        out: dict[tuple[str, str], str] = {}
        for dataset in self.client.list_datasets():
            for table in self.client.list_tables(dataset.dataset_id):
                kind = "view" if table.table_type == "VIEW" else "table"
                out[(dataset.dataset_id.lower(), table.table_id.lower())] = kind
        return out

    def columns(self, schema: str, name: str) -> list[tuple[str, str]]:
        table = self.client.get_table(f"{schema}.{name}")
        return [(f.name, f.field_type) for f in table.schema]

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        with self._lock:
            job = self.client.load_table_from_dataframe(data.to_pandas(), table.replace("`", ""))
            job.result()
        return int(data.num_rows)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
