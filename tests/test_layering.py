"""Layering rules read from the source files: HTTP lives in ``opsloop.web``, the subsystems are plain Python."""

from __future__ import annotations

import ast
from pathlib import Path

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
