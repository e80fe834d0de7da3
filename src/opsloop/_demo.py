"""``opsloop demo``: run the example project with no accounts, with generated traffic."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

from .events._signatures import SignedRequest

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Radia"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton", "Perlman"]
COMPANIES = ["Initech", "Globex", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Acme", "Soylent", "Tyrell"]


def fake_demo_request(rng: random.Random) -> dict[str, str]:
    first, last, company = rng.choice(FIRST), rng.choice(LAST), rng.choice(COMPANIES)
    return {"email": f"{first}.{last}@{company}.example".lower(), "name": f"{first} {last}", "company": company}


async def _traffic(app: object, url: str, rate: float, stop: asyncio.Event) -> None:
    import httpx

    from .app import App

    assert isinstance(app, App)
    rng = random.Random(7)
    cfg = app.project.endpoints.get("demo_request")
    if cfg is None:
        return
    from .events._signatures import make_preset

    preset = make_preset(cfg.signature, app.project.secret(cfg.signature.secret_env or ""))
    async with httpx.AsyncClient(timeout=10) as client:
        n = 0
        while not stop.is_set():
            n += 1
            body = json.dumps(fake_demo_request(rng)).encode()
            headers = preset.sign(SignedRequest(body, {"webhook-id": f"demo-{time.time_ns()}-{n}"}), time.time())
            try:
                await client.post(f"{url}/hooks/demo_request", content=body, headers=headers)
            except httpx.HTTPError:
                pass
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0 / rate)
            except TimeoutError:
                pass


def run_demo(directory: Path, port: int = 8620, host: str = "127.0.0.1", duration: float | None = None,
             rate: float = 0.5) -> None:
    import uvicorn

    from .app import App
    from .project.scaffold import init_project
    from .web import create_asgi

    if not (directory / "opsloop.yml").exists():
        init_project(directory, example="saas")
        print(f"Wrote the example company to {directory}/", flush=True)
    app = App.from_path(directory, port=port, host=host)
    asgi = create_asgi(app)
    url = f"http://{host}:{port}"
    config = uvicorn.Config(asgi, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)

    async def main() -> None:
        stop = asyncio.Event()
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                await serving
                return
            await asyncio.sleep(0.05)
        print(f"opsloop demo is running: {url}/", flush=True)
        print(f"log in with the token: {app.settings.api_token}", flush=True)
        print("traffic: a demo request every few seconds; Ctrl-C stops", flush=True)
        traffic = asyncio.create_task(_traffic(app, url, rate, stop))
        if duration is not None:
            try:
                await asyncio.wait_for(asyncio.shield(serving), timeout=duration)
            except TimeoutError:
                server.should_exit = True
        await serving
        stop.set()
        await traffic
        count = app.store.count_events()
        app.close()
        print(f"demo stopped; {count} events in the log", flush=True)

    asyncio.run(main())
