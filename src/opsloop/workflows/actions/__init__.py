"""Built-in actions for workflow steps. Each is ``async fn(ctx, params) -> JSON result`` plus a params model.

YAML steps name them (``slack.post: {...}``); Python workflows call ``ctx.action("slack.post", ...)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ..._json import JsonValue
from ...errors import TerminalError
from . import email, http, slack, warehouse

if TYPE_CHECKING:
    from ..context import Context

Action = Callable[["Context", dict[str, object]], Awaitable[JsonValue]]

ACTIONS: dict[str, tuple[Action, type[BaseModel]]] = {
    "slack.post": (slack.post, slack.SlackPost),
    "slack.update": (slack.update, slack.SlackUpdate),
    "email.send": (email.send, email.EmailSend),
    "http.request": (http.request, http.HttpRequest),
    "warehouse.query": (warehouse.query, warehouse.WarehouseQuery),
}


class UnknownAction(TerminalError):
    """No built-in action has that name."""


def get_action(kind: str) -> Action:
    if kind not in ACTIONS:
        raise UnknownAction(f"unknown action {kind!r}; actions: {', '.join(sorted(ACTIONS))}")
    return ACTIONS[kind][0]
