"""``opsloop demo``: the example company on a laptop with no accounts.

Writes the example project (``opsloop init --example saas``) if the folder is empty, backfills sample
history into the warehouse, serves it, and generates traffic while you watch. Sandbox destinations
record what would have been sent (Slack, the CRM, the support tool, email) in the outbox.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import App
    from ..settings import SettingsOverrides

Step = Callable[[str | None], None]
"""``run_demo(..., on_step=callback)``: ``callback("loading sample history")`` as each step of the start
begins, and ``callback(None)`` once the demo is up (before it prints its URL)."""

HISTORY_KEY = "demo.history_loaded"


DEMO_TIME_SCALE = 0.02
"""The demo runs the example's timers 50x faster: the 15-minute demo-request SLA is missed after 18 s."""


def run_demo(directory: Path, port: int = 8620, host: str = "127.0.0.1", duration: float | None = None,
             rate: float = 0.5, history_days: int = 120, time_scale: float | None = None,
             on_step: Step | None = None) -> None:
    def step(text: str | None) -> None:
        if on_step is not None:
            on_step(text)

    import uvicorn

    from .._server import uvicorn_server
    from ..app import App
    from ..project.scaffold import init_project
    from ..web import create_asgi
    from .history import build_history, load_history
    from .traffic import Traffic

    if not (directory / "opsloop.yml").exists():
        step("writing the example company")
        init_project(directory, example="saas")
        print(f"Wrote the example company to {directory}/", flush=True)
    overrides: SettingsOverrides = {"port": port, "host": host}
    if time_scale is not None or not os.environ.get("OPSLOOP_TIME_SCALE"):
        overrides["time_scale"] = DEMO_TIME_SCALE if time_scale is None else time_scale
    step("opening the project")
    app = App.from_path(directory, **overrides)
    first_run = app.store.kv_get(HISTORY_KEY) is None
    if first_run:
        step(f"making {history_days} days of sample history")
        rows, _people = build_history(days=history_days)
        step(f"loading {len(rows):,} events of sample history into the warehouse")
        loaded = load_history(app.warehouse, rows)
        app.store.kv_set(HISTORY_KEY, str(loaded))
        print(f"Loaded {loaded} events of sample history ({history_days} days) into raw.events", flush=True)
    step("starting the server")
    asgi = create_asgi(app)
    url = f"http://{host}:{port}"
    config = uvicorn.Config(asgi, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=3)  # open dashboards (server push) must not hold Ctrl-C
    server = uvicorn_server(config, app)

    async def main() -> None:
        stop = asyncio.Event()
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                await serving
                return
            await asyncio.sleep(0.05)
        await build_models(app, baseline=first_run, on_step=step)
        step(None)
        print(f"opsloop demo is running: {url}/", flush=True)
        print(f"  dashboard: {url}/dashboards/overview   outbox: {url}/outbox", flush=True)
        print(f"log in with the token: {app.settings.api_token}", flush=True)
        print("traffic: demo requests, claims, purchases, churns and profile edits; Ctrl-C stops", flush=True)
        start = 900_000 + app.store.count_events()  # new people (and Stripe event ids) on every run
        traffic = Traffic(app, url, seed=start, first_key=start)
        generator = asyncio.create_task(traffic.run(rate, stop))
        if duration is not None:
            try:
                await asyncio.wait_for(asyncio.shield(serving), timeout=duration)
            except TimeoutError:
                stop.set()  # let the traffic finish its last request before the server stops
                await generator
                server.should_exit = True
        await serving
        stop.set()
        await generator
        count = app.store.count_events()
        app.close()
        sent = ", ".join(f"{k}: {v}" for k, v in sorted(traffic.state.sent.items()))
        print(f"demo stopped; {count} events in the log ({sent})", flush=True)

    # uvicorn stops cleanly on Ctrl-C / SIGTERM, then re-raises the signal once its handlers are restored:
    # these handlers absorb that re-raise so the closing summary is printed and the exit code is 0.
    previous = {sig: signal.signal(sig, lambda _signum, _frame: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(main())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def build_models(app: App, baseline: bool = False, on_step: Step | None = None) -> None:
    """Build seeds and models once inside the running server, so ``model.built`` events start the identity
    build, segments and dashboards (later rebuilds happen by themselves as events land).

    With ``baseline`` (the first run), the identity graph is built now and the syncs are reset to it, so
    the sample history's people are treated as already in the CRM and the support tool: the outbox then
    shows only what the live traffic changes, not a first upload of everyone."""
    if "models" not in app.services:
        return
    if on_step is not None:
        on_step("building the models")
    try:
        results = await app.models.build_async()
    except Exception as exc:  # the demo still serves; the error is shown
        print(f"building the models failed: {exc}", flush=True)
        return
    failed = [r for r in results if r.status in ("error", "fail")]
    if baseline and "identity" in app.services and "syncs" in app.services and app.identity.project.config:
        if on_step is not None:
            on_step("building the identity graph and resetting the syncs to it")
        try:
            await asyncio.to_thread(app.identity.build)
            for name in list(app.syncs.syncs):
                await app.syncs.run_now(name, reset=True)
        except Exception as exc:
            print(f"the identity baseline failed: {exc}", flush=True)
    print(f"Built {len(results)} seeds, models and tests" + (f"; {len(failed)} failed: " + ", ".join(
        f"{r.name} ({getattr(r, 'message', '')})" for r in failed) if failed else ""), flush=True)
