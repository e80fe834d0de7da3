"""Fixtures for workflow tests: a project with workflow files, a fake Slack, helpers to emit and wait."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from opsloop._ids import new_id
from opsloop.state import NewEvent
from opsloop.workflows import runs

from ..conftest import ServerThread, wait_for
from .fake_slack import TOKEN, FakeSlack


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def use_slack(root: Path, slack: FakeSlack, pace: float = 0) -> None:
    with (root / ".env").open("a", encoding="utf-8") as env:
        env.write(f"SLACK_BOT_TOKEN={TOKEN}\nSLACK_API_URL={slack.url}\nSLACK_PACE={pace}\n")


def emit(srv: ServerThread, name: str, data: Any) -> str:
    """Append an event to the log the way app.emit does, from the test thread."""
    event = NewEvent(id=new_id("evt_"), name=name, received_at=time.time(), payload=data, source="test")
    srv.app.store.append_events([event])
    srv.app.bus.notify()
    return event.id


def runs_of(srv: ServerThread, workflow: str | None = None) -> list[runs.RunRow]:
    return runs.list_runs(srv.app.store, workflow=workflow, limit=1000)


def wait_runs(srv: ServerThread, count: int, status: str = "completed", workflow: str | None = None,
              timeout: float = 20) -> list[runs.RunRow]:
    def done() -> list[runs.RunRow] | None:
        found = [r for r in runs_of(srv, workflow) if r.status == status]
        return found if len(found) >= count else None

    result: list[runs.RunRow] = wait_for(done, timeout, what=f"{count} {status} runs")
    return result


@pytest.fixture
def start(server_factory: Callable[..., ServerThread]) -> Callable[..., ServerThread]:
    return server_factory
