"""The webhook inbox: verify, parse, validate, redact, deduplicate and durably append."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .._ids import new_id
from .._json import JsonObject, JsonValue
from ..errors import ServerBusy
from ..project import EndpointConfig, Project
from ..state import AppendResult, NewEvent
from .bodies import BodyRefused, parse_body
from .schemas import PayloadValidator
from .signatures import Preset, SignedRequest, make_preset

DROPPED_HEADERS = {"authorization", "cookie", "proxy-authorization"}
REDACTED = "[redacted]"


class Appender(Protocol):
    """Where accepted and refused requests are appended: the group commit, or (in a receiver process) the
    channel to the main process."""

    async def submit(self, event: NewEvent) -> AppendResult: ...


@dataclass
class Outcome:
    """What the HTTP layer answers."""

    status_code: int
    body: JsonObject
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Endpoint:
    config: EndpointConfig
    preset: Preset
    validator: PayloadValidator | None

    @property
    def name(self) -> str:
        return self.config.name


def compile_endpoints(project: Project) -> dict[str, Endpoint]:
    out = {}
    for name, cfg in project.endpoints.items():
        secret = project.secret(cfg.signature.secret_env) if cfg.signature.secret_env else None
        schema = project.schemas.get(name)
        out[name] = Endpoint(cfg, make_preset(cfg.signature, secret), PayloadValidator(schema) if schema else None)
    return out


def redact(payload: JsonValue, paths: list[str]) -> tuple[JsonValue, bool]:
    """Replace the values at dotted ``paths`` (``*`` matches every list item or key)."""
    if not paths:
        return payload, False
    out = copy.deepcopy(payload)
    changed = False

    def visit(child: JsonValue, rest: list[str]) -> JsonValue:
        """``child`` after the rest of the path is applied (the path's end: redacted, unless null)."""
        nonlocal changed
        if rest:
            walk(child, rest)
            return child
        if child is None:
            return None
        changed = True
        return REDACTED

    def walk(node: JsonValue, parts: list[str]) -> None:
        head, rest = parts[0], parts[1:]
        if isinstance(node, dict):
            for key in list(node) if head == "*" else ([head] if head in node else []):
                node[key] = visit(node[key], rest)
        elif isinstance(node, list):
            if head == "*":
                indexes = list(range(len(node)))
            else:
                indexes = [int(head)] if head.isdigit() and int(head) < len(node) else []
            for i in indexes:
                node[i] = visit(node[i], rest)

    for path in paths:
        walk(out, path.split("."))
    return out, changed


def _field(payload: JsonValue, dotted: str) -> JsonValue:
    value = payload
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


class RefusalBudget:
    """How many refused requests each client address may still have stored this minute.

    Bounded: past ``max_clients`` addresses the oldest windows are forgotten (a flood from many
    addresses then stores at most ``per_minute`` per address and window, never unbounded state here).
    """

    def __init__(self, max_clients: int = 10_000) -> None:
        self.max_clients = max_clients
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def take(self, endpoint: str, client: str, per_minute: int, now: float) -> bool:
        """Whether one more refused request from ``client`` may be stored now."""
        key = (endpoint, client)
        start, used = self._windows.pop(key, (now, 0))
        if now - start >= 60.0:
            start, used = now, 0
        allowed = used < per_minute
        self._windows[key] = (start, used + 1 if allowed else used)  # re-inserted last: dicts keep order
        while len(self._windows) > self.max_clients:
            del self._windows[next(iter(self._windows))]
        return allowed


class Inbox:
    def __init__(self, project: Project, committer: Appender, retention_days: int) -> None:
        self.project = project
        self.endpoints = compile_endpoints(project)
        self.committer = committer
        self.retention_days = retention_days
        self.refusals = RefusalBudget()

    def _expires(self, cfg: EndpointConfig, now: float) -> float:
        days = cfg.retention_days if cfg.retention_days is not None else self.retention_days
        return now + days * 86400.0

    async def receive(
        self, name: str, body: bytes, headers: Mapping[str, str], url: str = "", method: str = "POST",
        client: str | None = None,
    ) -> Outcome:
        """Answer one webhook request; ``client`` is the sender's address (rate limits what is stored of
        requests refused for their signature)."""
        endpoint = self.endpoints.get(name)
        if endpoint is None:  # names nothing: an unauthenticated caller learns no endpoint from it
            return Outcome(404, {"error": "no webhook endpoint at this path; see the endpoints in events/*.yml"})
        cfg = endpoint.config
        if len(body) > cfg.max_body:
            return Outcome(413, {"error": f"body of {len(body)} bytes exceeds this endpoint's limit of {cfg.max_body}"})
        now = time.time()
        lower = {k.lower(): v for k, v in headers.items()}
        stored_headers = {k: v for k, v in lower.items() if k not in DROPPED_HEADERS}
        base = NewEvent(
            id=new_id("evt_"),
            name=cfg.event or f"{name}.received",
            received_at=now,
            endpoint=name,
            headers=stored_headers,
            body=body,
            expires_at=self._expires(cfg, now),
        )
        reason = endpoint.preset.verify(SignedRequest(body, lower, url, method), now)
        if reason is not None:
            answer: JsonObject = {"error": "invalid signature", "reason": reason}
            if not self.refusals.take(name, client or "unknown", cfg.refused_per_minute, now):
                return Outcome(401, answer)  # the same answer; past the budget nothing is stored
            kept = body[: cfg.refused_body]
            base.body = kept
            base.status, base.error = "rejected", {
                "reason": f"bad signature: {reason}", "refused": "signature", "client": client,
                "body_size": len(body), "body_truncated": len(kept) < len(body),
            }
            await self._append_quiet(base)
            return Outcome(401, {**answer, "id": base.id})
        try:
            parsed = parse_body(body, cfg.max_depth)
        except BodyRefused as exc:
            base.status, base.error = "rejected", {"reason": str(exc), "refused": "body"}
            await self._append_quiet(base)
            return Outcome(400, {
                "error": str(exc), "id": base.id,
                "hint": "fix the sender; a stored request can be replayed with a corrected payload "
                        "(opsloop replay ID --payload @fixed.json)",
            })
        payload = parsed.payload
        base.name = cfg.event_name_for(payload)
        payload, changed = redact(payload, cfg.redact)
        if changed:
            base.body = json.dumps(payload, separators=(",", ":")).encode()
        else:
            base.payload_text = parsed.text
        base.payload = payload
        if endpoint.validator is not None:
            errors = endpoint.validator.errors(payload)
            if errors:
                listed: list[JsonValue] = [e.as_dict() for e in errors]
                base.status, base.error = "quarantined", {"schema_errors": listed}
                base.expires_at = None
                await self._append_quiet(base)
                return Outcome(
                    422,
                    {"error": "payload does not match the endpoint's schema", "errors": listed, "id": base.id,
                     "quarantined": True},
                )
        idem = cfg.idempotency
        if idem is not None:
            key = lower.get(idem.header.lower()) if idem.header else _field(payload, idem.field or "")
            if key is not None and key != "":
                base.idempotency_key = str(key)
                base.dedupe_until = now + idem.window
        try:
            result = await self.committer.submit(base)
        except ServerBusy as exc:
            return Outcome(503, {"error": str(exc)}, {"Retry-After": str(int(exc.retry_after or 1))})
        if result.duplicate_of:
            return Outcome(200, {"id": result.duplicate_of, "duplicate": True})
        return Outcome(202, {"id": result.event_id, "name": base.name})

    async def _append_quiet(self, event: NewEvent) -> None:
        """Record a refused request; under overload the record is skipped, the answer is the same."""
        try:
            await self.committer.submit(event)
        except ServerBusy:
            pass
