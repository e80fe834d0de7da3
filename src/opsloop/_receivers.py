"""Receiver processes: ``server.receiver_processes: N`` takes webhooks in N extra processes.

One Python process answers HTTP and runs the event log's writer, the consumers, workflows and model
builds under one interpreter lock; at thousands of webhooks a second the request path waits for that lock.
With receivers, the main process binds the public port and hands it to N receiver processes, which
verify, validate and answer webhooks and pass every other request to the main process on a private
Unix socket. Events still have one writer (the main process's group commit), so ids, seqs and
deduplication work as before, and a receiver acknowledges only what the main process has committed.

The receivers live and die with the main process: they are stopped (and drained) before it stops, and
the kernel kills them if it is killed (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import OpsloopError

if TYPE_CHECKING:
    from .app import App
    from .events.remote import AppendChannel

log = logging.getLogger("opsloop.receivers")


QUICK_EXIT_SECONDS = 10.0
"""A receiver that exits sooner than this after its start counts as failing at start-up."""


def restart_delay(quick_exits: int) -> float:
    """Seconds before a dead receiver is started again: at once after a crash of a receiver that had run
    for a while, then 1, 2, 4 ... up to 30 s while it keeps failing at start-up."""
    return 0.0 if quick_exits <= 0 else min(30.0, 2.0 ** (quick_exits - 1))


def _bind_tcp(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OpsloopError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another with --port") from exc
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class ReceiverPool:
    """The main process's side: the public socket, the private sockets, and the receiver processes."""

    def __init__(self, app: App, count: int, backlog: int = 4096) -> None:
        self.app = app
        self.count = count
        self.public = _bind_tcp(app.settings.host, app.settings.port, backlog)
        self.dir = Path(tempfile.mkdtemp(prefix="opsloop-"))  # mode 0700: only this user can connect
        self.http_path = str(self.dir / "http.sock")
        self.append_path = str(self.dir / "append.sock")
        self.private = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.private.bind(self.http_path)
        self.private.listen(backlog)
        self.channel: AppendChannel | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """After the App started (its group commit runs): open the append channel, start the receivers."""
        from .events.remote import AppendChannel

        self.channel = AppendChannel(self.app.committer, self.append_path)
        await self.channel.start()
        self.procs = [self._spawn(number) for number in range(1, self.count + 1)]
        self._watcher = asyncio.create_task(self._watch(), name="receivers-watch")

    def _spawn(self, number: int) -> subprocess.Popen[bytes]:
        fd = self.public.fileno()
        cmd = [
            sys.executable, "-m", "opsloop._receivers", "--project", str(self.app.project.root),
            "--fd", str(fd), "--dir", str(self.dir), "--parent", str(os.getpid()), "--number", str(number),
        ]
        # its own session: a terminal's Ctrl-C reaches the main process only, which stops the receivers
        # in order (they drain first, while the main process still commits)
        return subprocess.Popen(cmd, pass_fds=(fd,), start_new_session=True)

    async def _watch(self) -> None:
        """A receiver that died (killed, out of memory) is started again; the port never goes unanswered
        for long, and the main process keeps committing what the others accept. One that keeps dying at
        start-up (a project file broken since the server started) is retried ever more slowly."""
        loop = asyncio.get_running_loop()
        started = [loop.time()] * len(self.procs)
        quick_exits = [0] * len(self.procs)
        due: list[float | None] = [None] * len(self.procs)
        while True:
            await asyncio.sleep(0.5)
            now = loop.time()
            for index, proc in enumerate(self.procs):
                if due[index] is None and proc.poll() is not None:
                    quick = now - started[index] < QUICK_EXIT_SECONDS
                    quick_exits[index] = quick_exits[index] + 1 if quick else 0
                    delay = restart_delay(quick_exits[index])
                    log.warning("receiver process %s exited (code %s); starting another in %.1f s",
                                proc.pid, proc.returncode, delay)
                    due[index] = now + delay
                when = due[index]
                if when is not None and now >= when:
                    due[index] = None
                    started[index] = now
                    self.restarts += 1
                    self.procs[index] = self._spawn(index + 1)

    async def stop(self) -> None:
        """Stop taking webhooks: each receiver drains its open requests (still committed here), then exits."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self._wait)
        if self.channel is not None:
            await self.channel.stop()

    def _wait(self) -> None:
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                log.warning("receiver process %s did not stop in 20 s; killing it", proc.pid)
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        self.public.close()
        self.private.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this process when the main one dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="opsloop._receivers")
    parser.add_argument("--project", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--number", type=int, default=1)
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)

    import uvicorn

    from ._server import settle_gc
    from ._subsystems import load_project
    from .events.inbox import Inbox
    from .events.remote import RemoteCommitter
    from .settings import resolve_settings
    from .web.receiver import ReceiverApp, ReceiverHost

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    project = load_project(args.project)
    settings = resolve_settings(project)
    server: uvicorn.Server | None = None

    def lost() -> None:  # the main process went away: stop taking webhooks
        if server is not None:
            server.should_exit = True

    committer = RemoteCommitter(str(Path(args.dir) / "append.sock"), on_lost=lost)
    inbox = Inbox(project, committer, settings.retention_days)
    asgi = ReceiverApp(ReceiverHost(inbox, settings), committer, str(Path(args.dir) / "http.sock"))

    class Receiver(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            await settle_gc()

    config = uvicorn.Config(
        asgi, log_level="warning", access_log=False, timeout_graceful_shutdown=10, lifespan="on",
        proxy_headers=False,  # a client's X-Forwarded-For is its own claim; PassThrough sets the real one
    )
    server = Receiver(config)
    server.run(sockets=[socket.socket(fileno=args.fd)])


if __name__ == "__main__":
    main()
