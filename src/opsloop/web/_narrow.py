"""Reading the subsystems' answers (run details, profiles, sync runs) where a page needs one shape of value.

Those answers are JSON-shaped: objects of any values, as the JSON API sends them. A page that computes
with a value narrows it first; a value of another shape reads as empty (or None), never as an error page.
"""

from __future__ import annotations

from collections.abc import Mapping


def mapping_of(value: object) -> Mapping[str, object]:
    """A value that should be an object (a step's ``input``, a profile's ``fields``); anything else is empty."""
    return value if isinstance(value, dict) else {}


def records_of(value: object) -> list[Mapping[str, object]]:
    """The objects in a value that should be a list of them (a run's ``steps``, a profile's ``records``)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def number_of(value: object) -> float | int | None:
    """A value that should be a number (a time, seconds, a position); anything else (``True`` too) is None."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None
