"""The types of JSON values, as the packages have imported them from here; they live in ``opsloop.narrow``
(beside the functions that narrow them) and are the same objects."""

from __future__ import annotations

from .narrow import JsonObject, JsonValue

__all__ = ["JsonObject", "JsonValue"]
