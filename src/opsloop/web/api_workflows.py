"""HTTP routes of the workflows subsystem: the runs JSON API and the Slack interactions endpoint (the Claim
button). The handlers call ``opsloop.workflows.runs`` and the engine (``app.services["workflows"]``)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..workflows import runs
from ..workflows.project_files import WORKFLOWS
from . import openapi
from ._handler import Handler
from ._params import not_found

if TYPE_CHECKING:
    from ..app import App


def routes(app: App) -> list[Route]:
    def known() -> set[str]:
        return set(WORKFLOWS.of(app.project))

    async def list_runs(request: Request) -> Response:
        q = openapi.RUNS.query(request)
        try:
            found = await asyncio.to_thread(runs.list_runs, app.store, q.workflow, q.status, q.since, q.until, q.limit)
        except runs.RunError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"runs": [r.summary() for r in found]})

    async def show_run(request: Request) -> Response:
        try:
            detail = await asyncio.to_thread(runs.run_detail, app.store, request.path_params["run_id"])
        except runs.RunError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse(detail)

    def require_run(run_id: str) -> None:
        if runs.get_run(app.store, run_id) is None:
            raise not_found(f"no run {run_id!r}; list runs with GET /api/runs", "run_id")

    def kick() -> None:
        if "workflows" in app.services:
            app.workflows.kick()

    async def rerun(request: Request) -> Response:
        spec = await openapi.RERUN.body(request)
        await asyncio.to_thread(require_run, request.path_params["run_id"])
        try:
            new = await asyncio.to_thread(runs.rerun, app.store, request.path_params["run_id"], spec.from_step,
                                          spec.input)
        except runs.RunError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        kick()
        return JSONResponse({"rerun_of": request.path_params["run_id"], "id": new}, status_code=202)

    async def cancel(request: Request) -> Response:
        await asyncio.to_thread(require_run, request.path_params["run_id"])
        try:
            run = await asyncio.to_thread(runs.cancel_run, app.store, request.path_params["run_id"])
        except runs.RunError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse(run.summary())

    async def replay(request: Request) -> Response:
        spec = await openapi.REPLAY_RUNS.body(request)
        try:
            pairs = await asyncio.to_thread(runs.replay_runs, app.store, spec.workflow, spec.status, spec.since,
                                            spec.until, spec.limit)
        except runs.RunError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        kick()
        return JSONResponse({"results": [{"original": o, "id": n} for o, n in pairs]}, status_code=202)

    def pauser(paused: bool) -> Handler:
        async def handler(request: Request) -> Response:
            name = request.path_params["workflow"]
            try:
                await asyncio.to_thread(runs.set_paused, app.store, name, paused, known())
            except runs.RunError as exc:
                return JSONResponse({"error": str(exc)}, status_code=404)
            kick()
            return JSONResponse({"workflow": name, "paused": paused})

        return handler

    async def list_workflows(request: Request) -> Response:
        paused = await asyncio.to_thread(runs.paused_workflows, app.store)
        return JSONResponse({"workflows": [
            {"name": wf.name, "source": wf.source, "on": wf.on, "schedule": wf.schedule.cron if wf.schedule else None,
             "paused": wf.name in paused}
            for wf in WORKFLOWS.of(app.project).values()
        ]})

    async def slack_interactions(request: Request) -> Response:
        return await _slack_interaction(app, request)

    return [
        Route("/api/runs", list_runs),
        Route("/api/runs/replay", replay, methods=["POST"]),
        Route("/api/runs/{run_id}", show_run),
        Route("/api/runs/{run_id}/rerun", rerun, methods=["POST"]),
        Route("/api/runs/{run_id}/cancel", cancel, methods=["POST"]),
        Route("/api/workflows", list_workflows),
        Route("/api/workflows/{workflow}/pause", pauser(True), methods=["POST"]),
        Route("/api/workflows/{workflow}/resume", pauser(False), methods=["POST"]),
        Route("/slack/interactions", slack_interactions, methods=["POST"]),
    ]


async def _slack_interaction(app: App, request: Request) -> Response:
    """Slack posts ``payload=<json>`` (form-encoded) when someone clicks a button; it must answer within 3 s."""
    from ..events.signatures import SignedRequest, make_preset
    from ..project.config import SignatureConfig

    secret = app.project.secret("SLACK_SIGNING_SECRET")
    if not secret:
        return JSONResponse(
            {"error": "SLACK_SIGNING_SECRET is not set; add it to .env (Slack app > Basic Information)"},
            status_code=503,
        )
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    preset = make_preset(SignatureConfig(preset="slack", secret_env="SLACK_SIGNING_SECRET"), secret)  # noqa: S106
    reason = preset.verify(SignedRequest(body=body, headers=headers, url=str(request.url)), time.time())
    if reason is not None:
        return JSONResponse({"error": f"Slack signature check failed: {reason}"}, status_code=401)
    try:
        payload = json.loads(parse_qs(body.decode())["payload"][0])
    except (KeyError, IndexError, ValueError, UnicodeDecodeError):
        return JSONResponse({"error": "expected a form field 'payload' holding JSON"}, status_code=400)
    if payload.get("type") != "block_actions":
        return Response(status_code=200)
    user = payload.get("user") or {}
    for action in payload.get("actions") or []:
        if not str(action.get("action_id", "")).startswith("opsloop_"):
            continue
        try:
            value = json.loads(action.get("value") or "{}")
        except ValueError:
            continue
        name = value.get("event")
        if not isinstance(name, str) or not name:
            continue
        data = {
            "ref": value.get("ref"),
            "run": value.get("run"),
            "action": action.get("action_id"),
            "user": {"id": user.get("id"), "name": user.get("name") or user.get("username"),
                     "username": user.get("username")},
            "channel": (payload.get("channel") or {}).get("id"),
            "message_ts": (payload.get("message") or {}).get("ts") or (payload.get("container") or {}).get(
                "message_ts"),
        }
        await app.emit(name, data, source="slack")
    return Response(status_code=200)
