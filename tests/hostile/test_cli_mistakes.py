"""A user's mistake on the command line gets one clear message (what, where, what to do) and exit 1 (or 2
for a usage error), never a traceback: the real `opsloop` command on a real project."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer

from ..conftest import run_cli
from .conftest import start


def said(proc: subprocess.CompletedProcess[str], *fragments: str, code: int = 1) -> str:
    """The command failed with ``code`` and a message holding every fragment, without a traceback."""
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == code, out
    for fragment in fragments:
        assert fragment in out, out
    return out


def test_replay_payload_that_is_not_json(project_dir: Path) -> None:
    (project_dir / "notjson.json").write_text("this is not json\n")
    out = said(run_cli("replay", "evt_x", "--payload", "@notjson.json", cwd=project_dir),
               "notjson.json is not valid JSON", "line 1 column 1")
    assert out.startswith("error: ")
    said(run_cli("replay", "evt_x", "--payload", "{bad", cwd=project_dir), "--payload is not valid JSON")
    (project_dir / "latin1.json").write_bytes(b'{"name": "Ren\xe9"}')
    said(run_cli("replay", "evt_x", "--payload", "@latin1.json", cwd=project_dir), "latin1.json is not UTF-8")


def test_replay_payload_file_missing(project_dir: Path) -> None:
    said(run_cli("replay", "evt_x", "--payload", "@missing.json", cwd=project_dir),
         "payload file missing.json not found", "@file.json")


def test_replay_unknown_status(project_dir: Path) -> None:
    said(run_cli("replay", "--status", "bogus", cwd=project_dir), "unknown status 'bogus'", "quarantined")


def test_init_on_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    said(run_cli("init", "notes.txt", cwd=tmp_path), "notes.txt is a file, not a folder", "new or empty folder")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_init_where_it_cannot_write(tmp_path: Path) -> None:
    said(run_cli("init", "/proc/opsloop-here", cwd=tmp_path), "cannot create the folder /proc/opsloop-here",
         "choose a folder you can write to")


def test_init_into_a_non_empty_folder_never_overwrites(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "events").mkdir(parents=True)
    (repo / "events" / "demo_request.yml").write_text("# my own endpoint\n")
    said(run_cli("init", "repo", cwd=tmp_path), "already has events/demo_request.yml", "--force")
    said(run_cli("init", "repo", "--example", "saas", cwd=tmp_path), "already has events/demo_request.yml")
    assert (repo / "events" / "demo_request.yml").read_text() == "# my own endpoint\n"
    assert not (repo / "opsloop.yml").exists()
    # a folder with other files (an existing repository) is fine: its .gitignore gains opsloop's lines
    other = tmp_path / "other"
    other.mkdir()
    (other / "README.md").write_text("hello\n")
    (other / ".gitignore").write_text("node_modules/\n")
    made = run_cli("init", "other", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (other / "README.md").read_text() == "hello\n"
    assert (other / ".gitignore").read_text().splitlines()[:2] == ["node_modules/", ".env"]
    said(run_cli("init", "other", cwd=tmp_path), "opsloop.yml already exists", "--force")


def test_send_bad_json_and_missing_file(project_dir: Path) -> None:
    said(run_cli("send", "demo_request", "@missing.json", cwd=project_dir), "payload file missing.json not found")
    running = start(project_dir)
    try:
        out = said(run_cli("send", "demo_request", "{bad", "--url", running.url, cwd=project_dir), "malformed JSON")
        assert out.startswith("400")
    finally:
        running.proc.stop()


def test_out_of_range_values(project_dir: Path) -> None:
    said(run_cli("metric", "demo_requests", "--since", "99999999d", cwd=project_dir),
         "--since '99999999d' reaches past the calendar", "shorter duration")
    said(run_cli("events", "--limit", "0", cwd=project_dir), "Invalid value", code=2)
    said(run_cli("up", "--port", "99999", cwd=project_dir), "Invalid value", code=2)
    said(run_cli("up", "--receivers", "-1", cwd=project_dir), "Invalid value", code=2)
    said(run_cli("build", "--threads", "0", cwd=project_dir), "Invalid value", code=2)


def _verbs() -> list[tuple[list[str], Any]]:
    """Every command of `opsloop --help` that runs (leaves, and groups that list), with its path."""
    from opsloop.cli import app

    root = typer.main.get_command(app)  # typer's own copy of click: walked by duck typing
    found: list[tuple[list[str], Any]] = []

    def walk(command: Any, path: list[str], ctx: Any) -> None:
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                walk(sub, [*path, name], type(ctx)(sub, parent=ctx, info_name=name))
            if not command.invoke_without_command:
                return
        found.append((path, command))

    walk(root, [], root.context_class(root, info_name="opsloop"))
    return [(p, c) for p, c in found if p and p[0] not in ("up", "demo")]  # these two serve until stopped


VERBS = _verbs()


def test_every_verb_with_odd_arguments(project_dir: Path) -> None:
    """Each verb of `opsloop --help` with unknown names for its arguments and `--since 99999999d` where it
    takes a time: none prints a traceback, and each failure says something."""
    ran = 0
    for path, command in VERBS:
        args = [*path]
        for param in command.params:
            if param.param_type_name == "argument" and param.required:
                args.append("nosuch")
        if "since" in {p.name for p in command.params}:
            args += ["--since", "99999999d"]
        proc = run_cli(*args, cwd=project_dir)
        out = proc.stdout + proc.stderr
        assert "Traceback" not in out, f"opsloop {' '.join(args)}:\n{out}"
        if proc.returncode != 0:
            assert out.strip(), f"opsloop {' '.join(args)} failed without a message"
        ran += 1
    print(f"{ran} verbs with odd arguments: no traceback")
    assert ran >= 30


@pytest.mark.parametrize("verb", [["events"], ["build"], ["identity", "build"], ["sync"], ["metric", "x"]])
def test_a_file_where_the_project_belongs(tmp_path: Path, verb: list[str]) -> None:
    (tmp_path / "afile").write_text("not a project\n")
    said(run_cli(*verb, "--project", "afile", cwd=tmp_path), "no opsloop.yml here", "opsloop init")
