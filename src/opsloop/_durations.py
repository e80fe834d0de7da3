"""Parsing of human durations ("15m", "24h", "2s", "1d") and sizes ("512KB", "1MB")."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}


def parse_duration(value: str | float | int) -> float:
    """Seconds in ``value``; a bare number is seconds. Raises ``ValueError`` with the accepted forms."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration; write a number with a unit, like 500ms, 30s, 15m, 24h, 7d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_size(value: str | int) -> int:
    """Bytes in ``value``; a bare number is bytes."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size; write a number with a unit, like 512KB or 1MB")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])
