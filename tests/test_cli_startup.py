"""`opsloop --help` answers at once: the CLI imports no heavy library until a verb needs it.

Checked through ``sys.modules`` in a fresh interpreter, not with a timer, so the test holds on a busy machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Libraries that cost tens to hundreds of milliseconds each; `--help` and `import opsloop.cli` need none.
HEAVY = ("dlt", "duckdb", "plotly", "starlette", "uvicorn", "pydantic", "jinja2", "slack_sdk", "pyarrow",
         "sqlglot", "httpx", "psycopg", "rich.markdown", "pygments")
# opsloop modules that build pydantic models, the workflow context or the web layer at import.
HEAVY_OWN = ("opsloop.project.config", "opsloop.workflows.context", "opsloop.web", "opsloop.app",
             "opsloop.models.engine", "opsloop.warehouse")

PROBE = """
import json, sys
{setup}
print(json.dumps(sorted(sys.modules)))
"""

HELP = """
from opsloop.cli import app
try:
    app({args!r})
except SystemExit:
    pass
"""


def _loaded(setup: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    modules: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return modules


def _heavy(modules: list[str], allow: tuple[str, ...] = ()) -> list[str]:
    def hit(module: str, name: str) -> bool:
        return module == name or module.startswith(name + ".")

    return sorted(m for m in modules if any(hit(m, h) for h in (*HEAVY, *HEAVY_OWN) if h not in allow))


def test_importing_the_cli_loads_no_heavy_library() -> None:
    heavy = _heavy(_loaded("import opsloop.cli"))
    assert not heavy, f"`import opsloop.cli` imported heavy modules (import them inside the verb): {heavy}"


@pytest.mark.parametrize("args", [["--help"], ["build", "--help"], ["validate", "--help"], ["query", "--help"],
                                  ["pull", "--help"], ["runs", "--help"], ["identity", "--help"]])
def test_help_loads_no_heavy_library(args: list[str]) -> None:
    modules = _loaded(HELP.format(args=args))
    assert "opsloop.cli" in modules
    # typer itself coerces some option types (``list[str]``) through pydantic's TypeAdapter: pydantic's core
    # may load for a verb's --help, the project's models (opsloop.project.config) may not
    heavy = _heavy(modules, allow=("pydantic",))
    assert not heavy, f"`opsloop {' '.join(args)}` imported heavy modules: {heavy}"


def test_the_probe_sees_a_heavy_import() -> None:
    """The check itself can fail: loading the project's config shows its pydantic models in ``sys.modules``."""
    assert "opsloop.project.config" in _heavy(_loaded("import opsloop.project"), allow=("pydantic",))


VALIDATE = """
import runpy, sys
sys.argv = ["opsloop", "validate", "--project", {root!r}]
try:
    runpy.run_module("opsloop", run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
"""


def test_validate_of_a_dbt_project_loads_no_engine(tmp_path: Path) -> None:
    """`opsloop validate` reads files and compiles SQL: no warehouse engine, loader, chart or web library."""
    (tmp_path / "models").mkdir()
    (tmp_path / "dbt_project.yml").write_text("name: shop\nversion: '1.0'\nprofile: shop\n")
    (tmp_path / "models" / "orders.sql").write_text("select 1 as id\n")
    modules = _loaded(VALIDATE.format(root=str(tmp_path)))
    assert "opsloop.models.compiler" in modules  # the models were loaded and compiled
    engines = sorted({m.split(".")[0] for m in modules} & {"dlt", "duckdb", "pyarrow", "plotly", "starlette",
                                                            "uvicorn", "slack_sdk", "psycopg"})
    assert not engines, f"`opsloop validate` imported {engines} (import them where a verb runs, not at load)"
