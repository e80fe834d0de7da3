"""Hostile and malformed input against a real `opsloop up` (a subprocess), with and without a receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from opsloop import load_project
from opsloop.events.signatures import SignedRequest, make_preset

from ..conftest import free_port
from ..test_cli_server import UpProcess


@dataclass
class Running:
    """A running `opsloop up` and what a test needs to talk to it."""

    root: Path
    proc: UpProcess
    token: str
    sign: Callable[[bytes], dict[str, str]]

    @property
    def url(self) -> str:
        return self.proc.url

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=15)

    def hook(self, body: bytes, endpoint: str = "demo_request", **extra: str) -> httpx.Response:
        """POST ``body`` to a webhook endpoint, signed with the project's secret."""
        headers = {**self.sign(body), "content-type": "application/json", **extra}
        return httpx.post(f"{self.url}/hooks/{endpoint}", content=body, headers=headers, timeout=15)

    def good_event(self, email: str) -> str:
        """Send a normal demo request; returns its event id."""
        body = json.dumps({"email": email, "name": "Grace Hopper", "company": "Navy"}).encode()
        answer = self.hook(body)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])


def signer(root: Path) -> Callable[[bytes], dict[str, str]]:
    project = load_project(root)
    cfg = project.endpoints["demo_request"]
    preset = make_preset(cfg.signature, project.secret(cfg.signature.secret_env or ""))
    counter = iter(range(1, 10**9))

    def sign(body: bytes) -> dict[str, str]:
        msg_id = f"msg_{time.time_ns()}_{next(counter)}"
        return preset.sign(SignedRequest(body, {"webhook-id": msg_id}), time.time())

    return sign


def start(root: Path, *extra: str) -> Running:
    project = load_project(root)
    return Running(root, UpProcess(root, free_port(), *extra), project.env["OPSLOOP_API_TOKEN"], signer(root))


@pytest.fixture(params=["main", "receiver"])
def up(request: pytest.FixtureRequest, project_dir: Path) -> Iterator[Running]:
    """`opsloop up` on a fresh `opsloop init` project: alone, and with one receiver process in front."""
    extra = ("--receivers", "1") if request.param == "receiver" else ()
    running = start(project_dir, *extra)
    try:
        yield running
    finally:
        running.proc.stop()
