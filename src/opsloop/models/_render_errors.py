"""Errors while rendering and where they are: ``RenderError`` (a message, its line, a hint), the strict
undefined that stays quiet inside macros as dbt's does, and the helpers that find the line of a template
naming a word or an undefined name, so every message points at file:line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from jinja2 import Undefined

    from ._jinja_objects import _Current


class RenderError(Exception):
    def __init__(self, message: str, line: int | None = None, hint: str = "") -> None:
        super().__init__(message)
        self.line = line
        self.hint = hint



def _no_ctx(name: str) -> NoReturn:
    raise RenderError(f"{name}() cannot be used here")


def _strict_undefined(cur: _Current) -> type[Undefined]:
    from jinja2 import StrictUndefined

    class MacroUndefined(StrictUndefined):
        """Strict in a model's own text; inside a macro an undefined name prints as nothing, as under dbt
        (dbt_utils prints a variable it sets in one branch only: ``{{ select_gb_cols }}``)."""

        def __str__(self) -> str:  # type: ignore[override]
            return "" if cur.depth > 0 else str(super().__str__())

        def __bool__(self) -> bool:  # type: ignore[override]
            return False if cur.depth > 0 else bool(super().__bool__())

        def __iter__(self) -> Iterator[object]:  # type: ignore[override]
            return iter(()) if cur.depth > 0 else super().__iter__()

        def __len__(self) -> int:  # type: ignore[override]
            return 0 if cur.depth > 0 else int(super().__len__())

        def __eq__(self, other: object) -> bool:  # type: ignore[override]
            return type(self) is type(other) if cur.depth > 0 else bool(super().__eq__(other))

        def __ne__(self, other: object) -> bool:  # type: ignore[override]
            return not self.__eq__(other)

        __hash__ = object.__hash__  # type: ignore[assignment]

    return MacroUndefined


def _undefined_name(message: str) -> str:
    import re

    match = re.search(r"'([^']+)' is undefined", message)
    return match.group(1) if match else ""


def _line_of_word(text: str, word: str) -> int | None:
    if not word:
        return None
    import re

    pattern = re.compile(r"\b" + re.escape(word) + r"\b")
    for i, line in enumerate(text.splitlines(), 1):
        if pattern.search(line):
            return i
    return None


def _line_of_call(text: str, message: str) -> int | None:
    import re

    match = re.search(r"'([^']+)'", message)
    return _line_of_word(text, match.group(1)) if match else None
