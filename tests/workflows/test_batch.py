"""The group-commit batcher outlives a write that loses its run's lease, and a failed read leaves no trace."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsloop.state import StateStore, open_store
from opsloop.workflows._batch import WriteBatcher
from opsloop.workflows.engine import LeaseLost


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    url = f"sqlite:///{tmp_path}/state.sqlite" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = open_store(url)
    s.migrate()
    with s.transaction() as cur:
        s.execute(cur, "CREATE TABLE batch_probe (k TEXT PRIMARY KEY)")
    yield s
    s.close()


def test_a_lost_lease_fails_its_own_write_only_and_the_batcher_goes_on(store: StateStore) -> None:
    def insert(key: str) -> Any:
        def write(cur: Any) -> str:
            store.execute(cur, "INSERT INTO batch_probe (k) VALUES (?)", (key,))
            return key
        return write

    def lost(cur: Any) -> None:
        store.execute(cur, "INSERT INTO batch_probe (k) VALUES ('lost')")
        raise LeaseLost("run_x")  # what the engine's fence raises when another worker took the run over

    async def main() -> list[Any]:
        batch = WriteBatcher(store)
        batch.start()
        try:
            # one batch holding good writes and the lost one
            first = await asyncio.wait_for(asyncio.gather(
                batch.submit(insert("a")), batch.submit(lost), batch.submit(insert("b")), return_exceptions=True,
            ), 10)
            # the batcher is still there: a later write commits (before the fix it waited for ever)
            later = await asyncio.wait_for(batch.submit(insert("c")), 10)
            return [*first, later]
        finally:
            await batch.stop()

    a, failed, b, c = asyncio.run(main())
    assert (a, b, c) == ("a", "b", "c")
    assert isinstance(failed, LeaseLost)
    assert sorted(r[0] for r in store.query("SELECT k FROM batch_probe")) == ["a", "b", "c"]


def test_a_failed_read_does_not_poison_the_threads_next_reads(store: StateStore) -> None:
    with pytest.raises(Exception, match="no_such_table"):
        store.query("SELECT * FROM no_such_table")
    assert store.query("SELECT count(*) FROM batch_probe") == [(0,)]
