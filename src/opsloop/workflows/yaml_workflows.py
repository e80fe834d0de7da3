"""YAML workflows (``workflows/*.yml``): validated with file:line, run by a small interpreter over Context.

    on: demo_request.created
    steps:
      - id: notify
        slack.post: {channel: "#sales", text: "New request from {{ event.data.email }}"}
      - id: claim
        wait_for: {event: demo_request.claimed, match: "event.data.ref == trigger.id", timeout: 15m}
      - if: "steps.claim is none"
        then:
          - slack.update: {message: "{{ steps.notify }}", text: "Unclaimed for 15 min"}
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .._durations import parse_duration
from .._json import JsonValue
from ..errors import Problem
from ..project.loader import Project, validate_model
from ..project.yaml_files import Loc, LocatedYaml, YamlProblem, load_yaml
from . import _templates
from ._api import CancelOn, Schedule, WorkflowDef
from .actions import ACTIONS
from .context import Context

if TYPE_CHECKING:
    from .sla import SlaOptions

CONTROL = ("event.emit", "wait_for", "sleep", "if", "sla")
STEP_KINDS = tuple(sorted(ACTIONS)) + CONTROL
M = TypeVar("M", bound=BaseModel)

STEP_OPTIONS = {"id", "retries", "timeout", "then", "else", "description"}


def _duration(value: object) -> float:
    return parse_duration(_duration_value(value))


def _duration_value(value: object) -> str | float:
    """A duration as YAML (or a template) gave it: a number of seconds, else its text (``15m``)."""
    return value if isinstance(value, int | float | str) else str(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ScheduleSpec(_Strict):
    cron: str
    timezone: str = "UTC"
    catch_up: Literal["skip", "run_once"] = "skip"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '0 9 * * 1-5', or 6 fields with seconds)")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name like Europe/Paris") from None
        return value


class ConcurrencySpec(_Strict):
    limit: int = Field(ge=1)
    key: str | None = None


class DebounceSpec(_Strict):
    period: float
    key: str | None = None

    _period = field_validator("period", mode="before")(classmethod(lambda cls, v: _duration(v)))


class CancelSpec(_Strict):
    event: str
    match: str | None = None


class WorkflowSpec(_Strict):
    name: str
    description: str = ""
    on: str | list[str] | None = None
    when: str | None = None
    schedule: ScheduleSpec | None = None
    retries: int = Field(default=3, ge=0)
    retry_backoff: float = 1.0
    timeout: float | None = None
    concurrency: ConcurrencySpec | None = None
    debounce: DebounceSpec | None = None
    idempotency: str | None = None
    cancel_on: list[CancelSpec] = []
    priority: int | str = 0
    steps: list[object]

    @field_validator("retry_backoff", "timeout", mode="before")
    @classmethod
    def _durations(cls, value: object) -> float | None:
        return None if value is None else _duration(value)


class WaitSpec(_Strict):
    event: str
    match: str | None = None
    timeout: str | float | None = None


class EmitSpec(_Strict):
    name: str
    data: object = None


class SlaSpec(_Strict):
    channel: str
    text: str
    within: str | float
    wait_for: str | None = None
    match: str | None = None
    claim_button: str | None = "Claim"
    breached_text: str | None = None
    claimed_text: str | None = None
    escalate: list[object] = []
    max_wait: str | float = "7d"


@dataclass
class StepNode:
    id: str
    kind: str
    params: object
    retries: int | None = None
    timeout: float | None = None
    then: list[StepNode] = field(default_factory=list)
    otherwise: list[StepNode] = field(default_factory=list)


class _Checker:
    def __init__(self, doc: LocatedYaml, rel: str, problems: list[Problem]) -> None:
        self.doc = doc
        self.rel = rel
        self.problems = problems
        self.ids: set[str] = set()

    def problem(self, loc: Loc, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.rel, self.doc.line_of(loc), message, hint))

    def templates(self, value: object, loc: Loc, known: list[str], expression: bool = False,
                  extra: tuple[str, ...] = ()) -> None:
        for text in _templates.strings_in(value):
            is_expr = expression
            if not is_expr and "{{" not in text and "{%" not in text:
                continue
            error = _templates.check(text, is_expr)
            if error:
                self.problem(loc, f"bad Jinja in {text!r}: {error}", "fix the expression")
                continue
            for ref in sorted(_templates.step_refs(text, is_expr) - set(known) - set(extra)):
                close = difflib.get_close_matches(ref, known, 1)
                hint = f"did you mean {close[0]!r}?" if close else (
                    f"steps before this one: {', '.join(known)}" if known else "no step comes before this one")
                self.problem(loc, f"unknown step {ref!r} in {text!r}", hint)

    def steps(self, items: object, loc: Loc, known: list[str]) -> list[StepNode]:
        nodes: list[StepNode] = []
        if not isinstance(items, list):
            self.problem(loc, "steps must be a list of steps", "write each step as '- slack.post: {...}'")
            return nodes
        for index, item in enumerate(items):
            node = self.step(item, (*loc, index), known, index)
            if node is not None:
                nodes.append(node)
        return nodes

    def step(self, item: object, loc: Loc, known: list[str], index: int) -> StepNode | None:
        if not isinstance(item, dict):
            self.problem(loc, "a step must be a mapping with one action", f"actions: {', '.join(STEP_KINDS)}")
            return None
        kinds = [k for k in item if k in STEP_KINDS]
        for key in item:
            if key not in STEP_KINDS and key not in STEP_OPTIONS:
                close = difflib.get_close_matches(str(key), [*STEP_KINDS, *STEP_OPTIONS], 1)
                self.problem((*loc, key), f"unknown action or step key {key!r}",
                             f"did you mean {close[0]!r}?" if close else f"actions: {', '.join(STEP_KINDS)}")
        if len(kinds) != 1:
            if not kinds and any(k not in STEP_OPTIONS for k in item):
                return None
            self.problem(loc, f"a step needs exactly one action, found {len(kinds)}: {', '.join(kinds) or 'none'}",
                         f"actions: {', '.join(STEP_KINDS)}")
            return None
        kind = kinds[0]
        params = item[kind]
        step_id = str(item.get("id") or f"{kind.replace('.', '_')}_{'_'.join(str(p) for p in loc[1:])}")
        if step_id in self.ids:
            self.problem((*loc, "id"), f"step id {step_id!r} is used twice", "give each step its own id")
        self.ids.add(step_id)
        ploc = (*loc, kind)
        node = StepNode(step_id, kind, params, retries=item.get("retries"))
        if item.get("timeout") is not None:
            try:
                node.timeout = parse_duration(item["timeout"])
            except ValueError as exc:
                self.problem((*loc, "timeout"), str(exc))
        if kind in ACTIONS:
            if not isinstance(params, dict):
                self.problem(ploc, f"{kind} takes a mapping of options")
            else:
                try:
                    ACTIONS[kind][1].model_validate(params)
                except Exception as exc:
                    self._pydantic(exc, ploc, kind)
                self.templates(params, ploc, known)
        elif kind == "wait_for":
            spec = self._model(WaitSpec, params, ploc, kind)
            if spec is not None:
                self.templates({"event": spec.event, "timeout": spec.timeout}, ploc, known)
                if spec.match:
                    self.templates(spec.match, (*ploc, "match"), known, expression=True)
                self._duration(spec.timeout, (*ploc, "timeout"))
        elif kind == "event.emit":
            if self._model(EmitSpec, params, ploc, kind) is not None:
                self.templates(params, ploc, known)
        elif kind == "sleep":
            if isinstance(params, dict):
                if set(params) - {"until", "for"}:
                    self.problem(ploc, "sleep takes a duration (15m) or {until: <time>} / {for: <duration>}")
                self.templates(params, ploc, known)
            elif isinstance(params, str) and "{{" in params:
                self.templates(params, ploc, known)
            else:
                self._duration(params, ploc)
        elif kind == "if":
            if not isinstance(params, str):
                self.problem(ploc, "if takes a Jinja condition, e.g. \"steps.claim is none\"")
            else:
                self.templates(params, ploc, known, expression=True)
            node.then = self.steps(item.get("then", []), (*loc, "then"), list(known))
            node.otherwise = self.steps(item.get("else", []), (*loc, "else"), list(known))
            if "then" not in item:
                self.problem(loc, "if needs a 'then:' list of steps")
            known.extend(n.id for n in [*node.then, *node.otherwise])
        elif kind == "sla":
            sla = self._model(SlaSpec, params, ploc, kind)
            if sla is not None:
                self.templates({"channel": sla.channel, "text": sla.text}, ploc, known)
                self.templates({"b": sla.breached_text, "c": sla.claimed_text}, ploc, known,
                               extra=())
                if sla.match:
                    self.templates(sla.match, (*ploc, "match"), known, expression=True)
                self._duration(sla.within, (*ploc, "within"))
                node.then = self.steps(sla.escalate, (*ploc, "escalate"), [*known, step_id])
        if kind != "if":
            known.append(step_id)
        return node

    def _duration(self, value: object, loc: Loc) -> None:
        if value is None or (isinstance(value, str) and "{{" in value):
            return
        try:
            parse_duration(_duration_value(value))
        except ValueError as exc:
            self.problem(loc, str(exc))

    def _model(self, model: type[M], params: object, loc: Loc, kind: str) -> M | None:
        try:
            return model.model_validate(params)
        except Exception as exc:
            self._pydantic(exc, loc, kind)
            return None

    def _pydantic(self, exc: Exception, loc: Loc, kind: str) -> None:
        errors = getattr(exc, "errors", None)
        if errors is None:
            self.problem(loc, f"{kind}: {exc}")
            return
        for err in errors():
            given = err.get("input")
            if isinstance(given, str) and ("{{" in given or "{%" in given):
                continue  # a template: its type is known only when it renders
            where = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                self.problem((*loc, *err["loc"]), f"{kind}: unknown option {where!r}", "check the spelling in the docs")
            elif err["type"] == "missing":
                self.problem(loc, f"{kind}: missing required option {where!r}", "add it")
            else:
                self.problem((*loc, *err["loc"]), f"{kind}: {where}: {err['msg']}".replace(": : ", ": "))


def load_yaml_workflow(project: Project, path: Path, rel: str, problems: list[Problem]) -> WorkflowDef | None:
    try:
        doc = load_yaml(path, project.root)
    except YamlProblem as exc:
        problems.append(exc.problem)
        return None
    if not isinstance(doc.data, dict):
        problems.append(Problem(rel, 1, "expected a mapping describing one workflow (on:, steps: ...)"))
        return None
    # YAML 1.1 reads a bare `on:` key as the boolean true (as GitHub Actions users know)
    data = {"name": path.stem, **{("on" if k is True else k): v for k, v in doc.data.items()}}
    for loc in [loc for loc in doc.lines if loc and loc[0] is True]:
        doc.lines[("on", *loc[1:])] = doc.lines[loc]
    before = len(problems)
    spec: WorkflowSpec | None = validate_model(WorkflowSpec, doc, rel, data, problems)
    if spec is None:
        return None
    checker = _Checker(doc, rel, problems)
    for key in ("when", "idempotency"):
        value = getattr(spec, key)
        if value:
            checker.templates(value, (key,), [], expression=key == "when")
    for i, cancel in enumerate(spec.cancel_on):
        if cancel.match:
            checker.templates(cancel.match, ("cancel_on", i, "match"), [], expression=True)
    if not spec.on and spec.schedule is None:
        checker.problem(("on",), "the workflow has no trigger", "add 'on: <event name>' or 'schedule: {cron: ...}'")
    nodes = checker.steps(spec.steps, ("steps",), [])
    if len(problems) > before:
        return None
    return WorkflowDef(
        name=spec.name,
        fn=_interpreter(nodes),
        on=[spec.on] if isinstance(spec.on, str) else list(spec.on or []),
        when=spec.when,
        schedule=(Schedule(spec.schedule.cron, spec.schedule.timezone, spec.schedule.catch_up)
                  if spec.schedule else None),
        retries=spec.retries,
        retry_backoff=spec.retry_backoff,
        step_timeout=spec.timeout,
        concurrency=spec.concurrency.limit if spec.concurrency else None,
        concurrency_key=spec.concurrency.key if spec.concurrency else None,
        debounce=spec.debounce.period if spec.debounce else None,
        debounce_key=spec.debounce.key if spec.debounce else None,
        idempotency=spec.idempotency,
        cancel_on=[CancelOn(c.event, c.match) for c in spec.cancel_on],
        priority=spec.priority,
        source=rel,
        line=1,
    )


def _interpreter(nodes: list[StepNode]) -> Callable[[Context], Awaitable[JsonValue]]:
    async def run(ctx: Context) -> JsonValue:
        await _run_steps(ctx, nodes)
        return ctx.steps.get(nodes[-1].id) if nodes else None

    return run


async def _run_steps(ctx: Context, nodes: list[StepNode]) -> None:
    for node in nodes:
        await _run_step(ctx, node)


async def _run_step(ctx: Context, node: StepNode) -> None:
    kind = node.kind
    if kind == "if":
        chosen = _templates.truthy(_templates.evaluate(str(node.params), ctx.template_context()))
        await _run_steps(ctx, node.then if chosen else node.otherwise)
    elif kind == "sleep":
        params = ctx.render(node.params)
        if isinstance(params, dict) and "until" in params:
            from datetime import datetime

            until = params["until"]
            when = datetime.fromisoformat(str(until)).timestamp() if not isinstance(until, int | float) else until
            await ctx.sleep(until=float(when), name=node.id)
        else:
            await ctx.sleep(_duration_value(params["for"] if isinstance(params, dict) else params), name=node.id)
    elif kind == "wait_for":
        spec = WaitSpec.model_validate(node.params)
        timeout = _duration_value(ctx.render(spec.timeout)) if spec.timeout is not None else None
        await ctx.wait_for_event(str(ctx.render(spec.event)), match=spec.match, timeout=timeout, step=node.id)
    elif kind == "event.emit":
        emit = EmitSpec.model_validate(ctx.render(node.params))
        await ctx.emit(emit.name, emit.data, step=node.id)
    elif kind == "sla":
        sla = SlaSpec.model_validate(node.params)
        escalation = node.then

        async def escalate(c: Context) -> None:
            await _run_steps(c, escalation)

        options: SlaOptions = {
            "step": node.id, "channel": str(ctx.render(sla.channel)), "text": sla.text, "within": sla.within,
            "wait_for": sla.wait_for, "match": sla.match, "claim_button": sla.claim_button,
            "escalate": escalate if escalation else None, "max_wait": sla.max_wait,
        }
        if sla.breached_text is not None:
            options["breached_text"] = sla.breached_text
        if sla.claimed_text is not None:
            options["claimed_text"] = sla.claimed_text
        result = await ctx.sla(**options)
        ctx.steps[node.id] = result
    else:
        params = ctx.render(node.params)
        if not isinstance(params, dict):  # the checker let only a mapping through
            raise TypeError(f"step {node.id}: {kind} takes a mapping of options")
        await ctx.action(kind, step=node.id, retries=node.retries, timeout=node.timeout, **params)
