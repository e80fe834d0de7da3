"""warehouse.query: run a read-only query on the project's warehouse; the rows (as dicts) are the step's result.

The query runs in the same sandbox as `opsloop query` (no host files, network or settings; one read-only
statement; ``OPSLOOP_QUERY_TIMEOUT``), because a step's ``sql`` is a Jinja template and an event's data
rendered into it is a webhook sender's text: put event values in ``params`` (``?`` placeholders).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from ..._json import JsonValue
from ...errors import TerminalError
from ...warehouse import QueryRefused, query_timeout

if TYPE_CHECKING:
    from ..context import Context


class WarehouseQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sql: str
    params: list[object] = []
    max_rows: int = 1000


class QueryTooLarge(TerminalError):
    """A query returned more rows than the step may store."""


class QueryNotAllowed(TerminalError):
    """The step's query does more than read the warehouse (the sandbox refused it); retrying will not help."""


async def query(ctx: Context, params: dict[str, object]) -> list[JsonValue]:
    spec = WarehouseQuery.model_validate(params)
    timeout = query_timeout(ctx.app.project.env)
    try:
        result = await asyncio.to_thread(ctx.app.warehouse.sandboxed_query, spec.sql, spec.max_rows, timeout,
                                         spec.params)
    except QueryRefused as exc:
        raise QueryNotAllowed(f"warehouse.query: {exc}") from exc
    if result.truncated:
        raise QueryTooLarge(
            f"warehouse.query returned more than max_rows={spec.max_rows} rows; aggregate in SQL, "
            "add a LIMIT, or raise max_rows"
        )
    return [{k: _plain(v) for k, v in row.items()} for row in result.as_dicts()]


def _plain(value: object) -> JsonValue:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
