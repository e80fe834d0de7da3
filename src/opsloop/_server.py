"""``opsloop up``: run the ASGI app under uvicorn; SIGINT/SIGTERM drain requests and stop cleanly."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from .errors import OpsloopError

if TYPE_CHECKING:
    import uvicorn

    from .app import App


def server_file(root: Path) -> Path:
    return root / "state" / "server.json"


HARD_STOP = 18.0
"""Seconds after SIGTERM/SIGINT by which the process has exited, whatever still runs: inside systemd's
TimeoutStopSec (20 s, docs/deploy.md), so a stop is never a SIGKILL. A clean stop takes well under a second:
open responses get ``GRACEFUL`` s, long jobs stop at their next safe point (``App.halt``)."""

GRACEFUL = 5
"""Seconds uvicorn waits for open responses after a stop begins (server push ends at once on ``App.stopping``)."""


def _overdue() -> None:
    """The stop took longer than ``HARD_STOP``: exit now (what was committed stays; what was in flight is
    redone at the next start, as after a crash)."""
    import faulthandler

    sys.stderr.write(f"opsloop did not stop within {HARD_STOP:.0f} s; exiting now (work in flight is redone at "
                     "the next start). What was still running, for a bug report:\n")
    sys.stderr.flush()
    faulthandler.dump_traceback(sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(1)


def uvicorn_server(config: uvicorn.Config, app: App,
                   before_shutdown: Callable[[], Awaitable[None]] | None = None) -> uvicorn.Server:
    """A uvicorn server that tells ``app`` when a stop begins, before uvicorn waits for open responses;
    ``before_shutdown`` is awaited while it still serves (the receiver processes drain then)."""
    import uvicorn

    class Server(uvicorn.Server):
        watchdog: threading.Timer | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            app.begin_shutdown()
            if self.watchdog is None:
                self.watchdog = threading.Timer(HARD_STOP, _overdue)
                self.watchdog.daemon = True
                self.watchdog.start()
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if before_shutdown is not None:
                await before_shutdown()
            await super().shutdown(sockets)

    return Server(config)


async def settle_gc() -> None:
    """After start-up, keep the garbage collector off the request path.

    Everything loaded at start (project, schemas, modules) is frozen out of collection, and young-generation
    collections run every 20,000 allocations instead of 700: at thousands of requests a second the default
    spends its pauses re-scanning long-lived objects, which showed as the p99 latency of webhook requests
    (bench/ingest.py: p99 46-56 ms before, 32-39 ms after).
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def serve(
    project_dir: Path, host: str | None = None, port: int | None = None, role: str = "all",
    receivers: int | None = None,
) -> None:
    import uvicorn

    from .app import App
    from .settings import usable_cores
    from .web import create_asgi

    if role not in ("all", "receiver", "worker", "scheduler"):
        raise OpsloopError(f"unknown role {role!r}: use all, receiver, worker or scheduler")
    app = App.from_path(project_dir, host=host, port=port, role=role, receiver_processes=receivers)
    if not app.settings.api_token:
        raise OpsloopError(
            "OPSLOOP_API_TOKEN is not set: add OPSLOOP_API_TOKEN=<a long random string> to the project's .env "
            "(opsloop init writes one)"
        )
    if role != "all" and not app.settings.state_url.startswith(("postgresql://", "postgres://")):
        raise OpsloopError(
            f"--role {role} runs opsloop as several processes, which share a Postgres state store: set state.url "
            "in opsloop.yml (or OPSLOOP_STATE_URL) to postgresql://..., or use --role all"
        )
    receivers = app.settings.receivers()
    if receivers and role != "all":
        raise OpsloopError("server.receiver_processes works with --role all; past one machine, run more "
                           "--role receiver processes instead")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asgi = create_asgi(app)
    app.on_start.append(settle_gc)
    pool = None
    if receivers:
        from ._receivers import ReceiverPool

        pool = ReceiverPool(app, receivers)
        app.on_start.append(pool.start)
    info = server_file(app.project.root)
    info.parent.mkdir(parents=True, exist_ok=True)
    info.write_text(json.dumps({"pid": os.getpid(), "host": app.settings.host, "port": app.settings.port}))
    extra = f", {receivers} receiver process(es)" if receivers else ""
    if app.settings.receiver_processes == "auto":
        extra += f", receiver_processes auto on {usable_cores()} core(s)"
    print(
        f"opsloop serving {app.project.config.name} on http://{app.settings.host}:{app.settings.port} "
        f"(role {role}{extra})",
        flush=True,
    )
    config = uvicorn.Config(
        asgi,
        host=app.settings.host,
        port=app.settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL,
        lifespan="on",
        backlog=4096,
        proxy_headers=False,  # X-Forwarded-For is believed only from our receivers (web.auth.client_address)
    )
    # uvicorn drains requests on SIGINT/SIGTERM, restores these handlers, then re-raises the signal;
    # ours turn that re-raise into a normal exit (code 0) after a clean stop.
    stopped: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stopped.append(signum))
    try:
        if pool is None:
            uvicorn_server(config, app).run()
        else:
            # the main process serves the receivers on its private socket; they serve the public port
            uvicorn_server(config, app, before_shutdown=pool.stop).run(sockets=[pool.private])
    finally:
        info.unlink(missing_ok=True)
        if pool is not None:
            pool.close()
    if stopped:
        print("opsloop stopped cleanly", flush=True)
