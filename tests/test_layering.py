"""Layering rules read from the source files: HTTP lives in ``opsloop.web``, the subsystems are plain Python.

The AST check below and the ``starlette`` contract in pyproject.toml say the same thing; the contracts
(checked by `lint-imports`) also hold the private modules and the layers.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import opsloop

SRC = Path(opsloop.__file__).parent

# Outside web/, no module may import Starlette: every HTTP route is a web/ module that calls a subsystem's
# plain Python service. No exception is needed today: ``_server.py`` runs uvicorn on the ASGI app that
# ``web.server.create_asgi`` builds, and ``_receivers.py`` gets its ASGI app from ``web.receiver``.
ALLOWED: set[str] = set()


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_only_web_imports_starlette() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("web/") or rel in ALLOWED:
            continue
        bad = sorted(m for m in _imports(path) if m == "starlette" or m.startswith("starlette."))
        if bad:
            offenders.append(f"opsloop/{rel}: {', '.join(bad)}")
    assert not offenders, "Starlette imported outside opsloop/web/ (move the route into web/):\n" + "\n".join(offenders)


def test_the_rule_sees_an_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from starlette.responses import Response\n    return Response\n")
    assert _imports(probe) == {"starlette.responses"}


def test_import_contracts_hold() -> None:
    """The boundaries in pyproject.toml's [tool.importlinter] (private modules, the layers, the web on top)
    hold; scripts/test runs the same `lint-imports`, and docs/development.md draws the picture."""
    root = SRC.parents[1]
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip(f"{lint} is missing (the dev extras install import-linter)")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(SRC.parent)})
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_the_contracts_see_a_private_import(tmp_path: Path) -> None:
    """The private-module contract fails on an import of another package's ``_module``."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip(f"{lint} is missing (the dev extras install import-linter)")
    pkg = tmp_path / "probe_pkg"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    for init in (pkg, pkg / "a", pkg / "b"):
        (init / "__init__.py").write_text("")
    (pkg / "a" / "_inner.py").write_text("X = 1\n")
    (pkg / "b" / "user.py").write_text("from probe_pkg.a._inner import X\n")
    (tmp_path / ".importlinter").write_text(
        "[importlinter]\nroot_package = probe_pkg\n\n[importlinter:contract:private]\nname = private\n"
        "type = private_modules\n")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stdout
    assert "probe_pkg.b.user -> probe_pkg.a._inner" in proc.stdout
