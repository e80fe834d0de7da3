"""``@workflow``: what a workflow is, what starts it, and its flow control."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypedDict, Unpack, overload

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


class WorkflowOptions(TypedDict, total=False):
    """The options of ``@workflow(...)`` (each documented on ``workflow``)."""

    name: str | None
    on: str | list[str] | None
    when: str | None
    schedule: str | None
    timezone: str
    catch_up: Literal["skip", "run_once"]
    on_model: str | None
    on_segment: str | None
    segment_event: Literal["entered", "exited"]
    retries: int
    retry_backoff: str | float
    step_timeout: str | float | None
    concurrency: int | None
    concurrency_key: str | None
    debounce: str | float | None
    debounce_key: str | None
    idempotency: str | None
    cancel_on: list[CancelOn] | None
    priority: int | str



@overload
def workflow(fn: WorkflowFn, **options: Unpack[WorkflowOptions]) -> WorkflowDef: ...


@overload
def workflow(fn: None = None, **options: Unpack[WorkflowOptions]) -> Callable[[WorkflowFn], WorkflowDef]: ...


def workflow(
    fn: WorkflowFn | None = None, **given: Unpack[WorkflowOptions]
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

    unknown = sorted(set(given) - WorkflowOptions.__optional_keys__)
    if unknown:  # a typo in a workflow file is named, as a keyword argument's would be
        raise TypeError(f"@workflow got an unknown option {', '.join(map(repr, unknown))}; its options are: "
                        + ", ".join(WorkflowOptions.__annotations__))
    o = given

    def wrap(func: WorkflowFn) -> WorkflowDef:
        on = o.get("on")
        triggers = [on] if isinstance(on, str) else list(on or [])
        condition = o.get("when")
        on_model, on_segment = o.get("on_model"), o.get("on_segment")
        if on_model:
            triggers.append("model.built")
            condition = _and(condition, f"event.data.model == {on_model!r}")
        if on_segment:
            triggers.append(f"segment.{o.get('segment_event', 'entered')}")
            condition = _and(condition, f"event.data.segment == {on_segment!r}")
        schedule, step_timeout, debounce = o.get("schedule"), o.get("step_timeout"), o.get("debounce")
        return WorkflowDef(
            name=o.get("name") or func.__name__,
            fn=func,
            on=triggers,
            when=condition,
            schedule=Schedule(schedule, o.get("timezone", "UTC"), o.get("catch_up", "skip")) if schedule else None,
            retries=o.get("retries", 3),
            retry_backoff=parse_duration(o.get("retry_backoff", 1.0)),
            step_timeout=parse_duration(step_timeout) if step_timeout is not None else None,
            concurrency=o.get("concurrency"),
            concurrency_key=o.get("concurrency_key"),
            debounce=parse_duration(debounce) if debounce is not None else None,
            debounce_key=o.get("debounce_key"),
            idempotency=o.get("idempotency"),
            cancel_on=list(o.get("cancel_on") or []),
            priority=o.get("priority", 0),
        )

    if fn is not None:
        return wrap(fn)
    return wrap


def _and(left: str | None, right: str) -> str:
    return f"({left}) and ({right})" if left else right
