"""The state store's numbered migrations, written once for both stores.

``migrations/NNNN_name.sql`` holds SQL both stores run. Where they spell a column type differently, the
file names the type with a placeholder that ``STORE_TYPES`` spells per store (``${float}`` is ``REAL`` on
SQLite, ``DOUBLE PRECISION`` on Postgres), so the one file gives each store exactly the SQL it ran before
the files were merged. A migration whose SQL differs in more than its types (a full-text index: FTS5 on
SQLite, ``tsvector`` on Postgres) is one file per store instead, ``migrations/sqlite/NNNN_name.sql`` and
``migrations/postgres/NNNN_name.sql``, under the same number.

Each subsystem owns a range of numbers (0001-0099 events, 0100-0199 workflows, 0200 sources, 0300 syncs,
0400 identity, 0500 metrics, 0600 sessions) so that they never collide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable

from ..errors import StateStoreError

STORE_TYPES: dict[str, dict[str, str]] = {
    "sqlite": {
        "float": "REAL",
        "blob": "BLOB",
        "seq": "INTEGER",
        "seq_key": "INTEGER PRIMARY KEY AUTOINCREMENT",
    },
    "postgres": {
        "float": "DOUBLE PRECISION",
        "blob": "BYTEA",
        "seq": "BIGINT",
        "seq_key": "BIGSERIAL PRIMARY KEY",
    },
}
"""Each store's spelling of the placeholders: ``float`` (a timestamp or a measure), ``blob`` (raw bytes),
``seq`` (a position in the event log) and ``seq_key`` (the log's own increasing key)."""

_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    """The file name (``0001_event_log.sql``), as ``schema_migrations`` records it."""
    sql: str
    """The SQL for the store it was read for, placeholders spelled out."""


def render(sql: str, backend: str, where: str = "the migration") -> str:
    """``sql`` with each placeholder spelled as ``backend`` spells it; an unknown one is a ``StateStoreError``."""
    types = STORE_TYPES[backend]

    def spell(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in types:
            line = sql.count("\n", 0, match.start()) + 1
            raise StateStoreError(f"{where}, line {line}: unknown placeholder ${{{name}}}; use one of "
                                  + ", ".join(f"${{{k}}}" for k in types))
        return types[name]

    return _PLACEHOLDER.sub(spell, sql)


def _sql_files(folder: Traversable) -> dict[int, Traversable]:
    found: dict[int, Traversable] = {}
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        number = entry.name.split("_", 1)[0]
        if not number.isdigit():
            raise StateStoreError(f"migration {entry.name}: its name must start with its number (0700_name.sql)")
        version = int(number)
        if version in found:
            raise StateStoreError(f"migrations {found[version].name} and {entry.name} have the same number")
        found[version] = entry
    return found


def migrations(backend: str) -> list[Migration]:
    """Every migration for ``backend`` (``sqlite`` or ``postgres``), in number order."""
    root = resources.files("opsloop.state").joinpath("migrations")
    shared = _sql_files(root)
    own = _sql_files(root.joinpath(backend))
    both = sorted(set(shared) & set(own))
    if both:
        raise StateStoreError(f"migration {both[0]:04d} is both shared and written for {backend}; keep one of them")
    chosen = {**shared, **own}
    return [
        Migration(version, entry.name, render(entry.read_text(encoding="utf-8"), backend, f"migration {entry.name}"))
        for version, entry in sorted(chosen.items())
    ]
