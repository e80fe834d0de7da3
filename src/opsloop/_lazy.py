"""Package ``__init__`` modules that import their public names on first use.

A package's ``__init__`` runs whenever any of its modules is imported: ``opsloop.sources.project_files``
(what `opsloop validate` needs) would otherwise pay for ``opsloop.sources``' runner, Arrow and httpx.
Each package lists its names for the type checker under ``TYPE_CHECKING`` and here for the run time::

    __getattr__ = lazy_exports(__name__, {"pull": "._runner", "SourceError": "._errors"})
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``names[name]`` (relative to ``package``) on first use."""

    def __getattr__(name: str) -> object:
        where = names.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = import_module(where, package)
        value = module if where.endswith(f".{name}") and not hasattr(module, name) else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
