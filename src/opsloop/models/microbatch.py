"""dbt's ``microbatch`` incremental strategy (dbt 1.9+), as dbt-core plans it and dbt-duckdb writes it.

A microbatch model names its time column (``event_time``), a ``batch_size`` (hour, day, month, year), where
its history starts (``begin``) and how many batches before the current one a normal build redoes
(``lookback``, default 1). A build splits the time between its start and now into batches and runs them
in order; each batch reads only its window of every ref and source that has an ``event_time`` config, and
replaces that window of the table (delete then insert, on DuckDB as dbt-duckdb does). The windows:

- the first build (or ``--full-refresh``): from ``begin`` to the end of the current period;
- later builds: the current period and ``lookback`` periods before it;
- ``--event-time-start`` / ``--event-time-end`` (a backfill): the periods that cover that range.

Times are UTC; a window is ``[start, end)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ..errors import Problem
from .nodes import Model

BATCH_SIZES = ("hour", "day", "month", "year")


@dataclass(frozen=True)
class Batch:
    """One window ``[start, end)`` of a microbatch model."""

    start: datetime
    end: datetime
    size: str

    @property
    def label(self) -> str:
        """How dbt names a batch: ``2024-09-17`` (day), ``2024-09-17T16`` (hour), ``2024-09``, ``2024``."""
        fmt = {"year": "%Y", "month": "%Y-%m", "day": "%Y-%m-%d", "hour": "%Y-%m-%dT%H"}[self.size]
        return self.start.strftime(fmt)

    @property
    def id(self) -> str:
        """dbt's ``model.batch.id``: the label without dashes (``20240917``)."""
        return self.label.replace("-", "")

    def context(self) -> dict[str, object]:
        """``model.batch`` in the model's Jinja: ``id``, ``event_time_start``, ``event_time_end``."""
        return {"id": self.id, "event_time_start": self.start, "event_time_end": self.end}

    def predicate(self, column: str) -> str:
        """``column >= 'start' and column < 'end'``, with the times written as dbt writes them."""
        return f"{column} >= '{self.start}' and {column} < '{self.end}'"

    def filtered(self, relation: str, column: str) -> str:
        """A ref or source read by a batch: only the rows of its window (dbt's event-time filter)."""
        return f"(select * from {relation} where {self.predicate(column)})"


def as_utc(value: object) -> datetime | None:
    """A ``begin`` / ``--event-time-*`` value as a UTC datetime (an ISO string, a date or a datetime)."""
    if isinstance(value, datetime):
        found = value
    elif isinstance(value, date):
        found = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        try:
            found = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    return found.replace(tzinfo=UTC) if found.tzinfo is None else found.astimezone(UTC)


def truncate(ts: datetime, size: str) -> datetime:
    """The start of the period ``ts`` falls in."""
    if size == "hour":
        return datetime(ts.year, ts.month, ts.day, ts.hour, tzinfo=UTC)
    if size == "day":
        return datetime(ts.year, ts.month, ts.day, tzinfo=UTC)
    if size == "month":
        return datetime(ts.year, ts.month, 1, tzinfo=UTC)
    return datetime(ts.year, 1, 1, tzinfo=UTC)


def shift(ts: datetime, size: str, periods: int) -> datetime:
    """The start of the period ``periods`` after (or before, when negative) the one ``ts`` falls in."""
    start = truncate(ts, size)
    if size == "hour":
        return start + timedelta(hours=periods)
    if size == "day":
        return start + timedelta(days=periods)
    if size == "month":
        months = start.year * 12 + start.month - 1 + periods
        return start.replace(year=months // 12, month=months % 12 + 1)
    return start.replace(year=start.year + periods)


def ceiling(ts: datetime, size: str) -> datetime:
    """``ts`` when it starts a period, else the start of the next one."""
    start = truncate(ts, size)
    return start if start == ts else shift(start, size, 1)


def plan(config: Mapping[str, object], incremental: bool, now: datetime, event_time_start: datetime | None = None,
         event_time_end: datetime | None = None) -> list[Batch]:
    """The batches a build runs, in order (``config`` was checked by ``config_problems``)."""
    size = str(config["batch_size"])
    end = ceiling(event_time_end or now, size)
    if event_time_start is not None:
        start = truncate(event_time_start, size)
    elif not incremental:
        begin = as_utc(config.get("begin"))
        assert begin is not None  # checked at parse
        start = truncate(begin, size)
    else:  # the current period and `lookback` before it (end is a period's start: one more, as dbt counts)
        start = shift(end, size, -(lookback(config) + 1))
    batches = [Batch(start, shift(start, size, 1), size)]
    while batches[-1].end < end:
        batches.append(Batch(batches[-1].end, shift(batches[-1].end, size, 1), size))
    batches[-1] = Batch(batches[-1].start, end, size)
    return batches


def lookback(config: Mapping[str, object]) -> int:
    value = config.get("lookback")
    return 1 if value is None else int(str(value))


def config_problems(model: Model, line: int | None) -> list[Problem]:
    """What a microbatch model must set, as dbt checks it at parse (and dbt-duckdb when it runs)."""
    config = model.config
    out: list[Problem] = []

    def bad(message: str, hint: str) -> None:
        out.append(Problem(model.file, line, f"microbatch model {model.name!r}: {message}", hint))

    if model.language == "python":
        bad("Python models cannot use the microbatch strategy (dbt refuses it too)", "write it as a SQL model")
    event_time = config.get("event_time")
    if not isinstance(event_time, str) or not event_time:
        bad("needs an event_time config (the name of its time column)", "add event_time='created_at' to config()")
    begin = config.get("begin")
    if begin is None:
        bad("needs a begin config (the earliest time to build from)", "add begin='2024-01-01' to config()")
    elif as_utc(begin) is None:
        bad(f"begin must be an ISO date or datetime, not {begin!r}", "write it as begin='2024-01-01'")
    if config.get("batch_size") not in BATCH_SIZES:
        bad(f"batch_size must be one of {', '.join(BATCH_SIZES)}, not {config.get('batch_size')!r}",
            "add batch_size='day' to config()")
    value = config.get("lookback")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        bad(f"lookback must be a whole number of batches, not {value!r}", "write it as lookback=1")
    concurrent = config.get("concurrent_batches")
    if concurrent is not None and not isinstance(concurrent, bool):  # 'false' as text would mean true
        bad(f"concurrent_batches must be true or false, not {concurrent!r}", "write it as concurrent_batches=false")
    if config.get("unique_key"):
        bad("unique_key is not used: each batch replaces its time window (dbt-duckdb refuses it too)",
            "remove unique_key, or use incremental_strategy='merge'")
    return out
