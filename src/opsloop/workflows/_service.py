"""Plug the workflow engine into an App: its consumer, workers, scheduler and web routes."""

from __future__ import annotations

from typing import Any

from .engine import Engine


def attach(app: Any) -> None:
    engine = Engine(app)
    app.services["workflows"] = engine
    app.on_start.append(engine.start)
    app.on_stop.append(engine.stop)
    from .web import routes

    app.web_routes.extend(routes(app))
