"""Long verbs show their progress: a line per step in a pipe, Rich rows on a terminal (cleared at the end), and
nothing but JSON on stdout with ``--json``.

The real ``opsloop`` command runs in a pipe (``run_cli``) and under a pseudo-terminal (``pty``); what the terminal
shows at the end is read back through a terminal emulator (pyte), so "cleared" means what a user would see.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, run_cli
from tests.identity.conftest import ada_in_two_systems

COLUMNS, LINES = 140, 60

SEEDS = {
    "raw_customers.csv": "id,name\n" + "".join(f"{i},c{i}\n" for i in range(1, 51)),
    "raw_orders.csv": "id,customer_id,amount\n" + "".join(f"{i},{1 + i % 50},{i * 3}\n" for i in range(1, 201)),
}
MODELS = {
    "stg_customers.sql": "select id as customer_id, name from {{ ref('raw_customers') }}",
    "stg_orders.sql": "select id as order_id, customer_id, amount from {{ ref('raw_orders') }}",
    "customers.sql": "{{ config(materialized='table') }}\nselect c.customer_id, c.name, count(o.order_id) as orders\n"
                     "from {{ ref('stg_customers') }} c left join {{ ref('stg_orders') }} o using (customer_id)\n"
                     "group by 1, 2",
}
SCHEMA = "version: 2\nmodels:\n  - name: customers\n    columns:\n      - name: customer_id\n" \
         "        tests: [unique, not_null]\n"
NODES = len(SEEDS) + len(MODELS) + 2  # two data tests


def _shop(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "seeds").mkdir()
    (root / "dbt_project.yml").write_text("name: shop\nversion: '1.0'\nprofile: shop\n")
    for name, text in SEEDS.items():
        (root / "seeds" / name).write_text(text)
    for name, text in MODELS.items():
        (root / "models" / name).write_text(text + "\n")
    (root / "models" / "schema.yml").write_text(SCHEMA)
    return root


# -- a pseudo-terminal -----------------------------------------------------------------------------------
def run_tty(*args: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None) -> tuple[int, str]:
    """``opsloop ARGS`` with stdin, stdout and stderr on a pseudo-terminal of COLUMNS x LINES; its exit code and
    everything it wrote to the terminal (escape sequences and all)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    full_env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(LINES), **(env or {})}
    full_env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "opsloop", *args], cwd=cwd, stdin=slave, stdout=slave,
                            stderr=slave, env=full_env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed its end
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"opsloop {' '.join(args)} did not finish in {timeout}s on the terminal")
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def screen(raw: str) -> list[str]:
    """What the terminal shows once the command has ended (its lines, right-stripped, empty ones dropped)."""
    import pyte

    term = pyte.Screen(COLUMNS, 500)  # tall: nothing scrolls off, the live rows rewrite in place as on LINES
    pyte.Stream(term).feed(raw)
    return [line.rstrip() for line in term.display if line.strip()]


def plain(raw: str) -> str:
    """Everything the command drew, escape sequences removed (every frame of the live rows included)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", raw)


# -- build -------------------------------------------------------------------------------------------------
def test_build_in_a_pipe_prints_a_line_per_node_and_an_eta_from_the_last_build(tmp_path: Path) -> None:
    root = _shop(tmp_path / "shop")
    first = run_cli("build", "-p", str(root))
    assert first.returncode == 0, first.stderr
    lines = [line for line in first.stderr.splitlines() if re.match(r"\d+ of \d+ ", line)]
    assert [line.split(" of ")[0] for line in lines] == [str(i) for i in range(1, NODES + 1)], first.stderr
    assert all(f" of {NODES} " in line for line in lines)
    assert any("SUCCESS model customers [table rows=50" in line for line in lines), first.stderr
    assert any("PASS    test unique_customers_customer_id" in line for line in lines), first.stderr
    assert "left)" not in first.stderr  # a first build has no timings to go by
    assert "customers\ttable\t50\t" in first.stdout  # the summary table, on stdout

    second = run_cli("build", "-p", str(root))
    assert second.returncode == 0, second.stderr
    lines = [line for line in second.stderr.splitlines() if re.match(r"\d+ of \d+ ", line)]
    assert len(lines) == NODES
    # every node but the last says how long the rest should take, from target/run_results.json
    assert all(re.search(r"\(about \d+\.\d\ds left\)$", line) for line in lines[:-1]), second.stderr
    assert "left" not in lines[-1]


def test_build_json_prints_only_json(tmp_path: Path) -> None:
    root = _shop(tmp_path / "shop")
    out = run_cli("build", "-p", str(root), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # the whole of stdout is one JSON document
    assert data["ok"] is True and len(data["results"]) == NODES
    assert not re.search(r"\d+ of \d+ ", out.stderr), out.stderr


def test_build_on_a_terminal_shows_a_bar_then_clears_it(tmp_path: Path) -> None:
    root = _shop(tmp_path / "shop")
    assert run_cli("build", "-p", str(root)).returncode == 0  # timings for the ETA
    code, raw = run_tty("build", "-p", str(root), cwd=tmp_path)
    assert code == 0, plain(raw)
    drawn = plain(raw)
    assert "building" in drawn and f"/{NODES}" in drawn, drawn  # the live row: label and done/total
    assert not re.search(r"\d+ of \d+ ", drawn)  # not the pipe's lines
    shown = screen(raw)
    assert not any("building" in line for line in shown), shown  # the bar is gone
    assert any("customers" in line and "table" in line and "50" in line for line in shown), shown  # the table
    assert shown[-1].startswith("done: "), shown


# -- pull --------------------------------------------------------------------------------------------------
def _files_project(tmp_path: Path, files: int = 3, rows: int = 400) -> Path:
    from opsloop.project.scaffold import init_project

    root = tmp_path / "proj"
    init_project(root)
    (root / "data").mkdir()
    for f in range(files):
        (root / "data" / f"people_{f}.csv").write_text(
            "id,name\n" + "".join(f"{f * rows + i},n{i}\n" for i in range(rows)))
    (root / "sources").mkdir(exist_ok=True)
    (root / "sources" / "local.yml").write_text(
        "type: files\nstreams:\n  - {name: people, path: \"data/*.csv\", primary_key: id}\n")
    return root


def test_pull_in_a_pipe_prints_pages_rows_and_rate_per_stream(tmp_path: Path) -> None:
    root = _files_project(tmp_path)
    out = run_cli("pull", "-p", str(root))
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert re.search(r"^local\.people: 1 page, 400 rows, [\d,]+ rows/s$", lines[0]), out.stderr
    assert "local.people: loading 1,200 rows into the warehouse" in lines
    assert re.search(r"^local\.people: done, 3 pages, 1,200 rows in [\d.]+s$", lines[-1]), out.stderr
    assert "local.people: 1200 rows -> local.people (done)" in out.stdout


def test_pull_json_prints_only_json(tmp_path: Path) -> None:
    root = _files_project(tmp_path)
    out = run_cli("pull", "-p", str(root), "--json")
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout)
    assert runs[0]["status"] == "succeeded" and runs[0]["rows"] == 1200
    assert "local.people" not in out.stderr


def test_pull_on_a_terminal_shows_each_stream_then_clears_it(tmp_path: Path) -> None:
    root = _files_project(tmp_path)
    code, raw = run_tty("pull", "-p", str(root), cwd=tmp_path)
    assert code == 0, plain(raw)
    drawn = plain(raw)
    assert re.search(r"local\.people .*\d+ pages?  [\d,]+ rows  [\d,]+ rows/s", drawn), drawn
    shown = screen(raw)
    assert not any("rows/s" in line for line in shown), shown
    assert shown[-2:] == ["local.people: 1200 rows -> local.people (done)",
                          shown[-1]] and shown[-1].startswith("local: succeeded, 1200 rows"), shown


# -- identity build ----------------------------------------------------------------------------------------
STAGES = ["stage", "diff", "normalize", "scope", "merge", "ids", "golden", "segments", "events"]


@pytest.fixture
def identity_project(tmp_path: Path) -> Path:
    return ada_in_two_systems(tmp_path, segments={"pro": "description: Pro\nwhere: plan = 'pro'\n"})


def test_identity_build_in_a_pipe_prints_each_stage(identity_project: Path) -> None:
    out = run_cli("identity", "build", "-p", str(identity_project))
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("identity build: ")]
    assert [line.split()[2] for line in lines] == STAGES, out.stderr
    assert lines[-1].endswith(f"({len(STAGES)} of {len(STAGES)})")
    assert "full build: 2 records" in out.stdout

    no_segments = run_cli("identity", "build", "--no-segments", "-p", str(identity_project))
    names = [line.split()[2] for line in no_segments.stderr.splitlines() if line.startswith("identity build: ")]
    assert names == [s for s in STAGES if s != "segments"], no_segments.stderr


def test_identity_build_json_prints_only_json(identity_project: Path) -> None:
    out = run_cli("identity", "build", "--json", "-p", str(identity_project))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["records"] == 2
    assert "identity build:" not in out.stderr


def test_identity_build_on_a_terminal_shows_the_stages_then_clears_them(identity_project: Path) -> None:
    code, raw = run_tty("identity", "build", "-p", str(identity_project), cwd=identity_project)
    assert code == 0, plain(raw)
    assert f"/{len(STAGES)}" in plain(raw) and "identity build" in plain(raw), plain(raw)
    shown = screen(raw)
    assert not any(f"/{len(STAGES)}" in line for line in shown), shown
    assert shown[0].startswith("full build: 2 records"), shown


# -- sync ---------------------------------------------------------------------------------------------------
SYNC = "table: customers\nkey: email\ndestination: {type: outbox, object: contacts}\n" \
       "mapping: {email: email, phone: phone}\n"


def _sync_project(tmp_path: Path, rows: int = 30) -> Path:
    from opsloop.project.scaffold import init_project
    from tests.syncs.conftest import SyncProject, people

    root = tmp_path / "proj"
    init_project(root)
    sp = SyncProject(root)
    sp.customers(people(rows))
    sp.write_sync("contacts", SYNC)
    return root


def test_sync_in_a_pipe_prints_the_rows_sent(tmp_path: Path) -> None:
    root = _sync_project(tmp_path)
    out = run_cli("sync", "contacts", "-p", str(root))
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines()[-1] == "sync contacts: 30 of 30 rows sent", out.stderr
    assert out.stdout.startswith("contacts: ok: 30 to create"), out.stdout

    root2 = _sync_project(tmp_path / "json")
    as_json = run_cli("sync", "contacts", "--json", "-p", str(root2))
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)[0]["sent"] == 30
    assert "rows sent" not in as_json.stderr


def test_sync_on_a_terminal_shows_a_bar_then_clears_it(tmp_path: Path) -> None:
    root = _sync_project(tmp_path)
    code, raw = run_tty("sync", "contacts", "-p", str(root), cwd=tmp_path)
    assert code == 0, plain(raw)
    assert "sync contacts" in plain(raw) and "/30" in plain(raw), plain(raw)
    shown = screen(raw)
    assert not any("/30" in line for line in shown), shown
    assert shown[0].startswith("contacts: ok: 30 to create"), shown


# -- deps --------------------------------------------------------------------------------------------------
def _with_local_package(tmp_path: Path) -> Path:
    root = _shop(tmp_path / "shop")
    pkg = tmp_path / "my_utils"
    (pkg / "macros").mkdir(parents=True)
    (pkg / "dbt_project.yml").write_text("name: my_utils\nversion: '1.0'\n")
    (pkg / "macros" / "cents.sql").write_text("{% macro cents(c) %}({{ c }} / 100.0){% endmacro %}\n")
    (root / "packages.yml").write_text("packages:\n  - local: ../my_utils\n")
    return root


def test_deps_in_a_pipe_prints_each_fetch_and_install(tmp_path: Path) -> None:
    root = _with_local_package(tmp_path)
    out = run_cli("deps", "-p", str(root))
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == ["fetching ../my_utils", "installing my_utils"], out.stderr
    assert out.stdout.startswith("installed my_utils"), out.stdout


def test_deps_on_a_terminal_clears_its_row(tmp_path: Path) -> None:
    root = _with_local_package(tmp_path)
    code, raw = run_tty("deps", "-p", str(root), cwd=tmp_path)
    assert code == 0, plain(raw)
    assert "installing my_utils" in plain(raw), plain(raw)
    shown = screen(raw)
    assert shown and all(line.startswith("installed my_utils") for line in shown), shown


# -- demo --------------------------------------------------------------------------------------------------
DEMO_STEPS = [r"loading opsloop", r"writing the example company", r"opening the project",
              r"making 120 days of sample history", r"loading [\d,]+ events of sample history into the warehouse",
              r"starting the server", r"building the models",
              r"building the identity graph and resetting the syncs to it"]


@pytest.mark.slow
def test_demo_first_start_prints_its_steps_in_a_pipe(tmp_path: Path) -> None:
    out = run_cli("demo", str(tmp_path / "demo"), "--port", str(free_port()), "--duration", "1", timeout=180)
    assert out.returncode == 0, out.stderr
    steps = [line.removeprefix("demo: ") for line in out.stderr.splitlines() if line.startswith("demo: ")]
    assert len(steps) == len(DEMO_STEPS) and all(re.fullmatch(e, s) for e, s in zip(DEMO_STEPS, steps, strict=True)), \
        out.stderr
    assert "opsloop demo is running" in out.stdout


@pytest.mark.slow
def test_demo_on_a_terminal_clears_its_steps_before_it_prints_its_url(tmp_path: Path) -> None:
    code, raw = run_tty("demo", str(tmp_path / "demo"), "--port", str(free_port()), "--duration", "1",
                        cwd=tmp_path, timeout=180)
    assert code == 0, plain(raw)
    assert "building the models" in plain(raw) and "opsloop demo" in plain(raw), plain(raw)
    shown = screen(raw)
    assert not any("building the models" in line for line in shown), shown
    assert any(line.startswith("opsloop demo is running: http://127.0.0.1:") for line in shown), shown
