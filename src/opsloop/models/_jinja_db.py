"""The parts of dbt's Jinja context that ask the warehouse: ``run_query``, ``{% call statement %}`` /
``load_result``, ``adapter.get_columns_in_relation`` / ``get_relation`` and ``api.Relation``.

As in dbt, they run only when the node is compiled to run (``execute`` is true); while parsing,
``run_query`` and ``load_result`` give None and the adapter calls an empty answer. Results look like
dbt's agate tables where macros read them: ``table.columns[0].values()``, ``table.rows``,
``row['name']`` / ``row[0]``, ``table.column_names``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import SupportsIndex, overload


class Row(tuple[object, ...]):
    """One row: by position (``row[0]``) or by column name (``row['id']``), as an agate row."""

    _names: tuple[str, ...] = ()

    def __new__(cls, values: tuple[object, ...], names: tuple[str, ...]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    @overload
    def __getitem__(self, key: SupportsIndex | str) -> object: ...

    @overload
    def __getitem__(self, key: slice) -> tuple[object, ...]: ...

    def __getitem__(self, key: SupportsIndex | str | slice) -> object:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._names.index(key))
            except ValueError:
                raise KeyError(key) from None
        return tuple.__getitem__(self, key)

    def get(self, key: str, default: object = None) -> object:
        return self[key] if key in self._names else default

    def keys(self) -> list[str]:
        return list(self._names)

    def values(self) -> list[object]:
        return list(self)

    def items(self) -> list[tuple[str, object]]:
        return list(zip(self._names, self, strict=True))

    def dict(self) -> dict[str, object]:
        return dict(self.items())


class TableColumn:
    """One column of a result: ``.name`` and ``.values()``."""

    def __init__(self, name: str, values: list[object]) -> None:
        self.name = name
        self._values = values

    def values(self) -> list[object]:
        return list(self._values)

    def __iter__(self) -> Iterator[object]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class _Columns(list[TableColumn]):
    """``table.columns``: by position, or by name (``table.columns['id']``)."""

    @overload
    def __getitem__(self, key: SupportsIndex | str) -> TableColumn: ...

    @overload
    def __getitem__(self, key: slice) -> list[TableColumn]: ...

    def __getitem__(self, key: SupportsIndex | str | slice) -> TableColumn | list[TableColumn]:
        if isinstance(key, str):
            for column in self:
                if column.name == key:
                    return column
            raise KeyError(key)
        return list.__getitem__(self, key)

    def keys(self) -> list[str]:
        return [c.name for c in self]

    def items(self) -> list[tuple[str, TableColumn]]:  # agate's MappedSequence: name -> column
        return [(c.name, c) for c in self]


class Table:
    """What ``run_query`` returns (shaped as the agate table dbt returns)."""

    def __init__(self, columns: list[str], rows: list[tuple[object, ...]]) -> None:
        names = tuple(columns)
        self.column_names = names
        self.rows = [Row(tuple(r), names) for r in rows]
        self.columns = _Columns(TableColumn(n, [r[i] for r in rows]) for i, n in enumerate(names))

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __bool__(self) -> bool:
        return True  # an empty result is still a result ({% if results %} is true in dbt too)

    def print_table(self, *args: object, **kwargs: object) -> str:
        return ""

    def to_dict(self) -> list[dict[str, object]]:
        return [r.dict() for r in self.rows]


class Column:
    """A warehouse column, as ``adapter.get_columns_in_relation`` gives it (dbt's Column)."""

    _STRINGS = ("varchar", "text", "char", "string", "character varying")
    _NUMBERS = ("int", "bigint", "smallint", "tinyint", "hugeint", "integer", "decimal", "numeric", "double",
                "float", "real", "ubigint", "uinteger")

    def __init__(self, name: str, data_type: str) -> None:
        self.name = self.column = name
        self.data_type = self.dtype = data_type

    @property
    def quoted(self) -> str:
        return '"' + self.name.replace('"', '""') + '"'

    def _base(self) -> str:
        return self.data_type.lower().split("(", 1)[0].strip()

    def is_string(self) -> bool:
        return self._base() in self._STRINGS

    def is_number(self) -> bool:
        return self._base() in self._NUMBERS

    def is_numeric(self) -> bool:
        return self._base() in ("decimal", "numeric")

    def is_integer(self) -> bool:
        return self._base() in ("int", "bigint", "smallint", "tinyint", "hugeint", "integer", "ubigint", "uinteger")

    def is_float(self) -> bool:
        return self._base() in ("double", "float", "real")

    def __repr__(self) -> str:
        return f"<Column {self.name} ({self.data_type})>"


class StatementResults:
    """``{% call statement('name', fetch_result=True) %}`` ... and ``load_result('name')``."""

    def __init__(self) -> None:
        self.results: dict[str, dict[str, object]] = {}

    def store(self, name: str, table: Table | None) -> None:
        data = [tuple(r) for r in table.rows] if table is not None else []
        self.results[name] = {"response": "OK", "data": data, "table": table}

    def load(self, name: str) -> dict[str, object] | None:
        return self.results.get(name)
