"""Calendar arithmetic for metric periods: truncating to a grain, stepping, windows, ``--since``."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_WINDOW = re.compile(r"^\s*(\d+)\s*(day|week|month|quarter|year)s?\s*$")
_SINCE = re.compile(r"^\s*(\d+)\s*([dwmqy]|mo)\s*$")
_MONTHS = {"month": 1, "quarter": 3, "year": 12}


def truncate(day: date, grain: str) -> date:
    if grain == "day":
        return day
    if grain == "week":
        return day - timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    if grain == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    if grain == "year":
        return day.replace(month=1, day=1)
    raise ValueError(f"unknown grain {grain!r}; use day, week, month, quarter or year")


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    last = (date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(day.day, last))


def step(day: date, grain: str, n: int = 1) -> date:
    """``day`` moved ``n`` periods of ``grain`` (``day`` must already be truncated for month grains)."""
    if grain == "day":
        return day + timedelta(days=n)
    if grain == "week":
        return day + timedelta(weeks=n)
    return add_months(day, _MONTHS[grain] * n)


def periods_between(start: date, end: date, grain: str) -> list[date]:
    out: list[date] = []
    current = truncate(start, grain)
    last = truncate(end, grain)
    while current <= last and len(out) < 100_000:
        out.append(current)
        current = step(current, grain)
    return out


def periods_apart(earlier: date, later: date, grain: str) -> int:
    if grain == "day":
        return (later - earlier).days
    if grain == "week":
        return (later - earlier).days // 7
    months = (later.year - earlier.year) * 12 + later.month - earlier.month
    return months // _MONTHS[grain]


def parse_window(text: str) -> tuple[int, str]:
    """``7 days`` -> (7, 'day'); raises ValueError with what to write instead."""
    match = _WINDOW.match(text)
    if not match:
        raise ValueError(f"window {text!r} should look like '7 days', '1 month' or '1 year'")
    return int(match.group(1)), match.group(2)


def shift(day: date, window: tuple[int, str], sign: int = -1) -> date:
    n, unit = window
    if unit == "day":
        return day + timedelta(days=sign * n)
    if unit == "week":
        return day + timedelta(weeks=sign * n)
    return add_months(day, sign * n * _MONTHS[unit])


def parse_since(text: str | None, today: date | None = None) -> date | None:
    """``30d``, ``12w``, ``6mo``/``6m``, ``2q``, ``1y`` back from today, or an ISO date; None for none."""
    if text is None or text == "" or text == "all":
        return None
    today = today or datetime.now(UTC).date()
    match = _SINCE.match(text)
    if match:
        n, unit = int(match.group(1)), match.group(2)
        if unit == "d":
            return today - timedelta(days=n)
        if unit == "w":
            return today - timedelta(weeks=n)
        months = {"m": 1, "mo": 1, "q": 3, "y": 12}[unit] * n
        return add_months(today, -months)
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration back from today (30d, 12w, 6mo, 1y) nor a date (2026-01-31)"
        ) from None


def as_date(value: object) -> date | None:
    """A warehouse value (date, datetime, ISO text) as a date."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):  # epoch seconds (ClickHouse via Arrow)
        return datetime.fromtimestamp(value, tz=UTC).date()
    return date.fromisoformat(str(value)[:10])


def as_datetime(value: object) -> object:
    """Epoch seconds become a UTC datetime; anything else is returned as it is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    return value
