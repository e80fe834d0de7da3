"""``type: sql_database`` — tables from Postgres (psycopg) or MySQL/MariaDB (PyMySQL), read in chunks
through a server-side cursor, each chunk one Arrow table.

Incremental by a column (``incremental: updated_at``): ``WHERE col >= cursor ORDER BY col`` (``>`` for
append-only tables without a key, so boundary rows are not repeated); with a primary key the merge
makes re-read boundary rows harmless, and rows committed late with an equal value are not missed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa

from .._errors import SourceAuthError, SourceRequestError, SourceUnavailable
from ..config import SqlDatabaseSource, SqlTable
from .base import Page, PullContext, Stream


def _keys(value: list[str] | str | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _to_arrow(names: list[str], rows: list[tuple[object, ...]]) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    for i, name in enumerate(names):
        values = [r[i] for r in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            columns[name] = pa.array([None if v is None else (v if isinstance(v, str) else
                                      json.dumps(v, default=str)) for v in values], type=pa.string())
    return pa.table(columns)


def _jsonable(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, int | float | str) or value is None:
        return value
    return str(value)


def _restore(value: object) -> object:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _minus(value: object, lag: float) -> object:
    if not lag:
        return value
    if isinstance(value, datetime):
        return value - timedelta(seconds=lag)
    if isinstance(value, int | float):
        return value - lag
    return value


class SqlConnector:
    def __init__(self, config: SqlDatabaseSource, ctx: PullContext) -> None:
        self.config = config
        self.ctx = ctx
        scheme = config.connection.split(":", 1)[0].split("+", 1)[0]
        self.mysql = scheme in ("mysql", "mariadb")
        self.conn = self._connect()

    def _connect(self) -> Any:  # a DB-API connection: psycopg's or PyMySQL's
        url = self.config.connection
        where = urlsplit(url)
        safe = f"{where.scheme}://{where.hostname}:{where.port or ''}{where.path}"
        try:
            if self.mysql:
                import pymysql

                return pymysql.connect(
                    host=where.hostname or "127.0.0.1", port=where.port or 3306, user=unquote(where.username or ""),
                    password=unquote(where.password or ""), database=where.path.lstrip("/") or None,
                    charset="utf8mb4",
                )
            import psycopg

            return psycopg.connect(url.replace("postgres://", "postgresql://", 1), connect_timeout=10)
        except Exception as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if any(w in text.lower() for w in ("password", "authentication", "access denied", "role")):
                raise SourceAuthError(f"source {self.ctx.source!r}: the database at {safe} refused the "
                                      f"credentials ({text}); check connection: in the source's YAML") from exc
            raise SourceUnavailable(f"source {self.ctx.source!r}: cannot connect to {safe}: {text}") from exc

    def _quote(self, name: str) -> str:
        q = "`" if self.mysql else '"'
        return ".".join(q + part.replace(q, q + q) + q for part in name.split("."))

    def streams(self) -> list[Stream]:
        out = []
        for t in self.config.tables:
            keys = _keys(t.primary_key)
            default = "merge" if keys else ("append" if t.incremental else "replace")
            out.append(Stream(t.name, keys, t.write_disposition or default, options={"table": t}))
        return out

    def read(self, stream: Stream, cursor: object) -> Iterator[Page]:
        spec = stream.options["table"]
        if not isinstance(spec, SqlTable):
            raise TypeError(f"stream {stream.name!r} has no table spec")
        sql = f"SELECT * FROM {self._quote(spec.table or spec.name)}"
        params: list[object] = []
        if spec.incremental:
            column = self._quote(spec.incremental)
            if cursor is not None:
                op = ">=" if stream.primary_key else ">"
                sql += f" WHERE {column} {op} %s"
                params.append(_minus(_restore(cursor), self.ctx.lag))
            sql += f" ORDER BY {column}"
        if self.mysql:
            import pymysql.cursors

            cur = self.conn.cursor(pymysql.cursors.SSCursor)
        else:
            cur = self.conn.cursor(name=f"opsloop_{stream.name}")
        newest = cursor
        try:
            try:
                cur.execute(sql, params)
            except Exception as exc:
                raise SourceRequestError(f"source {self.ctx.source!r}: the query for {stream.name!r} failed: "
                                         f"{str(exc).strip().splitlines()[0]}") from exc
            names: list[str] | None = None
            while True:
                rows = cur.fetchmany(self.config.chunk_size)
                if names is None:
                    names = [d[0] for d in cur.description]
                if not rows:
                    break
                table = _to_arrow(names, rows)
                if spec.incremental and spec.incremental in names:
                    value = rows[-1][names.index(spec.incremental)]
                    if value is not None:
                        newest = _jsonable(value)
                yield Page(table, cursor=newest if spec.incremental else None)
        finally:
            cur.close()
            if not self.mysql:
                self.conn.rollback()

    def close(self) -> None:
        self.conn.close()


def build(config: SqlDatabaseSource, ctx: PullContext) -> SqlConnector:
    return SqlConnector(config, ctx)
