"""The DuckDB warehouse at shutdown: DuckDB refuses to close a connection while a call on one of its
cursors runs (a pull or a build in a worker thread), so ``close()`` waits for that call instead of failing."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from opsloop.warehouse.duckdb import DuckDBWarehouse


def test_close_waits_for_a_call_still_running_on_a_cursor(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    wh.execute("CREATE TABLE t AS SELECT 42 AS answer")
    session = wh.session()
    cursor: Any = getattr(session, "con")
    started, release = threading.Event(), threading.Event()

    def hold() -> int:
        started.set()
        release.wait(30)
        return 1

    cursor.create_function("opsloop_test_hold", hold, [], "INTEGER", side_effects=True)
    answers: list[Any] = []
    busy = threading.Thread(target=lambda: answers.append(
        cursor.execute("SELECT answer + opsloop_test_hold() FROM t").fetchall()))
    busy.start()
    assert started.wait(10)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            wh.close()
        except BaseException as exc:
            errors.append(exc)

    closer = threading.Thread(target=close)
    closer.start()
    closer.join(0.5)
    assert closer.is_alive() and not errors, errors  # waiting for the call, not failing
    release.set()
    busy.join(10)
    closer.join(10)
    assert not closer.is_alive() and errors == [] and answers == [[(43,)]]
    reopened = DuckDBWarehouse(tmp_path / "wh.duckdb")
    assert reopened.query("SELECT answer FROM t").rows == [(42,)]
    reopened.close()
