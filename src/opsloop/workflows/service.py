"""Plug the workflow engine into an App: its consumer, workers and scheduler (its web routes:
``opsloop.web.api_workflows``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .engine import Engine

if TYPE_CHECKING:
    from ..app import App


def attach(app: App) -> None:
    engine = Engine(app)
    app.services["workflows"] = engine
    app.on_start.append(engine.start)
    app.on_stop.append(engine.stop)
