"""Live traffic for ``opsloop demo``: demo requests, claims and missed SLAs, purchases, churns, profile
edits and logins, sent through the real HTTP endpoints with the project's signatures."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..app import App
from ..events._signatures import SignedRequest, make_preset
from . import payloads
from .people import Person, make_person


@dataclass
class TrafficState:
    pending: list[Person] = field(default_factory=list)
    claimed: list[Person] = field(default_factory=list)
    customers: list[Person] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)


class Traffic:
    """Generates the example company's day, compressed into minutes."""

    def __init__(self, app: App, url: str, seed: int = 7, first_key: int = 900_000) -> None:
        self.app = app
        self.url = url.rstrip("/")
        self.rng = random.Random(seed)
        self.key = first_key
        self.state = TrafficState()

    async def post(self, client: httpx.AsyncClient, endpoint: str, payload: dict[str, Any]) -> int:
        cfg = self.app.project.endpoints.get(endpoint)
        if cfg is None:
            return 0
        preset = make_preset(cfg.signature, self.app.project.secret(cfg.signature.secret_env or ""))
        body = json.dumps(payload).encode()
        headers = {"content-type": "application/json"}
        headers.update(preset.sign(SignedRequest(body, {"webhook-id": f"demo_{time.time_ns()}"}), time.time()))
        try:
            response = await client.post(f"{self.url}/hooks/{endpoint}", content=body, headers=headers)
        except httpx.HTTPError:
            return 0
        self.state.sent[endpoint] = self.state.sent.get(endpoint, 0) + 1
        return response.status_code

    async def step(self, client: httpx.AsyncClient) -> str:
        """One action; returns its name."""
        s, rng, now = self.state, self.rng, time.time()
        roll = rng.random()
        if roll < 0.45 or not (s.pending or s.claimed or s.customers):
            self.key += 1
            person = make_person(rng, self.key)
            if not person.company:
                person.company = rng.choice(["Initech", "Hooli", "Globex"])
                person.email = person.email.split("@")[0] + "@" + person.company.lower() + ".example"
            s.pending.append(person)
            await self.post(client, "demo_request", payloads.demo_request(person, now))
            return "demo_request"
        if roll < 0.60 and s.pending:
            person = s.pending.pop(0)
            s.claimed.append(person)
            await self.app.emit("demo_request.claimed",
                                {"email": person.email, "claimed_by": rng.choice(["sam", "alex", "kim"])},
                                source="demo")
            return "claim"
        if roll < 0.75 and (s.claimed or s.pending):
            person = (s.claimed or s.pending).pop(0)
            s.customers.append(person)
            await self.post(client, "stripe", payloads.subscription(person, now, "created", 0))
            await self.post(client, "stripe", payloads.invoice_paid(person, now, rng.choice([4900, 9900]), 0))
            return "purchase"
        if roll < 0.82 and s.customers:
            person = s.customers.pop(rng.randrange(len(s.customers)))
            await self.post(client, "stripe", payloads.subscription(person, now, "deleted", 1))
            return "churn"
        if roll < 0.92 and s.customers:
            person = rng.choice(s.customers)
            person.phone = f"+1 415 555 {rng.randint(1000, 9999)}"
            await self.post(client, "app", payloads.app_event(person, now, "user.updated"))
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
