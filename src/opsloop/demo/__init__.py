"""``opsloop demo``: the example company on a laptop with no accounts.

Writes the example project (``opsloop init --example saas``) if the folder is empty, backfills sample
history into the warehouse, serves it, and generates traffic while you watch. Sandbox destinations
record what would have been sent (Slack, the CRM, the support tool, email) in the outbox.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

HISTORY_KEY = "demo.history_loaded"


def run_demo(directory: Path, port: int = 8620, host: str = "127.0.0.1", duration: float | None = None,
             rate: float = 0.5, history_days: int = 120) -> None:
    import uvicorn

    from ..app import App
    from ..project.scaffold import init_project
    from ..web import create_asgi
    from .history import build_history, load_history
    from .traffic import Traffic

    if not (directory / "opsloop.yml").exists():
        init_project(directory, example="saas")
        print(f"Wrote the example company to {directory}/", flush=True)
    app = App.from_path(directory, port=port, host=host)
    if app.store.kv_get(HISTORY_KEY) is None:
        rows, _people = build_history(days=history_days)
        loaded = load_history(app.warehouse, rows)
        app.store.kv_set(HISTORY_KEY, str(loaded))
        print(f"Loaded {loaded} events of sample history ({history_days} days) into raw.events", flush=True)
    models = app.services.get("models")
    if models is not None and hasattr(models, "build"):
        try:
            models.build()
        except Exception as exc:  # the demo still serves; the error is shown
            print(f"building the models failed: {exc}", flush=True)
    asgi = create_asgi(app)
    url = f"http://{host}:{port}"
    config = uvicorn.Config(asgi, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)

    async def main() -> None:
        stop = asyncio.Event()
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                await serving
                return
            await asyncio.sleep(0.05)
        print(f"opsloop demo is running: {url}/", flush=True)
        print(f"log in with the token: {app.settings.api_token}", flush=True)
        print("traffic: demo requests, claims, purchases, churns and profile edits; Ctrl-C stops", flush=True)
        traffic = Traffic(app, url)
        generator = asyncio.create_task(traffic.run(rate, stop))
        if duration is not None:
            try:
                await asyncio.wait_for(asyncio.shield(serving), timeout=duration)
            except TimeoutError:
                server.should_exit = True
        await serving
        stop.set()
        await generator
        count = app.store.count_events()
        app.close()
        sent = ", ".join(f"{k}: {v}" for k, v in sorted(traffic.state.sent.items()))
        print(f"demo stopped; {count} events in the log ({sent})", flush=True)

    asyncio.run(main())
