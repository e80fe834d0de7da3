"""The outbox records what sandbox destinations would send; updates happen in place."""

from __future__ import annotations

from pathlib import Path

from opsloop import outbox
from opsloop.state import open_store


def test_record_update_list(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.sqlite")
    first = outbox.record(store, "slack", "chat.postMessage", {"text": "New demo request"}, target="#sales")
    outbox.record(store, "hubspot", "upsert", {"phone": "+1"}, key="a@b.co")
    assert outbox.update(store, first, {"text": "SLA breached"}, action="chat.update")
    item = outbox.get(store, first)
    assert item is not None and item.version == 2 and item.payload == {"text": "SLA breached"}
    assert [i.destination for i in outbox.list_items(store)] == ["slack", "hubspot"]
    assert [i.id for i in outbox.list_items(store, "slack")] == [first]
    assert not outbox.update(store, "out_missing", {})
    store.close()
