"""docs/identity.md and docs/segments.md: their examples load, build and print what the pages show."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from opsloop.cli import app as cli_app
from opsloop.project.scaffold import init_project
from tests.conftest import make_app


class _Out:
    def __init__(self, code: int, stdout: str) -> None:
        self.returncode, self.stdout = code, stdout


def run_cli(*args: str) -> _Out:
    """The real command line, in this process (the page's commands run many times; startup is slow here)."""
    result = CliRunner().invoke(cli_app, list(args))
    return _Out(result.exit_code, result.stdout)

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _blocks(page: str, lang: str) -> list[str]:
    """The fenced code blocks of ``page`` whose info string is ``lang`` ("" for plain blocks)."""
    blocks: list[str] = []
    inside, info, lines = False, "", []
    for line in (DOCS / page).read_text().splitlines():
        if line.startswith("```"):
            if not inside:
                inside, info, lines = True, line[3:].strip(), []
            else:
                inside = False
                if info == lang:
                    blocks.append("\n".join(lines) + "\n")
            continue
        if inside:
            lines.append(line)
    return blocks


def _commands(page: str) -> dict[str, list[str]]:
    """``$ opsloop ...`` lines in the page's plain code blocks, each with the output lines under it."""
    out: dict[str, list[str]] = {}
    for block in _blocks(page, ""):
        current = None
        for line in block.splitlines():
            if line.startswith("$ "):
                current = line[2:].split("  #")[0].strip()
                out[current] = []
            elif current is not None and line:
                out[current].append(line)
    return out


def _docs_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    init_project(root)
    (root / "identity.yml").write_text(_blocks("identity.md", "yaml")[0])
    for block in _blocks("segments.md", "yaml"):
        first = block.splitlines()[0]
        assert first.startswith("# segments/"), first
        (root / first[2:].strip()).write_text(block)
    app = make_app(root)
    try:
        wh = app.warehouse
        wh.execute("CREATE SCHEMA src")
        wh.execute("CREATE SCHEMA analytics")
        wh.execute("CREATE TABLE analytics.usage (email VARCHAR, events_7d INTEGER)")
        wh.execute("CREATE TABLE src.app_users AS SELECT * FROM (VALUES "
                   "('u1', 'Ada@Example.com', '(415) 555-0101', 'Ada', 'pro', TIMESTAMPTZ '2026-01-01 10:00:00Z')) "
                   "t(id, email, phone, name, plan, updated_at)")
        wh.execute("CREATE TABLE src.crm_contacts AS SELECT * FROM (VALUES "
                   "('c1', 'ada@example.com', '+1 415 555 0202', 'Ada L', 'AE', 'u1', "
                   "TIMESTAMPTZ '2026-01-02 10:00:00Z'), "
                   "('c2', 'family@example.com', NULL, 'Bo', 'X', NULL, TIMESTAMPTZ '2026-01-02 10:00:00Z'), "
                   "('c3', 'family@example.com', NULL, 'Cy', 'X', NULL, TIMESTAMPTZ '2026-01-02 10:00:00Z')) "
                   "t(id, email, phone, name, company, app_user_id, updated_at)")
        wh.execute("CREATE TABLE src.support_users AS SELECT * FROM (VALUES "
                   "('s1', 'ada@example.com', NULL, 'Ada', false, TIMESTAMPTZ '2026-01-01 09:00:00Z'), "
                   "('a1', 'agent@example.com', NULL, 'Agent', true, TIMESTAMPTZ '2026-01-01 09:00:00Z')) "
                   "t(id, email, phone, name, is_agent, updated_at)")
    finally:
        app.close()
    return root


def test_identity_page_examples_are_true(tmp_path: Path) -> None:
    root = _docs_project(tmp_path)
    assert run_cli("validate", "-p", str(root)).returncode == 0
    commands = _commands("identity.md")
    build = run_cli("identity", "build", "-p", str(root))
    assert build.returncode == 0, build.stdout
    mask = re.compile(r"in \d+\.\d+s")
    assert [mask.sub("in Ns", line) for line in build.stdout.splitlines()] == [
        mask.sub("in Ns", line) for line in commands["opsloop identity build"]]
    profile = run_cli("profile", "ada@example.com", "-p", str(root))
    assert profile.stdout.splitlines() == commands["opsloop profile ada@example.com"]
    conflicts = run_cli("identity", "conflicts", "-p", str(root)).stdout.splitlines()
    expected = commands["opsloop identity conflicts"]
    assert conflicts[0] == expected[0]
    assert [c.split("\t", 1)[1] for c in conflicts[1:]] == [e.split("\t", 1)[1] for e in expected[1:]]


def test_segments_page_examples_are_true(tmp_path: Path) -> None:
    root = _docs_project(tmp_path)
    assert run_cli("identity", "build", "-p", str(root)).returncode == 0
    commands = _commands("segments.md")
    when = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
    listed = run_cli("segments", "-p", str(root)).stdout.splitlines()
    assert [when.sub("T", line) for line in listed] == [when.sub("T", line) for line in commands["opsloop segments"]]
    preview = run_cli("segments", "preview", "pro", "-p", str(root))
    assert preview.stdout.splitlines() == commands["opsloop segments preview pro"]
    ran = run_cli("segments", "run", "pro", "-p", str(root))
    assert ran.stdout.splitlines() == commands["opsloop segments run pro"]
