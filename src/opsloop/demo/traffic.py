"""Live traffic for ``opsloop demo``: demo requests, claims (and missed SLAs), purchases, churns, profile
edits and logins, all sent through the real HTTP endpoints with the project's signatures — a claim is a
click on the Slack Claim button (``POST /slack/interactions``, Slack-signed), naming the accepted demo
request's event id as the SLA helper expects (``event.data.ref == trigger.id``)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx

from .._json import JsonObject
from ..app import App
from ..events.signatures import SignedRequest, make_preset
from ..project.config import SignatureConfig
from . import payloads
from .people import Person, make_person

CLAIMERS = [("U01SAM", "sam"), ("U02ALEX", "alex"), ("U03KIM", "kim")]


@dataclass
class Request:
    """A demo request the traffic sent, with the event id the inbox accepted it under."""

    person: Person
    event_id: str
    at: float


@dataclass
class TrafficState:
    pending: list[Request] = field(default_factory=list)
    claimed: list[Person] = field(default_factory=list)
    unclaimed: list[Person] = field(default_factory=list)
    customers: list[Person] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)


class Traffic:
    """Generates the example company's day, compressed into minutes.

    About one demo request in four is never claimed, so its SLA is missed (the Slack message is updated);
    the others are claimed within a few seconds.
    """

    def __init__(self, app: App, url: str, seed: int = 7, first_key: int = 900_000,
                 unclaimed_share: float = 0.25) -> None:
        self.app = app
        self.url = url.rstrip("/")
        self.rng = random.Random(seed)
        self.key = first_key
        self.unclaimed_share = unclaimed_share
        self.state = TrafficState()

    def _count(self, what: str) -> None:
        self.state.sent[what] = self.state.sent.get(what, 0) + 1

    async def post(self, client: httpx.AsyncClient, endpoint: str, payload: JsonObject) -> JsonObject:
        """POST a signed webhook; returns the inbox's answer (``{"id": ...}`` on 202), empty on failure."""
        cfg = self.app.project.endpoints.get(endpoint)
        if cfg is None:
            return {}
        preset = make_preset(cfg.signature, self.app.project.secret(cfg.signature.secret_env or ""))
        body = json.dumps(payload).encode()
        headers = {"content-type": "application/json"}
        headers.update(preset.sign(SignedRequest(body, {"webhook-id": f"demo_{time.time_ns()}"}), time.time()))
        try:
            response = await client.post(f"{self.url}/hooks/{endpoint}", content=body, headers=headers)
        except httpx.HTTPError:
            return {}
        self._count(endpoint)
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        return answer if isinstance(answer, dict) and response.status_code < 300 else {}

    async def claim(self, client: httpx.AsyncClient, event_id: str, user: tuple[str, str]) -> int:
        """Click the Claim button of the demo request ``event_id``'s Slack message, as Slack would send it."""
        secret = self.app.project.secret("SLACK_SIGNING_SECRET")
        if not secret:
            await self.app.emit("demo_request.claimed", {"ref": event_id, "by": user[1]}, source="demo")
            return 200
        action = {"action_id": "opsloop_claim", "value": json.dumps({"event": "demo_request.claimed",
                                                                     "ref": event_id})}
        payload = {"type": "block_actions", "user": {"id": user[0], "name": user[1], "username": user[1]},
                   "actions": [action], "channel": {"id": "C0SALES"}}
        body = urlencode({"payload": json.dumps(payload)}).encode()
        url = f"{self.url}/slack/interactions"
        preset = make_preset(SignatureConfig(preset="slack", secret_env="SLACK_SIGNING_SECRET"), secret)  # noqa: S106
        headers = {"content-type": "application/x-www-form-urlencoded"}
        headers.update(preset.sign(SignedRequest(body, {}, url=url), time.time()))
        try:
            response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError:
            return 0
        return response.status_code

    def _new_person(self) -> Person:
        self.key += 1
        person = make_person(self.rng, self.key)
        if not person.company:
            person.company = self.rng.choice(["Initech", "Hooli", "Globex"])
            person.email = person.email.split("@")[0] + "@" + person.company.lower() + ".example"
        return person

    async def step(self, client: httpx.AsyncClient) -> str:
        """One action; returns its name."""
        s, rng, now = self.state, self.rng, time.time()
        roll = rng.random()
        if roll < 0.40 or not (s.pending or s.claimed or s.customers):
            person = self._new_person()
            answer = await self.post(client, "demo_request", payloads.demo_request(person, now))
            if answer.get("id"):
                s.pending.append(Request(person, str(answer["id"]), now))
            return "demo_request"
        if roll < 0.58 and s.pending:
            request = s.pending.pop(0)
            if rng.random() < self.unclaimed_share:
                s.unclaimed.append(request.person)  # nobody claims it: the SLA is missed
                self._count("left_unclaimed")
                return "unclaimed"
            status = await self.claim(client, request.event_id, rng.choice(CLAIMERS))
            s.claimed.append(request.person)
            self._count("claim" if status == 200 else f"claim_failed_{status}")
            return "claim"
        if roll < 0.72 and (s.claimed or s.unclaimed):
            person = (s.claimed or s.unclaimed).pop(0)
            s.customers.append(person)
            await self.post(client, "app", payloads.app_event(person, now, "user.signed_up"))
            await self.post(client, "stripe", payloads.subscription(person, now, "created", 0))
            await self.post(client, "stripe", payloads.invoice_paid(person, now, rng.choice([4900, 9900]), 0))
            self._count("purchase")
            return "purchase"
        if roll < 0.78 and len(s.customers) > 2:
            person = s.customers.pop(rng.randrange(len(s.customers)))
            await self.post(client, "stripe", payloads.subscription(person, now, "deleted", 1))
            self._count("churn")
            return "churn"
        if roll < 0.88 and s.customers:
            person = rng.choice(s.customers)
            person.phone = f"+1 415 555 {rng.randint(1000, 9999)}"
            await self.post(client, "app", payloads.app_event(person, now, "user.updated"))
            self._count("profile_edit")
            return "profile_edit"
        if s.customers:
            person = rng.choice(s.customers)
            await self.post(client, "app", payloads.app_event(person, now, "user.login"))
            return "login"
        return "idle"

    async def run(self, rate: float, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            while not stop.is_set():
                await self.step(client)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=1.0 / rate)
                except TimeoutError:
                    pass
