"""warehouse.query: run SQL on the project's warehouse; the rows (as dicts) are the step's result."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ...errors import TerminalError

if TYPE_CHECKING:
    from ..context import Context


class WarehouseQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sql: str
    params: list[Any] = []
    max_rows: int = 1000


class QueryTooLarge(TerminalError):
    """A query returned more rows than the step may store."""


async def query(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    spec = WarehouseQuery.model_validate(params)
    result = await asyncio.to_thread(ctx.app.warehouse.query, spec.sql, spec.params)
    if len(result.rows) > spec.max_rows:
        raise QueryTooLarge(
            f"warehouse.query returned {len(result.rows)} rows, over max_rows={spec.max_rows}; aggregate in SQL, "
            "add a LIMIT, or raise max_rows"
        )
    return [{k: _plain(v) for k, v in row.items()} for row in result.as_dicts()]


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
