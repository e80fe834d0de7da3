"""Every CLI verb that reads or writes the warehouse gives the same answer without and with a running
`opsloop up` (a real subprocess that owns the DuckDB file): the saas example, its vendors stood in for on
127.0.0.1. Also: the lock is a typed error, and `opsloop build` writes `model.built` either way."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from opsloop.errors import WarehouseLocked
from opsloop.warehouse.duckdb import DuckDBWarehouse

from .conftest import free_port, make_app, run_cli
from .hostile._fuzz import example_project
from .test_cli_server import UpProcess

PERSON = "linus.mccarthy5@dundermifflin.example"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d)?")
VOLATILE = {"seconds", "timings", "run_id", "last_run_id", "started_at", "finished_at", "last_run_at",
            "last_evaluated", "resolved_at", "duration", "id", "runs", "last_run", "next_run", "requests",
            "last_status", "last_sent", "last_failed", "health", "synced_rows", "owned_records"}
"""Fields that change from one run to the next whichever way a verb runs (times, durations, run ids), and
the sync state that the server's own reaction to the builds (`after_build` syncs) moves on."""


def _stable(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _stable(v) for k, v in data.items() if k not in VOLATILE}
    if isinstance(data, list):
        return [_stable(v) for v in data]
    return data


def _json(*args: str, root: Path) -> Any:
    out = run_cli(*args, "--json", "-p", str(root), timeout=180)
    assert out.returncode == 0, f"opsloop {' '.join(args)}: {out.stderr}"
    return json.loads(out.stdout)


def _text(*args: str, root: Path) -> tuple[int, str, str]:
    out = run_cli(*args, "-p", str(root), timeout=180)
    return out.returncode, TIMESTAMP.sub("<time>", out.stdout), out.stderr


def _built(results: Any) -> list[tuple[str, str]]:
    return sorted((r["name"], r["status"]) for r in results["results"])


VERBS: dict[str, Callable[[Path], Any]] = {
    "build": lambda root: _built(_json("build", root=root)),
    "compile": lambda root: _json("compile", "customers", root=root),
    "query": lambda root: _json("query", "select count(*) as n, min(email) as first from identity.golden_records",
                                root=root),
    "identity build": lambda root: _stable(_json("identity", "build", root=root)),
    "identity conflicts": lambda root: _json("identity", "conflicts", root=root),
    "profile": lambda root: _json("profile", PERSON, root=root),
    "profile (text)": lambda root: _text("profile", PERSON, root=root),
    "profile unknown": lambda root: _text("profile", "nobody@nowhere.example", root=root),
    "segments": lambda root: _stable(_json("segments", root=root)),
    "segments (text)": lambda root: _text("segments", root=root),
    "segments preview": lambda root: _stable(_json("segments", "preview", "active_customers", root=root)),
    "segments run": lambda root: _stable(_json("segments", "run", root=root)),
    "syncs": lambda root: _stable(_json("syncs", root=root)),
    "syncs show": lambda root: sorted(_json("syncs", "show", "hubspot_contacts", root=root)),
    "sync --dry-run": lambda root: [(r["sync"], r["status"], r["planned"])
                                    for r in _json("sync", "hubspot_contacts", "--dry-run", root=root)],
    "pull": lambda root: [(r["source"], r["status"], sorted(r.get("streams") or {}))
                          for r in _json("pull", "stripe", root=root)],
    "sources": lambda root: [(s["name"], s["type"], sorted(s["streams"])) for s in _json("sources", root=root)],
    "metric": lambda root: _json("metric", "customer_count", root=root),
    "metric (text)": lambda root: _text("metric", "customer_count", "--grain", "month", root=root),
    "alerts": lambda root: [(a["name"], a["metric"], a["rule"]) for a in _json("alerts", root=root)["alerts"]],
}


@pytest.fixture
def saas(tmp_path: Path) -> Iterator[Path]:
    with example_project(tmp_path / "saas") as root:
        # without this, the server runs the enforcing syncs at its start for the `identity.built` events the
        # CLI's identity builds wrote (as it should), and `sync --dry-run` through it then plans nothing
        for sync in (root / "syncs").glob("*.yml"):
            sync.write_text(sync.read_text() + "enforce: false\n")
        # settle: models built, identities resolved, one pull done, so a verb run twice answers the same
        for verb in (("build",), ("identity", "build"), ("pull", "stripe")):
            out = run_cli(*verb, "-p", str(root), timeout=180)
            assert out.returncode == 0, out.stderr
        yield root


def _model_built(root: Path) -> int:
    app = make_app(root)
    try:
        return sum(1 for e in app.store.list_events(name="model.built", limit=10_000))
    finally:
        app.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_verb_answers_the_same_without_and_with_the_server(saas: Path) -> None:
    before = _model_built(saas)
    alone = {name: verb(saas) for name, verb in VERBS.items()}
    built_alone = _model_built(saas) - before
    assert built_alone >= 10, "`opsloop build` without a server wrote no model.built events"
    assert alone["profile unknown"][0] == 1 and "no person with id" in alone["profile unknown"][2]
    assert "person p_" in alone["profile (text)"][1]
    up = UpProcess(saas, free_port())
    try:
        assert (saas / "state" / "server.json").is_file()
        with pytest.raises(WarehouseLocked) as locked:  # the server owns the file: the lock is typed
            DuckDBWarehouse(saas / "warehouse.duckdb").query("SELECT 1")
        assert locked.value.path.endswith("warehouse.duckdb")
        before = _model_built(saas)
        served = {name: verb(saas) for name, verb in VERBS.items()}
        # the server's build and the one here write the same events (the server may add refreshes of its own)
        assert _model_built(saas) - before >= built_alone
    finally:
        assert up.stop() == 0
    different = {name: (alone[name], served[name]) for name in VERBS if alone[name] != served[name]}
    assert not different, json.dumps(different, indent=1, default=str)[:6000]


def test_no_module_reads_the_lock_from_a_message() -> None:
    """The lock is ``WarehouseLocked``; only the DuckDB adapter writes the words, and nothing matches them."""
    import opsloop

    src = Path(opsloop.__file__).parent
    readers = [p.relative_to(src).as_posix() for p in src.rglob("*.py")
               if "in use by another process" in p.read_text(encoding="utf-8")]
    assert readers == ["warehouse/duckdb.py"]


def test_a_stale_or_silent_server_file(project_dir: Path) -> None:
    """``state/server.json`` of a process that has exited is ignored (the verb runs here); one of a live
    process that does not answer is a clear error naming the file, not a traceback."""
    import subprocess
    import sys

    info = project_dir / "state" / "server.json"
    info.parent.mkdir(parents=True, exist_ok=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    info.write_text(json.dumps({"pid": int(gone.stdout), "host": "127.0.0.1", "port": free_port()}))
    here = run_cli("build", "--json", "-p", str(project_dir))
    assert here.returncode == 0, here.stderr
    assert json.loads(here.stdout) == {"results": [], "ok": True}
    port = free_port()
    info.write_text(json.dumps({"pid": 1, "host": "0.0.0.0", "port": port}))  # pid 1 is always alive
    silent = run_cli("query", "select 42 as answer", "-p", str(project_dir))
    assert silent.returncode == 1
    assert f"http://127.0.0.1:{port} did not answer" in silent.stderr
    assert "delete state/server.json" in silent.stderr and "Traceback" not in silent.stderr
    text = (project_dir / ".env").read_text()
    (project_dir / ".env").write_text("\n".join(line for line in text.splitlines()
                                                if not line.startswith("OPSLOOP_API_TOKEN")) + "\n")
    no_token = run_cli("query", "select 1", "-p", str(project_dir), env={"OPSLOOP_API_TOKEN": ""})
    assert no_token.returncode == 1 and "OPSLOOP_API_TOKEN is not set here" in no_token.stderr
