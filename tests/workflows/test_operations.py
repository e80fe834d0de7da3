"""Operating runs: the CLI verbs and the JSON API against a running server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
from click.testing import Result
from typer.testing import CliRunner

from ..conftest import ServerThread, run_cli, wait_for
from .conftest import emit, runs_of, wait_runs, write_files

FLOW = '''
from pathlib import Path
from opsloop import workflow, Context, TerminalError

LOG = Path(__file__).parent.parent / "effects.log"

def effect(label: str) -> str:
    with LOG.open("a") as f:
        f.write(label + "\\n")
    return label

def check(data: dict) -> str:
    if data.get("bad"):
        raise TerminalError(f"order {data['order']} is bad")
    return "ok"

@workflow(on="order.placed")
async def orders(ctx: Context) -> dict:
    first = await ctx.step("first", effect, f"first {ctx.input['order']}")
    verdict = await ctx.step("check", check, ctx.input)
    if ctx.input.get("wait"):
        await ctx.wait_for_event("order.never", timeout="1h")
    return {"first": first, "verdict": verdict}
'''


def invoke(root: Path, *args: str) -> Result:
    """The CLI in-process (fast); one test per verb family also runs the real `opsloop` command."""
    from opsloop.cli import app

    return CliRunner().invoke(app, [*args, "--project", str(root)])


def cli(root: Path, *args: str) -> object:
    result = invoke(root, *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def effects(root: Path) -> list[str]:
    path = root / "effects.log"
    return path.read_text().splitlines() if path.exists() else []


def test_runs_show_rerun_from_step_with_new_input_and_bulk_replay(project_dir: Path,
                                                                  start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/orders.py": FLOW})
    srv = start(project_dir)
    emit(srv, "order.placed", {"order": 1, "bad": True})
    emit(srv, "order.placed", {"order": 2})
    [failed] = wait_runs(srv, 1, status="failed")
    wait_runs(srv, 1, status="completed")
    listed = cli(project_dir, "runs", "--workflow", "orders", "--status", "failed")
    assert [r["id"] for r in listed] == [failed.id]  # type: ignore[union-attr]
    assert listed[0]["error"] == "step 'check' failed: order 1 is bad"  # type: ignore[index]
    shown = run_cli("runs", "show", failed.id, "--project", str(project_dir))
    assert "first [step] completed attempts=1" in shown.stdout
    assert "check [step] failed attempts=1" in shown.stdout and "error: order 1 is bad" in shown.stdout
    assert "trigger: order.placed" in shown.stdout
    # rerun from the failed step with corrected input: "first" is reused, not run again
    fixed = project_dir / "fixed.json"
    fixed.write_text(json.dumps({"order": 1}))
    new = cli(project_dir, "rerun", failed.id, "--from-step", "check", "--input", f"@{fixed}")
    done = wait_for(lambda: next((r for r in runs_of(srv) if r.id == new["id"] and r.status == "completed"),  # type: ignore[index]
                                 None), what="the rerun")
    assert done.output == {"first": "first 1", "verdict": "ok"} and done.rerun_of == failed.id
    assert effects(project_dir) == ["first 1", "first 2"]
    # bulk replay of every completed run of the workflow (from the start, so "first" runs again)
    replayed = cli(project_dir, "runs", "replay", "--workflow", "orders", "--status", "completed")
    assert len(replayed) == 2  # type: ignore[arg-type]
    wait_runs(srv, 4, status="completed")
    assert sorted(effects(project_dir)) == ["first 1", "first 1", "first 2", "first 2"]
    bad = invoke(project_dir, "rerun", failed.id, "--from-step", "nope")
    assert bad.exit_code == 1 and "has no step 'nope'; its steps are: first, check" in bad.stderr


def test_pause_queues_runs_and_resume_starts_them_cancel_stops_one(project_dir: Path,
                                                                   start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/orders.py": FLOW})
    srv = start(project_dir)
    assert cli(project_dir, "pause", "orders") == {"workflow": "orders", "paused": True}
    emit(srv, "order.placed", {"order": 3})
    wait_for(lambda: runs_of(srv), what="a queued run")
    wait_for(lambda: False if not runs_of(srv) else runs_of(srv)[0].status == "queued", timeout=1.0, what="queued")
    assert effects(project_dir) == []
    cli(project_dir, "resume", "orders")
    wait_runs(srv, 1, status="completed")
    emit(srv, "order.placed", {"order": 4, "wait": True})
    waiting = wait_for(lambda: [r for r in runs_of(srv) if r.status == "waiting"], what="a waiting run")[0]
    assert cli(project_dir, "cancel", waiting.id)["status"] == "cancelled"  # type: ignore[index]
    again = invoke(project_dir, "cancel", waiting.id)
    assert again.exit_code == 1 and "already cancelled" in again.stderr
    unknown = run_cli("pause", "nope", "--project", str(project_dir))
    assert unknown.returncode == 1 and "no workflow 'nope'; workflows: demo_request_sla, orders" in unknown.stderr


def test_json_api_lists_shows_cancels_and_needs_the_token(project_dir: Path,
                                                          start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/orders.py": FLOW})
    srv = start(project_dir)
    emit(srv, "order.placed", {"order": 5, "wait": True})
    assert httpx.get(f"{srv.url}/api/runs", timeout=5).status_code == 401
    with srv.api() as api:
        run = wait_for(lambda: [r for r in api.get("/api/runs", params={"status": "waiting"}).json()["runs"]],
                       what="a waiting run via the API")[0]
        detail = api.get(f"/api/runs/{run['id']}").json()
        assert [s["step"] for s in detail["steps"]] == ["first", "check", "wait:order.never"]
        assert detail["trigger"]["data"] == {"order": 5, "wait": True}
        assert api.post(f"/api/runs/{run['id']}/cancel").json()["status"] == "cancelled"
        assert api.post(f"/api/runs/{run['id']}/cancel").status_code == 409
        assert api.post("/api/workflows/orders/pause").json() == {"workflow": "orders", "paused": True}
        assert {w["name"]: w["paused"] for w in api.get("/api/workflows").json()["workflows"]}["orders"] is True
        rerun = api.post(f"/api/runs/{run['id']}/rerun", json={"from_step": "check"})
        assert rerun.status_code == 202
        assert api.get("/api/runs", params={"status": "bogus"}).status_code == 400
