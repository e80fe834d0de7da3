"""The types of JSON values: what ``json.loads`` gives back and what an event's payload holds.

``JsonValue`` is recursive (an object's values and a list's items are JSON values too); a reader narrows
it with ``isinstance`` before it indexes, as it must for a payload a sender wrote.
"""

from __future__ import annotations

from typing import TypeAlias

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
"""Any JSON value."""

JsonObject: TypeAlias = "dict[str, JsonValue]"
"""A JSON object (``{...}``)."""
