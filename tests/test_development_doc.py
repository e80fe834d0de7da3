"""docs/development.md's "Where a new part goes" stays true: every name it gives exists, and every part of
each kind that exists today is registered where the table says."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import opsloop

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(opsloop.__file__).resolve().parent
DOC = ROOT / "docs" / "development.md"


def _table() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text[text.index("## Where a new part goes"):text.index("## Typed seams")]


def _resolve(dotted: str) -> object:
    """``warehouse.open_warehouse`` -> the object, importing the longest module prefix of ``opsloop.``+dotted."""
    parts = f"opsloop.{dotted}".split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            target = getattr(target, attr)
        return target
    raise AssertionError(dotted)


NAMES = sorted(set(re.findall(
    r"`((?:_subsystems|destinations|workflows|warehouse|sources|web)(?:\.\w+)+)(?:\(\))?`", _table())))


def test_the_table_names_objects() -> None:
    assert "warehouse.open_warehouse" in NAMES and "sources.connectors._MODULES" in NAMES, NAMES


@pytest.mark.parametrize("dotted", NAMES)
def test_every_named_object_exists(dotted: str) -> None:
    assert _resolve(dotted) is not None


def test_every_file_path_in_the_table_exists() -> None:
    paths = set(re.findall(r"`((?:opsloop/)?[\w/]+(?:/|\.py|\.html))`", _table()))
    paths = {p for p in paths if "<" not in p and "NNNN" not in p}
    assert len(paths) > 5, paths
    for path in paths:
        rel = path.removeprefix("opsloop/")
        hits = [ROOT / path, SRC / rel, *SRC.glob(f"*/{rel}")]
        assert any(h.exists() for h in hits), path


def _modules(folder: str, pattern: str) -> set[str]:
    return {p.stem for p in (SRC / folder).glob(pattern) if not p.stem.startswith("_")}


def test_every_destination_module_is_in_builtin() -> None:
    from opsloop.destinations import BUILTIN

    registered = {target.split(":")[0].rsplit(".", 1)[1] for target in BUILTIN.values()}
    assert _modules("destinations", "*.py") - {"base", "__init__"} == registered


def test_every_source_type_is_registered_four_times() -> None:
    from opsloop.sources import config
    from opsloop.sources.connectors import _MODULES

    kinds = set(config.MODELS)
    assert kinds == set(config.SOURCE_TYPES) == set(_MODULES)
    union = {model.model_fields["type"].annotation.__args__[0]
             for model in config.SourceConfig.__origin__.__args__}  # type: ignore[attr-defined]
    assert union == kinds
    assert set(_MODULES.values()) == _modules("sources/connectors", "*.py") - {"base", "__init__"}


def test_every_action_module_is_imported_and_listed() -> None:
    from opsloop.workflows.actions import ACTIONS

    modules = {action.__module__.rsplit(".", 1)[1] for action, _ in ACTIONS.values()}
    assert modules == _modules("workflows/actions", "*.py") - {"__init__"}


def test_every_page_module_is_in_ops_routes_and_every_api_module_in_create_asgi() -> None:
    ops = (SRC / "web" / "ops.py").read_text(encoding="utf-8")
    server = (SRC / "web" / "server.py").read_text(encoding="utf-8")
    for name in _modules("web", "pages_*.py") - {"pages_format"}:  # pages_format: Jinja filters, no routes
        assert f"*{name}.routes(web)" in ops, name
    for name in _modules("web", "api_*.py"):
        assert f"*{name}.routes(app)" in server, name


def test_every_warehouse_type_opens_through_one_branch() -> None:
    from opsloop.warehouse import TYPES

    source = (SRC / "warehouse" / "__init__.py").read_text(encoding="utf-8")
    assert {m for m in re.findall(r'config\.type == "(\w+)"', source)} == set(TYPES)
