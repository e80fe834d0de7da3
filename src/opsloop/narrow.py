"""Narrowing values whose type the code cannot know: store rows, warehouse cells, JSON answers, config values.

A driver types a row's items as anything, ``json.loads`` gives back any JSON value, YAML any mapping; a reader
narrows a value here before it computes with it, so ``mypy --strict`` checks everything after. Two kinds:

- **Strict** (``as_int``, ``as_float``, ``as_str``, ``opt_*``, ``opt_number``): a value opsloop wrote itself
  (a ``wf_runs`` column, a count the engine returned). Another shape is a bug, so it is a ``NarrowError``
  naming what was read::

      attempts = as_int(row[16], "wf_runs.attempts")

- **Lenient** (``mapping``, ``records``, ``number``, ``json_object``, ``json_list``, ``json_objects``): a value
  somebody else wrote (a vendor's answer, a page's JSON, a user's config). Another shape reads as empty (or
  None), never as an error::

      for item in json_objects(json_object(answer).get("results")): ...

This module imports nothing from opsloop (an import-linter contract keeps it so): every package may use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import SupportsFloat, SupportsIndex, SupportsInt, TypeAlias

__all__ = [
    "JsonObject", "JsonValue", "NarrowError", "Row", "as_float", "as_int", "as_str", "json_list", "json_object",
    "json_objects", "mapping", "number", "opt_bytes", "opt_float", "opt_int", "opt_number", "opt_str", "records",
]

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
"""A JSON value of any kind: what ``json.loads`` gives back and what an event's payload holds. It is recursive (an
object's values and a list's items are JSON values too); a reader narrows it before it indexes."""

JsonObject: TypeAlias = "dict[str, JsonValue]"
"""A JSON object (``{...}``)."""

Row: TypeAlias = Mapping[str, object]
"""One row read by column name (``QueryResult.as_dicts()``, an answer's row, a profile's record): the
values are the driver's or the sender's, so a reader narrows each one it uses."""


class NarrowError(TypeError, ValueError):
    """A value is not of the type its reader needs. It is a ``TypeError`` (the wrong kind of value) and a
    ``ValueError`` (text that is not a number), so code that caught either from ``int(value)`` still does."""


def _is_bool(value: object) -> bool:
    """``True``/``False``, and numpy's booleans (which also pass for an index)."""
    return isinstance(value, bool) or type(value).__name__ in ("bool", "bool_")


def _refuse(value: object, what: str, expected: str) -> NarrowError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return NarrowError(f"{what} should be {expected}, not {shown} ({type(value).__name__})")


def as_int(value: object, what: str = "the value") -> int:
    """``value`` as an ``int``: an int, an integral float or Decimal (a count is ``Decimal`` on some engines),
    or the text of an integer. ``True``, NaN, infinities and fractions are refused::

        as_int(wh.query("SELECT count(*) FROM t").rows[0][0], "the row count")
    """
    if _is_bool(value):
        raise _refuse(value, what, "an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str | bytes):
        try:
            return int(value)
        except ValueError:
            raise _refuse(value, what, "an integer") from None
    if isinstance(value, float | Decimal):
        if not math.isfinite(value) or value != int(value):
            raise _refuse(value, what, "an integer")
        return int(value)
    if isinstance(value, SupportsIndex):  # numpy's and the drivers' own integer types
        return value.__index__()
    if isinstance(value, SupportsInt) and isinstance(value, SupportsFloat):  # their other numbers
        return as_int(float(value), what)
    raise _refuse(value, what, "an integer")


def as_float(value: object, what: str = "the value") -> float:
    """``value`` as a ``float``: an int, a float, a Decimal, or the text of a number. ``True`` and NaN
    are refused (an infinity is a float)::

        as_float(row[18], "wf_runs.created_at")
    """
    if _is_bool(value):
        raise _refuse(value, what, "a number")
    if isinstance(value, str | bytes):
        try:
            out = float(value)
        except ValueError:
            raise _refuse(value, what, "a number") from None
    elif isinstance(value, SupportsFloat):
        out = float(value)
    else:
        raise _refuse(value, what, "a number")
    if math.isnan(out):
        raise _refuse(value, what, "a number")
    return out


def as_str(value: object, what: str = "the value") -> str:
    """``value`` when it is text; anything else (a number too) is refused::

        as_str(row[0], "wf_runs.id")
    """
    if isinstance(value, str):
        return value
    raise _refuse(value, what, "text")


def opt_int(value: object, what: str = "the value") -> int | None:
    """None for None (SQL NULL, a missing key), else ``as_int(value)``."""
    return None if value is None else as_int(value, what)


def opt_float(value: object, what: str = "the value") -> float | None:
    """None for None (SQL NULL, a missing key), else ``as_float(value)``."""
    return None if value is None else as_float(value, what)


def opt_str(value: object, what: str = "the value") -> str | None:
    """None for None (SQL NULL, a missing key), else ``as_str(value)``."""
    return None if value is None else as_str(value, what)


def opt_bytes(value: object, what: str = "the value") -> bytes | None:
    """None for None (SQL NULL), else raw bytes as the driver read them (``bytes``, ``bytearray`` or a
    ``memoryview``, as ``bytes``); text and anything else are refused."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise _refuse(value, what, "bytes or None")


def opt_number(value: object, what: str = "the value") -> int | float | None:
    """``value`` unchanged when it is None, an int or a float (NaN too: a result that has none); ``True``
    and anything else are refused. For a cell whose int should stay an int (a count in an answer)."""
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    raise _refuse(value, what, "a number or None")


def number(value: object) -> int | float | None:
    """A value that should be a number (a time, seconds, a position in an answer); anything else —
    ``True``, NaN, the text of a number — is None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if isinstance(value, float) and math.isnan(value) else value


def mapping(value: object) -> dict[str, object]:
    """A value that should be an object (a config's ``meta``, a step's ``input``) as a dict with text keys
    (a YAML key ``1`` reads as ``"1"``); anything else is empty."""
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def records(value: object) -> list[Row]:
    """The objects in a value that should be a list of them (a run's ``steps``, a profile's ``records``);
    other items, and a value that is not a list, give nothing."""
    return [mapping(item) for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def json_object(value: JsonValue) -> JsonObject:
    """A JSON value that should be an object (an answer, one of its rows); anything else is empty."""
    return value if isinstance(value, dict) else {}


def json_list(value: JsonValue) -> list[JsonValue]:
    """A JSON value that should be a list; anything else is empty."""
    return value if isinstance(value, list) else []


def json_objects(value: JsonValue) -> list[JsonObject]:
    """The objects in a JSON value that should be a list of them (an answer's rows); other items give nothing."""
    return [item for item in json_list(value) if isinstance(item, dict)]
