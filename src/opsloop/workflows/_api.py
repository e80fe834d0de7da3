"""``@workflow``: what a workflow is, what starts it, and its flow control."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, overload

from .._durations import parse_duration

if TYPE_CHECKING:
    from .context import Context

WorkflowFn = Callable[["Context"], Awaitable[object]]


@dataclass(frozen=True)
class Schedule:
    """A cron schedule in a time zone; ``catch_up`` says what to do with ticks missed while down."""

    cron: str
    timezone: str = "UTC"
    catch_up: Literal["skip", "run_once"] = "skip"


@dataclass(frozen=True)
class CancelOn:
    """A matching event cancels a run that has not finished (``match`` sees ``event`` and ``trigger``)."""

    event: str
    match: str | None = None


@dataclass
class WorkflowDef:
    """One workflow: a function of a :class:`Context`, its triggers and flow control."""

    name: str
    fn: WorkflowFn
    on: list[str] = field(default_factory=list)
    when: str | None = None
    schedule: Schedule | None = None
    retries: int = 3
    retry_backoff: float = 1.0
    step_timeout: float | None = None
    concurrency: int | None = None
    concurrency_key: str | None = None
    debounce: float | None = None
    debounce_key: str | None = None
    idempotency: str | None = None
    cancel_on: list[CancelOn] = field(default_factory=list)
    priority: int | str = 0
    source: str = ""
    line: int | None = None

    def triggered_by(self, event_name: str) -> bool:
        for pattern in self.on:
            if pattern in ("*", event_name):
                return True
            if pattern.endswith(".*") and event_name.startswith(pattern[:-1]):
                return True
        return False


@overload
def workflow(
    fn: WorkflowFn,
    *,
    name: str | None = None,
    on: str | list[str] | None = None,
    when: str | None = None,
    schedule: str | None = None,
    timezone: str = "UTC",
    catch_up: Literal["skip", "run_once"] = "skip",
    on_model: str | None = None,
    on_segment: str | None = None,
    segment_event: Literal["entered", "exited"] = "entered",
    retries: int = 3,
    retry_backoff: str | float = 1.0,
    step_timeout: str | float | None = None,
    concurrency: int | None = None,
    concurrency_key: str | None = None,
    debounce: str | float | None = None,
    debounce_key: str | None = None,
    idempotency: str | None = None,
    cancel_on: list[CancelOn] | None = None,
    priority: int | str = 0,
) -> WorkflowDef: ...


@overload
def workflow(
    fn: None = None,
    *,
    name: str | None = None,
    on: str | list[str] | None = None,
    when: str | None = None,
    schedule: str | None = None,
    timezone: str = "UTC",
    catch_up: Literal["skip", "run_once"] = "skip",
    on_model: str | None = None,
    on_segment: str | None = None,
    segment_event: Literal["entered", "exited"] = "entered",
    retries: int = 3,
    retry_backoff: str | float = 1.0,
    step_timeout: str | float | None = None,
    concurrency: int | None = None,
    concurrency_key: str | None = None,
    debounce: str | float | None = None,
    debounce_key: str | None = None,
    idempotency: str | None = None,
    cancel_on: list[CancelOn] | None = None,
    priority: int | str = 0,
) -> Callable[[WorkflowFn], WorkflowDef]: ...


def workflow(
    fn: WorkflowFn | None = None,
    *,
    name: str | None = None,
    on: str | list[str] | None = None,
    when: str | None = None,
    schedule: str | None = None,
    timezone: str = "UTC",
    catch_up: Literal["skip", "run_once"] = "skip",
    on_model: str | None = None,
    on_segment: str | None = None,
    segment_event: Literal["entered", "exited"] = "entered",
    retries: int = 3,
    retry_backoff: str | float = 1.0,
    step_timeout: str | float | None = None,
    concurrency: int | None = None,
    concurrency_key: str | None = None,
    debounce: str | float | None = None,
    debounce_key: str | None = None,
    idempotency: str | None = None,
    cancel_on: list[CancelOn] | None = None,
    priority: int | str = 0,
) -> WorkflowDef | Callable[[WorkflowFn], WorkflowDef]:
    """Declare a durable workflow in ``workflows/*.py``.

    Example::

        from opsloop import workflow, Context

        @workflow(on="demo_request.created")
        async def greet(ctx: Context) -> None:
            await ctx.step("notify", notify, ctx.event["data"]["email"])
            claim = await ctx.wait_for_event("demo_request.claimed",
                                             match="event.data.email == trigger.data.email", timeout="15m")
            if claim is None:
                await ctx.step("escalate", escalate)

    Triggers: ``on`` (event names, ``prefix.*`` patterns) with an optional ``when`` Jinja condition,
    ``schedule`` (cron, with ``timezone`` and ``catch_up``), ``on_model`` (a ``model.built`` event of that
    model), ``on_segment`` (``segment.entered`` / ``segment.exited``). Values in ``when``, ``*_key``,
    ``idempotency`` and ``priority`` are Jinja over ``event``.
    """

    def wrap(func: WorkflowFn) -> WorkflowDef:
        triggers = [on] if isinstance(on, str) else list(on or [])
        condition = when
        if on_model:
            triggers.append("model.built")
            condition = _and(condition, f"event.data.model == {on_model!r}")
        if on_segment:
            triggers.append(f"segment.{segment_event}")
            condition = _and(condition, f"event.data.segment == {on_segment!r}")
        return WorkflowDef(
            name=name or func.__name__,
            fn=func,
            on=triggers,
            when=condition,
            schedule=Schedule(schedule, timezone, catch_up) if schedule else None,
            retries=retries,
            retry_backoff=parse_duration(retry_backoff),
            step_timeout=parse_duration(step_timeout) if step_timeout is not None else None,
            concurrency=concurrency,
            concurrency_key=concurrency_key,
            debounce=parse_duration(debounce) if debounce is not None else None,
            debounce_key=debounce_key,
            idempotency=idempotency,
            cancel_on=list(cancel_on or []),
            priority=priority,
        )

    if fn is not None:
        return wrap(fn)
    return wrap


def _and(left: str | None, right: str) -> str:
    return f"({left}) and ({right})" if left else right
