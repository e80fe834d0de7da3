"""`opsloop pull` builds only what a pull needs: the sources' config, the state store, the warehouse, the bus.

The guard is what the pull path imports (``sys.modules`` of a fresh interpreter after the CLI's pull verb ran
in it), not a timer: the other subsystems' services and their heavy libraries stay out of a pull.
docs/sources.md ("How fast a small pull starts") has the figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

from .test_rest_files import ItemsApi, _rest

# What a pull must not import: other subsystems' services and the libraries only they need.
NOT_FOR_A_PULL = {
    "opsloop.workflows.actions", "opsloop.workflows.service", "opsloop.models.engine", "opsloop.syncs.service",
    "opsloop.identity.service", "opsloop.metrics.service", "opsloop.events.inbox", "jsonschema", "plotly",
}
DLTS_OWN = {"sqlglot", "croniter"}
"""Imported by dlt itself (its destination capabilities, its incremental intervals), whose cost they are
(plain dlt pays it too): a pull may hold them only when dlt's code imported them."""

_IN_PROCESS = textwrap.dedent("""
    import json, pathlib, sys, traceback
    watched, importer = set(sys.argv[2].split(",")), {}
    class Watch:  # records which file first imports each watched package
        def find_spec(self, name, path=None, target=None):
            if name in watched and name not in importer:
                files = [f.filename for f in traceback.extract_stack()[:-1]
                         if "importlib" not in f.filename and not f.filename.startswith("<")]
                importer[name] = files[-1] if files else "?"
            return None
    sys.meta_path.insert(0, Watch())
    from opsloop.cli import app
    if sys.argv[3:] == ["load_app"]:  # the full App, as the other verbs build it: the control
        from opsloop.cli._common import load_app
        load_app(pathlib.Path(sys.argv[1])).close()
    else:
        app([*sys.argv[3:], "-p", sys.argv[1]], standalone_mode=False)
    print(json.dumps({"modules": sorted(sys.modules), "importer": importer}))
""")


def _modules_after(root: Path, *verb: str) -> tuple[set[str], dict[str, str]]:
    """The modules a fresh interpreter holds after running ``opsloop <verb>`` in-process (the Typer app), and
    the file that first imported each of ``DLTS_OWN``."""
    out = subprocess.run([sys.executable, "-c", _IN_PROCESS, str(root), ",".join(sorted(DLTS_OWN)), *verb],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return set(data["modules"]), data["importer"]


@pytest.fixture
def api() -> Iterator[ItemsApi]:
    server = ItemsApi()
    yield server
    server.close()


def _events(root: Path, prefix: str) -> list[Any]:
    from opsloop import load_project
    from opsloop.app import App

    app = App(load_project(root))
    try:
        return [e for e in app.store.list_events(limit=1000) if e.name.startswith(prefix)]
    finally:
        app.close()


def test_pull_imports_no_other_subsystem(proj: Any, api: ItemsApi) -> None:
    _rest(proj, api)
    after, importer = _modules_after(proj.root, "pull", "shop")
    assert {"dlt", "opsloop.sources.connectors.rest"} <= after  # it did pull
    assert not after & NOT_FOR_A_PULL, sorted(after & NOT_FOR_A_PULL)
    assert all("/dlt/" in path for path in importer.values()), importer
    # the control: the full App imports what the pull leaves out, from opsloop's own code, so the checks can fail
    full, importer = _modules_after(proj.root, "load_app")
    assert {"opsloop.workflows.actions", "jsonschema"} <= full
    assert "/src/opsloop/" in importer.get("sqlglot", ""), importer


def test_light_pull_writes_rows_runs_and_loaded_events(proj: Any, api: ItemsApi) -> None:
    _rest(proj, api)
    out = run_cli("pull", "shop", "-p", str(proj.root))
    assert out.returncode == 0, out.stderr
    assert "shop: succeeded, 25 rows" in out.stdout
    assert [e.payload["rows"] for e in _events(proj.root, "source.shop.loaded")] == [25]
    api.items[3] = {**api.items[3], "price": 999, "updated_at": "2024-01-02T00:00:00Z"}
    out = run_cli("pull", "shop", "--json", "-p", str(proj.root))
    assert out.returncode == 0, out.stderr
    [run] = json.loads(out.stdout)
    assert (run["status"], run["rows"], run["streams"]["items"]["rows"]) == ("succeeded", 1, 1)
    assert [e.payload["streams"] for e in _events(proj.root, "source.shop.loaded")] == [{"items": 1}, {"items": 25}]
    [status] = json.loads(run_cli("sources", "--json", "-p", str(proj.root)).stdout)
    assert (status["state"], status["rows_total"]) == ("succeeded", 26)


def test_pull_reads_only_the_sources_files(proj: Any, api: ItemsApi) -> None:
    """A broken file of another subsystem is `opsloop validate`'s to report; a broken source is the pull's."""
    _rest(proj, api)
    (proj.root / "workflows" / "broken.yml").write_text("trigger: [unclosed\n")
    out = run_cli("pull", "shop", "-p", str(proj.root))
    assert out.returncode == 0, out.stderr
    assert run_cli("validate", "-p", str(proj.root)).returncode == 1
    proj.source("bad", "type: rest\nclient: {base_url: 5}\nresources: nope\n")
    out = run_cli("pull", "shop", "-p", str(proj.root))
    assert out.returncode == 1 and "sources/bad.yml" in out.stderr and "Traceback" not in out.stderr


def test_a_pull_no_stop_cut_off_says_nothing_of_an_interruption(proj: Any, api: ItemsApi,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """A pull is owed from its start (a crash anywhere redoes it), but only a real stop is worth a log line."""
    from opsloop import load_project
    from opsloop.app import App

    _rest(proj, api)
    app = App(load_project(proj.root))
    try:
        with caplog.at_level("INFO", logger="opsloop"):
            app.services["sources"].pull("shop")
        assert app.halt.owed() == {}
    finally:
        app.close()
    assert [r.getMessage() for r in caplog.records if "interrupted" in r.getMessage()] == []
