"""Schemathesis fuzzes every API route of a real server (the saas example, its vendors stood in for on
127.0.0.1) from the server's own OpenAPI document: no 5xx, every answer as the document says, and every
schema-breaking request refused with a 4xx."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import ServerThread, make_app
from ._fuzz import SKIPPED, example_project, fuzz, prepare

EXAMPLES = 15
"""At most this many cases per operation, schema-valid and schema-breaking (a route without parameters
has only a few distinct ones): about 340 requests, 31 s on this 2-core machine (105 s at load 15)."""


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(tmp_path: Path) -> None:
    with example_project(tmp_path / "saas") as root, ServerThread(make_app(root)) as server:
        prepare(root, server.url, server.token)
        report = fuzz(server.url, server.token, EXAMPLES, strict=True)
        alive = server.api().get("/api/status")
    print(report.summary())
    assert alive.status_code == 200, "the server stopped answering after the fuzz"
    assert report.server_errors == 0, report.failures
    assert report.failures == []
    # it reached every operation, and got past validation to real work
    assert report.operations == len(report.by_operation) >= 29
    assert report.requests >= report.operations * 10
    assert sum(n for code, n in report.statuses.items() if 200 <= code < 300) >= report.operations
    assert set(SKIPPED) == {"GET /api/dashboards/{name}/events"}
