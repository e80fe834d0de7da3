"""The append channel between receiver processes and the main ``opsloop up`` process.

A receiver process verifies, validates and redacts webhooks like the main process does, then hands the
events to the main process over a Unix socket; the main process appends them through its group commit
(deduplication, ids, seqs, the one writer of the event log) and answers with each event's result. A
receiver acknowledges a webhook only after that answer, so the durability is the main process's.

Frames: a 4-byte big-endian length, then a marshalled ``(request id, [event as a tuple, ...])`` one way
and ``(request id, [(0, event id, seq, duplicate of) | (1, message, retry after), ...])`` back. The socket
lives in a private directory (mode 0700) made by the main process, so only its own user can connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import ServerBusy
from ..state import AppendResult, NewEvent
from .committer import GroupCommitter

log = logging.getLogger("opsloop.receivers")
_FRAME = struct.Struct("!I")
_UNREACHABLE = "the main opsloop process is not reachable; retry shortly"
_FIELDS = ("id", "name", "received_at", "status", "endpoint", "idempotency_key", "headers", "body", "payload",
           "error", "source", "related_id", "expires_at", "dedupe_until", "payload_text")


def _pack(rid: int, items: list[tuple[object, ...]] | list[object]) -> bytes:
    """A frame: its request id and its events (to the main process) or their answers (back)."""
    data = marshal.dumps((rid, items))
    return _FRAME.pack(len(data)) + data


def to_wire(event: NewEvent) -> tuple[object, ...]:
    """An event as plain values (marshal is several times faster than pickling the dataclass)."""
    values = [getattr(event, f) for f in _FIELDS]
    if event.payload_text is not None:
        values[8] = None  # the main process stores payload_text; the parsed copy need not travel
    return tuple(values)


def from_wire(values: tuple[Any, ...]) -> NewEvent:
    """The event ``to_wire`` made (``values`` come from ``marshal.loads``: each field's own type)."""
    return NewEvent(**dict(zip(_FIELDS, values, strict=True)))


class _Reply:
    """One frame's answers, sent back when all of its events have an outcome (on the writer thread)."""

    def __init__(self, conn: _Connection, rid: int, size: int) -> None:
        self.conn, self.rid = conn, rid
        self.answers: list[object] = [None] * size
        self.left = size
        self.lock = threading.Lock()

    def deliver(self, outcomes: list[tuple[object, AppendResult | BaseException]]) -> None:
        with self.lock:
            for index, outcome in outcomes:
                assert isinstance(index, int)  # the keys are the events' places in the frame (``_serve``)
                if isinstance(outcome, AppendResult):
                    self.answers[index] = (0, outcome.event_id, outcome.seq, outcome.duplicate_of)
                else:
                    retry = outcome.retry_after if isinstance(outcome, ServerBusy) else 2.0
                    self.answers[index] = (1, f"{type(outcome).__name__}: {outcome}", retry or 1.0)
            self.left -= len(outcomes)
            done = self.left == 0
        if done:
            self.conn.send(_pack(self.rid, self.answers))


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self.lock, contextlib.suppress(OSError):  # the receiver is gone: it acknowledged nothing more
            self.sock.sendall(data)

    def read(self, size: int) -> bytes | None:
        chunks, left = [], size
        while left:
            chunk = self.sock.recv(min(left, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class AppendChannel:
    """Main-process side: a thread per receiver connection reads frames and queues their events straight
    into the group commit; the writer thread sends each frame's answers after the commit. The event loop
    is not involved, so webhooks from receivers do not wait on it."""

    def __init__(self, committer: GroupCommitter, path: str) -> None:
        self.committer = committer
        self.path = path
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: list[_Connection] = []

    async def start(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(64)
        self._listener = listener
        self._spawn(self._accept, "opsloop-append-accept")

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    async def stop(self) -> None:
        """Stop listening and reading (the receivers have stopped); queued events are still committed."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RD)

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            conn = _Connection(sock)
            self._conns.append(conn)
            self._spawn(self._serve, "opsloop-append-read", conn)

    def _serve(self, conn: _Connection) -> None:
        try:
            while (head := conn.read(_FRAME.size)) is not None:
                data = conn.read(_FRAME.unpack(head)[0])
                if data is None:
                    return
                start = time.thread_time()
                rid, wire = marshal.loads(data)  # noqa: S302 (our own receivers, private socket)
                reply = _Reply(conn, rid, len(wire))
                for index, values in enumerate(wire):
                    try:
                        self.committer.put(from_wire(values), reply, index)
                    except ServerBusy as exc:
                        reply.deliver([(index, exc)])
                self.committer.clock.add("channel", time.thread_time() - start, len(wire))
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                conn.sock.close()


class RemoteCommitter:
    """Receiver side: ``submit`` like a ``GroupCommitter``; events queued in one loop turn go in one frame."""

    def __init__(self, path: str, on_lost: Callable[[], None] | None = None) -> None:
        self.path = path
        self.on_lost = on_lost
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: list[tuple[object, ...]] = []
        self._pending_futures: list[asyncio.Future[AppendResult]] = []
        self._waiting: dict[int, list[asyncio.Future[AppendResult]]] = {}
        self._next_id = 0

    async def connect(self, timeout: float = 30.0) -> None:
        """Connect to the main process, retrying until ``timeout`` (it may still be starting)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path, limit=1 << 24)
                break
            except OSError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read_answers(reader))

    async def close(self) -> None:
        self.on_lost = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task
            self._reader_task = None

    async def submit(self, event: NewEvent) -> AppendResult:
        if self._writer is None or self._writer.is_closing():
            raise ServerBusy(_UNREACHABLE, retry_after=2.0)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AppendResult] = loop.create_future()
        self._pending.append(to_wire(event))
        self._pending_futures.append(future)
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        events, futures = self._pending, self._pending_futures
        self._pending, self._pending_futures = [], []
        if not events:
            return
        if self._writer is None or self._writer.is_closing():
            _fail_all(futures)
            return
        self._next_id += 1
        self._waiting[self._next_id] = futures
        self._writer.write(_pack(self._next_id, events))

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (size,) = _FRAME.unpack(await reader.readexactly(_FRAME.size))
                rid, answers = marshal.loads(await reader.readexactly(size))  # noqa: S302
                for future, answer in zip(self._waiting.pop(rid, []), answers, strict=False):
                    if future.done():
                        continue
                    if answer[0] == 0:
                        future.set_result(AppendResult(answer[1], answer[2], answer[3]))
                    else:
                        future.set_exception(ServerBusy(answer[1], retry_after=answer[2]))
        except (asyncio.IncompleteReadError, ConnectionError):
            log.warning("the main opsloop process closed the append channel")
        finally:
            for futures in self._waiting.values():
                _fail_all(futures)
            self._waiting.clear()
            if self._writer is not None:
                self._writer.close()
            if self.on_lost is not None:
                self.on_lost()


def _fail_all(futures: list[asyncio.Future[AppendResult]]) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(ServerBusy(_UNREACHABLE, 2.0))
