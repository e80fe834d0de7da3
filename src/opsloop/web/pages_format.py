"""How pages show values a person reads: times, durations, JSON, statuses.

Installed as Jinja filters and tests on the pages' environment (``install``). A time is rendered by the
server as ``<time>`` with a relative text ("3 min ago") and the exact UTC time as its tooltip;
``static/opsloop.js`` then turns the tooltip into the reader's local time and keeps the relative text
current. No page prints an epoch number: values whose key ends in ``_at`` (or that look like one, in the
range of this century's Unix times) are shown as times.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from jinja2 import Environment
from markupsafe import Markup, escape

EPOCH_MIN = 946_684_800.0  # 2000-01-01
EPOCH_MAX = 4_102_444_800.0  # 2100-01-01
TIME_KEYS = ("_at", "_until", "deadline", "received", "updated", "created")


def _as_float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    return None


def looks_like_time(value: object, key: str | None = None) -> bool:
    """True for a number that reads as a Unix time: named like one (``*_at``) or in 2000..2100."""
    number = _as_float(value)
    if number is None:
        return False
    if key is not None and str(key).endswith(TIME_KEYS):
        return number > 0
    return EPOCH_MIN <= number <= EPOCH_MAX and isinstance(value, float)


def relative(ts: float, now: float | None = None) -> str:
    """``"just now"``, ``"3 min ago"``, ``"in 2 h"``, ``"5 days ago"``."""
    delta = (time.time() if now is None else now) - ts
    future = delta < 0
    s = abs(delta)
    if s < 5:
        return "just now"
    if s < 60:
        text = f"{int(s)} s"
    elif s < 3600:
        text = f"{int(s // 60)} min"
    elif s < 86_400:
        text = f"{int(s // 3600)} h"
    elif s < 86_400 * 60:
        days = int(s // 86_400)
        text = f"{days} day" + ("s" if days != 1 else "")
    else:
        return exact(ts)[:10]
    return f"in {text}" if future else f"{text} ago"


def exact(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def when(value: object, empty: str = "") -> Markup:
    """A ``<time>`` element: relative text, the exact time on hover (local time once opsloop.js ran)."""
    ts = _as_float(value)
    if ts is None or ts <= 0:
        return escape(empty)
    iso = datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")
    return Markup('<time datetime="{}" data-ts="{}" title="{}">{}</time>').format(
        iso, f"{ts:.3f}", exact(ts), relative(ts)
    )


def duration(seconds: object) -> str:
    """``"12 ms"``, ``"3.4 s"``, ``"2 min 5 s"``, ``"1 h 20 min"``, ``"2 days 3 h"``."""
    s = _as_float(seconds)
    if s is None:
        return ""
    s = max(0.0, s)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86_400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{int(s // 86_400)} days {int(s % 86_400 // 3600)} h"


def between(start: object, end: object) -> str:
    a, b = _as_float(start), _as_float(end)
    if a is None or b is None:
        return ""
    return duration(b - a)


def pretty_json(value: object) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False, sort_keys=False)


def json_text(value: object) -> str:
    """One line of JSON (escaped by the template like any text, unlike Jinja's ``tojson``)."""
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def install(env: Environment) -> None:
    """Register the filters (``when``, ``duration``, ``between``, ``pretty_json``) and the ``time_like`` test."""
    env.filters["when"] = when
    env.filters["duration"] = duration
    env.filters["between"] = between
    env.filters["pretty_json"] = pretty_json
    env.filters["json_text"] = json_text
    env.tests["time_like"] = looks_like_time
