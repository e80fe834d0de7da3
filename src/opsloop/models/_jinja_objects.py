"""The objects a dbt template reads in opsloop's Jinja context: ``Relation`` (what ``ref``/``source``/``this``
print as), the ``config(...)`` and ``exceptions`` objects, ``RenderContext`` (the node being rendered) and the
per-thread ``_Current`` with the proxies that read it (``this``, ``config``, ``execute``, ``graph``, ``model``).
They hold data and look it up lazily; rendering itself is ``_render.Renderer``'s job."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._render_errors import RenderError

if TYPE_CHECKING:
    from ..warehouse.base import QueryResult
    from ._jinja_db import StatementResults
    from ._render import Renderer


@dataclass
class Relation(Mapping[str, object]):
    """What ``ref()``/``source()``/``this`` return: prints as the quoted relation name. Also a mapping
    shaped like dbt's relation dict, which packages check (``obj is mapping and obj.get('metadata')``)."""

    schema: str
    identifier: str
    text: str
    database: str | None = None

    def _as_dict(self) -> dict[str, object]:
        return {"metadata": {"type": "DuckDBRelation"}, "type": None,
                "path": {"database": self.database, "schema": self.schema, "identifier": self.identifier}}

    def __getitem__(self, key: str) -> object:
        return self._as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._as_dict())

    def __len__(self) -> int:
        return 3

    @property
    def is_cte(self) -> bool:
        """An ephemeral model, inlined as a CTE (packages refuse those where they need a table)."""
        return self.text.startswith("__dbt__cte__")

    def render(self) -> str:
        return self.text

    def include(self, **_: object) -> Relation:
        return self

    def incorporate(self, **_: object) -> Relation:
        return self

    __hash__ = object.__hash__

    @property
    def name(self) -> str:
        return self.identifier

    @property
    def table(self) -> str:
        return self.identifier

    def __str__(self) -> str:
        return self.text

    def __html__(self) -> str:
        return self.text


class _Config:
    """``config(...)`` in a model; ``config.get(key, default)`` reads the resolved config."""

    def __init__(self, resolved: Mapping[str, object]) -> None:
        self.captured: dict[str, object] = {}
        self.resolved = resolved

    def __call__(self, *args: object, **kwargs: object) -> str:
        if args and isinstance(args[0], dict):
            self.captured.update(args[0])
        self.captured.update(kwargs)
        return ""

    def get(self, key: str, default: object = None) -> object:
        return self.captured.get(key, self.resolved.get(key, default))

    def require(self, key: str) -> object:
        if key not in self.captured and key not in self.resolved:
            raise RenderError(f"config {key!r} is required here but not set")
        return self.get(key)


class _Exceptions:
    @staticmethod
    def raise_compiler_error(message: str) -> None:
        raise RenderError(str(message))

    @staticmethod
    def warn(message: str) -> str:
        return ""


@dataclass
class RenderContext:
    ref: Callable[..., Relation]
    source: Callable[..., Relation]
    this: Relation | None
    is_incremental: bool
    config: dict[str, object] = field(default_factory=dict)
    execute: bool = True
    """False while parsing (as in dbt: macros guard ``run_query`` with ``{% if execute %}``)."""
    query: Callable[[str], QueryResult] | None = None
    """Runs SQL on the node's warehouse session (run_query, statement, adapter.get_columns_in_relation)."""
    statements: StatementResults | None = None
    """``{% call statement('x') %}`` results for ``load_result('x')``."""
    extra: dict[str, object] = field(default_factory=dict)
    """More names for this render only (``schemas`` and ``results`` in on-run-end)."""
    model: Callable[[], Mapping[str, object]] | None = None
    """dbt's ``model``: the node being rendered as ``graph.nodes`` has it (with ``batch`` in a microbatch
    model's batch), built the first time the template reads it."""


@dataclass
class MacroPackage:
    """An installed dbt package's macros: called as ``name.macro()`` or found by ``adapter.dispatch``."""

    name: str
    files: list[tuple[str, str]]
    """(file shown in messages, text)"""



class _Current(threading.local):
    """The node being rendered on this thread: what ``ref``, ``this``, ``config`` ... mean inside macros."""

    ctx: RenderContext | None = None
    config: _Config | None = None
    depth: int = 0
    outer: str = ""
    """The outermost macro called from the node (``dbt_utils.star``), for messages."""



class _This:
    def __init__(self, cur: _Current) -> None:
        self._cur = cur

    def _get(self) -> Relation:
        this = self._cur.ctx.this if self._cur.ctx else None
        if this is None:
            raise RenderError("this is not defined here")
        return this

    def __getattr__(self, item: str) -> object:
        if item.startswith("_"):
            raise AttributeError(item)
        return getattr(self._get(), item)

    def __str__(self) -> str:
        return str(self._get())

    def __html__(self) -> str:
        return str(self._get())


class _ConfigProxy:
    def __init__(self, cur: _Current) -> None:
        self._cur = cur

    def __call__(self, *args: object, **kwargs: object) -> str:
        return self._cur.config(*args, **kwargs) if self._cur.config else ""

    def get(self, key: str, default: object = None) -> object:
        return self._cur.config.get(key, default) if self._cur.config else default

    def require(self, key: str) -> object:
        if self._cur.config is None:
            raise RenderError(f"config {key!r} is required here but not set")
        return self._cur.config.require(key)


class _Flag:
    """``execute``: true when compiling to run, false while parsing."""

    def __init__(self, cur: _Current) -> None:
        self._cur = cur

    def __bool__(self) -> bool:
        return bool(self._cur.ctx and self._cur.ctx.execute)

    def __str__(self) -> str:
        return str(bool(self))


_EMPTY_GRAPH: dict[str, object] = {key: {} for key in ("nodes", "sources", "exposures", "functions", "groups",
                                                       "metrics", "semantic_models", "saved_queries")}


class _LazyMapping(Mapping[str, object]):
    """A mapping read afresh on each use from ``_get()``, its keys also attributes (``graph.nodes``)."""

    def _get(self) -> Mapping[str, object]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> object:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __getattr__(self, item: str) -> object:
        if item.startswith("_"):
            raise AttributeError(item)
        try:
            return self._get()[item]
        except KeyError:
            raise AttributeError(item) from None


class _Graph(_LazyMapping):
    """dbt's ``graph``: ``graph.nodes`` / ``graph.sources`` ... by unique_id, each node a dict as in
    manifest.json. Built on first use when executing; empty while parsing (as dbt's is before its
    manifest is complete), so ``{% for node in graph.nodes.values() %}`` then loops over nothing."""

    def __init__(self, renderer: Renderer) -> None:
        self._r = renderer

    def _get(self) -> Mapping[str, object]:
        ctx = self._r._cur.ctx
        if ctx is None or not ctx.execute or self._r.graph is None:
            return _EMPTY_GRAPH
        return self._r.graph()


class _Model(_LazyMapping):
    """dbt's ``model`` in a node's template: ``model.name``, ``model.config``, ``model.batch.event_time_start``."""

    def __init__(self, cur: _Current) -> None:
        self._cur = cur

    def _get(self) -> Mapping[str, object]:
        ctx = self._cur.ctx
        return ctx.model() if ctx is not None and ctx.model is not None else {}
