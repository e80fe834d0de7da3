"""``Context``: what a running workflow uses to take steps, sleep, wait for events and emit them.

A workflow function is replayed from the top whenever its run resumes (after a sleep, a wait or a
crash). Every ``ctx.step`` / ``ctx.sleep`` / ``ctx.wait_for_event`` / ``ctx.emit`` call gets a step id
(its name, with ``#2``, ``#3`` ... when a name repeats), and a completed step's result is read back from
the state store instead of running again. Code between steps must therefore be deterministic.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Unpack

from .._durations import parse_duration
from .._json import JsonObject, JsonValue
from ..errors import OpsloopError, TerminalError
from . import _templates
from ._runstore import StepMemo

if TYPE_CHECKING:
    from ..app import App
    from ._api import WorkflowDef
    from ._journal import Journal, WaitSpec
    from ._runstore import RunRow
    from .sla import SlaOptions

__all__ = ["MAX_STEP_OUTPUT", "WAKE_EARLY", "Context", "StepFailed", "StepMemo", "StepOutputError", "Suspend",
           "event_dict"]

MAX_STEP_OUTPUT = 4 * 1024 * 1024

WAKE_EARLY = 0.05
"""Seconds before a sleep's or a wait's deadline that the executor claims its run; the run waits out
the rest in the process, so the claim's own latency (a store round trip, more on a busy machine) does
not make timers late. A sleep that has at most this long left does not park."""


class StepFailed(TerminalError):
    """A step failed for good (a TerminalError, or retries exhausted); the run fails with it."""


class StepOutputError(TerminalError):
    """A step's result cannot be stored (not JSON, or larger than the limit)."""


class Suspend(BaseException):
    """Park the run until ``wake_at`` (None: until an event pokes it)."""

    def __init__(self, status: str, wake_at: float | None) -> None:
        super().__init__(status)
        self.status = status
        self.wake_at = wake_at


@dataclass
class _Counter:
    seen: dict[str, int] = field(default_factory=dict)

    def next(self, name: str) -> str:
        count = self.seen.get(name, 0) + 1
        self.seen[name] = count
        return name if count == 1 else f"{name}#{count}"


def _now() -> float:
    return time.time()


async def _sleep_until(deadline: float) -> None:
    """Return at ``deadline`` by the wall clock, never before: ``asyncio.sleep`` runs on the loop's monotonic
    clock and may wake up to its resolution early (a timer woke 0.9 ms before its deadline under load)."""
    while (left := deadline - _now()) > 0:
        await asyncio.sleep(left)


def event_dict(seq: int, event_id: str, name: str, payload: JsonValue, received_at: float, source: str | None,
               endpoint: str | None) -> JsonObject:
    """How an event looks to workflows and templates: ``event.data.email``."""
    return {"id": event_id, "seq": seq, "name": name, "data": payload, "received_at": received_at,
            "source": source, "endpoint": endpoint}


class Context:
    """Handed to a workflow function. See the module docstring for replay rules."""

    def __init__(self, app: App, run: RunRow, memo: dict[str, StepMemo], journal: Journal,
                 definition: WorkflowDef, time_scale: float = 1.0) -> None:
        self._app = app
        self._journal = journal
        self._wf = definition
        self._time_scale = time_scale
        self._run = run
        self._memo = memo
        self._ids = _Counter()
        self._position = len(memo)
        self._suspect = run.recovered
        self._last_seq = run.start_seq
        self.steps: dict[str, JsonValue] = {}
        """Outputs of the steps taken so far in this run, by step id (YAML templates read ``steps.<id>``)."""
        self.attempt = 1
        """Attempt number of the step running now (1 on the first try)."""
        self.step_id: str | None = None
        """Id of the step running now."""

    # -- what the run is about ---------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self._run.id

    @property
    def workflow(self) -> str:
        return self._run.workflow

    @property
    def event(self) -> JsonObject | None:
        """The event that started the run: ``{"id", "name", "data", "seq", "received_at", ...}``."""
        return self._run.trigger

    @property
    def events(self) -> list[JsonObject]:
        """Every event handed to this run (several when the workflow debounces)."""
        return self._run.events

    @property
    def input(self) -> JsonValue:
        """The run's input (``opsloop rerun --input``), else the trigger event's data."""
        if self._run.input is not None:
            return self._run.input
        return self._run.trigger["data"] if self._run.trigger else None

    @property
    def app(self) -> App:
        return self._app

    @property
    def possibly_repeated(self) -> bool:
        """True when the current step may already have run once (a retry, or the step a crash cut off).

        Actions use it to look for their own earlier side effect before repeating it.
        """
        return self.attempt > 1 or self._suspect

    def template_context(self, **extra: object) -> dict[str, object]:
        """Variables for Jinja values: ``event``, ``trigger``, ``events``, ``steps``, ``run``, ``input``."""
        base: dict[str, object] = {
            "event": self.event,
            "trigger": self.event,
            "events": self.events,
            "steps": self.steps,
            "input": self.input,
            "run": {"id": self.run_id, "workflow": self.workflow},
            **extra,
        }
        return {k: _templates.wrap(v) for k, v in base.items()}

    def render(self, value: object, **extra: object) -> object:
        return _templates.render(value, self.template_context(**extra))

    # -- steps -------------------------------------------------------------------------------
    def _take(self, name: str) -> tuple[str, StepMemo | None]:
        step_id = self._ids.next(name)
        return step_id, self._memo.get(step_id)

    def _position_next(self) -> int:
        self._position += 1
        return self._position

    async def step(
        self,
        name: str,
        fn: Callable[..., object],
        *args: object,
        retries: int | None = None,
        timeout: str | float | None = None,
        **kwargs: object,
    ) -> JsonValue:
        """Run ``fn(*args, **kwargs)`` once; its (JSON) result is stored and replayed afterwards.

        A ``TerminalError`` fails the step at once; any other exception is retried ``retries`` times
        (default: the workflow's) with exponential backoff, honouring ``retry_after`` when the error has one.
        Each failed attempt is recorded (status ``retrying``), so a restart continues the count and the
        backoff instead of starting over.
        """
        step_id, memo = self._take(name)
        if memo is not None and memo.status == "completed":
            self.steps[step_id] = memo.output
            return memo.output
        wf = self._wf
        limit = wf.retries if retries is None else retries
        limit_s = parse_duration(timeout) if timeout is not None else wf.step_timeout
        started = _now()
        attempt = 0
        if memo is not None and memo.status == "retrying":
            # interrupted between attempts (a crash or a stop): wait the backoff it was waiting, then go on
            attempt = memo.attempts
            await asyncio.sleep(wf.retry_backoff * (2 ** (attempt - 1)) * self._time_scale)
        while True:
            attempt += 1
            self.attempt, self.step_id = attempt, step_id
            try:
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await (asyncio.wait_for(result, limit_s) if limit_s else result)
                break
            except Suspend:
                raise
            except asyncio.CancelledError:
                raise
            except TerminalError as exc:
                await self._journal.record_step(step_id, self._position_next(), "step", "failed",
                                               None, _describe(exc), attempt, started)
                raise StepFailed(f"step {step_id!r} failed: {_describe(exc)}") from exc
            except Exception as exc:
                if attempt > limit:
                    await self._journal.record_step(step_id, self._position_next(), "step", "failed",
                                                   None, _describe(exc), attempt, started)
                    raise StepFailed(
                        f"step {step_id!r} failed after {attempt} attempts: {_describe(exc)}"
                    ) from exc
                retry_after = getattr(exc, "retry_after", None)
                backoff = wf.retry_backoff * (2 ** (attempt - 1)) * self._time_scale
                await self._journal.record_step(step_id, self._position_next(), "step", "retrying",
                                               None, _describe(exc), attempt, started)
                await asyncio.sleep(float(retry_after) if retry_after else backoff)
        encoded = _encode(step_id, result)
        output: JsonValue = json.loads(encoded)
        await self._journal.record_step(step_id, self._position_next(), "step", "completed", encoded,
                                       None, attempt, started)
        self._suspect = False
        self.attempt, self.step_id = 1, None
        self.steps[step_id] = output
        return output

    async def sleep(self, duration: str | float | None = None, *, until: datetime | float | None = None,
                    name: str | None = None) -> None:
        """Sleep durably: the deadline is stored, so a restart keeps it (``"15m"``, ``30``, ``until=dt``).

        Durations are multiplied by the app's ``time_scale`` (tests shorten them).
        """
        step_id, memo = self._take(name or "sleep")
        if memo is not None:
            deadline = _stored_number(memo.output, "until")
        else:
            if until is not None:
                deadline = until.timestamp() if isinstance(until, datetime) else float(until)
            elif duration is not None:
                deadline = _now() + parse_duration(duration) * self._time_scale
            else:
                raise OpsloopError("ctx.sleep needs a duration (\"15m\") or until=")
            await self._journal.record_step(step_id, self._position_next(), "sleep", "completed",
                                           json.dumps({"until": deadline}), None, 1, _now())
        self.steps[step_id] = {"until": deadline}
        remaining = deadline - _now()
        if remaining > WAKE_EARLY:
            raise Suspend("sleeping", deadline)
        if remaining > 0:
            await _sleep_until(deadline)

    async def wait_for_event(self, name: str, match: str | None = None, timeout: str | float | None = None, *,
                             step: str | None = None) -> JsonObject | None:
        """Wait for an event named ``name`` for which ``match`` (Jinja over ``event``, ``trigger``) holds.

        Events that arrived after this run started count too, even before this call (no race window).
        Returns the event, or None when ``timeout`` passes first.
        """
        step_id, memo = self._take(step or f"wait:{name}")
        if memo is not None and memo.status == "completed":
            found_before = memo.output if isinstance(memo.output, dict) else None
            self._note_event(found_before)
            self.steps[step_id] = found_before
            return found_before
        if memo is not None:
            spec = _stored_wait(memo.input)
        else:
            deadline = (_now() + parse_duration(timeout) * self._time_scale) if timeout is not None else None
            spec = {"event": name, "match": match, "after_seq": self._last_seq, "deadline": deadline}
            await self._journal.register_wait(step_id, self._position_next(), spec)
        found = await self._journal.find_event(spec, self.template_context())
        deadline = spec["deadline"]
        if found is None and deadline is not None and 0 < deadline - _now() <= WAKE_EARLY:
            # claimed just before the deadline (WAKE_EARLY): wait it out here, then look once more
            await _sleep_until(deadline)
            found = await self._journal.find_event(spec, self.template_context())
        if found is None and deadline is not None and _now() >= deadline:
            await self._journal.resolve_wait(step_id, None)
            self.steps[step_id] = None
            return None
        if found is None:
            raise Suspend("waiting", spec["deadline"])
        await self._journal.resolve_wait(step_id, found)
        self._note_event(found)
        self.steps[step_id] = found
        return found

    def _note_event(self, event: JsonObject | None) -> None:
        seq = event.get("seq") if event is not None else None
        if isinstance(seq, int):
            self._last_seq = max(self._last_seq, seq)

    async def emit(self, name: str, data: object = None, *, step: str | None = None) -> str:
        """Append an event to the log (once: the step and the event commit together); returns its id."""
        step_id, memo = self._take(step or f"emit:{name}")
        if memo is not None and memo.status == "completed":
            self.steps[step_id] = memo.output
            return str(_stored_field(memo.output, "id"))
        event_id = await self._journal.emit(step_id, self._position_next(), name, data)
        self.steps[step_id] = {"id": event_id}
        return event_id

    async def action(self, kind: str, *, step: str | None = None, retries: int | None = None,
                     timeout: str | float | None = None, **params: object) -> JsonValue:
        """Run a built-in action as a step: ``await ctx.action("slack.post", channel="#sales", text="hi")``."""
        from .actions import get_action

        act = get_action(kind)
        return await self.step(step or kind, act, self, params, retries=retries, timeout=timeout)

    async def sla(self, **options: Unpack[SlaOptions]) -> JsonObject:
        """The SLA pattern (post, wait, update on breach and on claim); see ``opsloop.workflows.sla``."""
        from .sla import run_sla

        return await run_sla(self, **options)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, OpsloopError) else f"{type(exc).__name__}: {text}"


def _stored_field(output: JsonValue, key: str) -> JsonValue:
    """``key`` of a completed step's stored output (a JSON object this module wrote)."""
    if not isinstance(output, dict) or key not in output:
        raise StepFailed(f"a stored step result has no {key!r}: {output!r}")
    return output[key]


def _stored_number(output: JsonValue, key: str) -> float:
    value = _stored_field(output, key)
    if not isinstance(value, int | float):
        raise StepFailed(f"a stored step result's {key!r} is not a number: {value!r}")
    return float(value)


def _stored_wait(spec: JsonValue) -> WaitSpec:
    """A wait step's stored input, as ``wait_for_event`` wrote it."""
    event, match, deadline = _stored_field(spec, "event"), _stored_field(spec, "match"), _stored_field(spec, "deadline")
    return {"event": str(event), "match": match if isinstance(match, str) else None,
            "after_seq": int(_stored_number(spec, "after_seq")),
            "deadline": float(deadline) if isinstance(deadline, int | float) else None}


def _encode(step_id: str, value: object) -> str:
    try:
        encoded = json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StepFailed(
            f"step {step_id!r} returned a value that is not JSON ({exc}); return dicts, lists, strings and numbers"
        ) from exc
    if len(encoded) > MAX_STEP_OUTPUT:
        raise StepOutputError(
            f"step {step_id!r} returned {len(encoded)} bytes, over the {MAX_STEP_OUTPUT}-byte limit for a stored "
            "result; store the data in the warehouse and return a reference to it"
        )
    return encoded
