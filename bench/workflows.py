"""Workflow engine benchmark: a steady event rate into a real `opsloop up`, each event starting a 3-step
workflow whose first step posts to a local Slack API; every 10th event also starts a 2 s SLA timer.

Reports: workflow starts/s sustained, event→Slack call latency (p50/p99), lateness of 2 s timers
(median/p99), burst capacity (workflows/s), and — in the same run, as the baseline — the same 3-step
workflow on DBOS Transact with SQLite (run in a separate venv: --dbos-python /path/to/venv/bin/python;
`python -m venv /tmp/dbos-venv && /tmp/dbos-venv/bin/pip install dbos`).

    python bench/workflows.py --seconds 60 --rate 200 --dbos-python /tmp/dbos-venv/bin/python
    python bench/workflows.py --smoke     # seconds: 20 events/s for 1.5 s, a burst of 100 (the CI smoke test)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _report import ratio, skipped  # noqa: E402
from tests.workflows.fake_slack import TOKEN, FakeSlack  # noqa: E402

FLOW = '''
import time
from opsloop import workflow, Context

def enrich(n: int) -> dict:
    return {"n": n, "bucket": n % 7}

def finish(handle: dict, extra: dict) -> str:
    return f"{handle['ts']}:{extra['bucket']}"

@workflow(on="bench.event")
async def three_steps(ctx: Context) -> str:
    n = ctx.event["data"]["n"]
    handle = await ctx.action("slack.post", step="post", channel="#sales", text=f"event {n}")
    extra = await ctx.step("enrich", enrich, n)
    return await ctx.step("finish", finish, handle, extra)

@workflow(on="bench.event", when="event.data.n % 10 == 0")
async def sla_timer(ctx: Context) -> float:
    deadline = await ctx.step("deadline", lambda: time.time() + 2.0)
    await ctx.sleep(until=deadline)
    return await ctx.step("late", lambda: time.time() - deadline)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_project(base: Path, slack: FakeSlack) -> Path:
    from opsloop.project.scaffold import init_project

    root = base / "proj"
    init_project(root)
    (root / "workflows" / "demo_request_sla.yml").unlink()
    (root / "workflows" / "bench.py").write_text(textwrap.dedent(FLOW))
    (root / "events" / "bench.yml").write_text("event: bench.event\nsignature: {preset: none}\n")
    with (root / ".env").open("a") as env:
        env.write(f"SLACK_BOT_TOKEN={TOKEN}\nSLACK_API_URL={slack.url}\nSLACK_PACE=0\n")
    return root


class Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OPSLOOP_FSYNC": os.environ.get("OPSLOOP_FSYNC", "true")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opsloop", "up", "--project", str(root), "--port", str(self.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=(root / "up.log").open("ab"),
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("opsloop up did not start; see up.log")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def send(url: str, rate: float, seconds: float, start_n: int = 0, senders: int = 48) -> dict[int, float]:
    """POST events on a steady schedule (event i is due at i / rate); returns each event's send time.

    A fixed pool of sender tasks keeps the client's own overhead bounded; when the server falls behind,
    events go out late and the offered rate shows it.
    """
    sent: dict[int, float] = {}
    total = int(rate * seconds)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        t0 = time.perf_counter()

        async def sender() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[start_n + i] = time.time()
                for attempt in range(3):  # a kept-alive connection the server just closed: send again
                    try:
                        response = await client.post("/hooks/bench", json={"n": start_n + i})
                        break
                    except httpx.TransportError:
                        if attempt == 2:
                            raise
                response.raise_for_status()

        await asyncio.gather(*(sender() for _ in range(senders)))
    return sent


def send_from_child(url: str, rate: float, seconds: float) -> dict[int, float]:
    """Run the load generator in a process of its own, so that it and the local Slack API (in this one)
    do not take turns on one interpreter lock and delay each other's timestamps."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sent.json"
        subprocess.run([sys.executable, __file__, "--child-send", url, str(rate), str(seconds), str(out)],
                       check=True, timeout=seconds * 20 + 60)
        return {int(n): float(t) for n, t in json.loads(out.read_text()).items()}


def run_stats(root: Path) -> tuple[list[Any], list[float]]:
    from opsloop.state import open_store

    store = open_store("sqlite:///state/opsloop.sqlite", root)
    try:
        rows = store.query("SELECT workflow, status, created_at, finished_at, output FROM wf_runs")
    finally:
        store.close()
    late = [float(json.loads(r[4])) for r in rows if r[0] == "sla_timer" and r[1] == "completed"]
    return rows, late


def accepted_times(root: Path) -> dict[int, float]:
    """When the server accepted (durably logged) each event: the start of the workflow engine's part."""
    from opsloop.state import open_store

    store = open_store("sqlite:///state/opsloop.sqlite", root)
    try:  # the store's own reader: a webhook's payload is stored once, as its body
        events = store.list_events(name="bench.event", limit=10**9)
    finally:
        store.close()
    return {int(ev.payload["n"]): ev.received_at for ev in events}


def stages(root: Path, posted: dict[int, float]) -> dict[str, float]:
    """Where an event's time to its Slack call goes: accepted -> run made (the log consumer), run made ->
    its first step starts (the executor), step start -> the Slack API sees the call (the action)."""
    from opsloop.state import open_store

    store = open_store("sqlite:///state/opsloop.sqlite", root)
    try:
        rows = store.query(
            "SELECT r.trigger_event, r.created_at, s.started_at FROM wf_runs r JOIN wf_steps s ON s.run_id = r.id "
            "WHERE r.workflow = 'three_steps' AND s.step_id = 'post'")
    finally:
        store.close()
    trigger, start, call = [], [], []
    for event_json, created, step_started in rows:
        event = json.loads(event_json)
        n = int(event["data"]["n"])
        trigger.append((created - float(event["received_at"])) * 1000)
        start.append((step_started - created) * 1000)
        if n in posted:
            call.append((posted[n] - step_started) * 1000)
    return {"stage_log_to_run_p99_ms": pct(trigger, 0.99), "stage_run_to_step_p99_ms": pct(start, 0.99),
            "stage_step_to_slack_p99_ms": pct(call, 0.99)}


def wait_done(root: Path, expected: int, timeout: float) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows, _ = run_stats(root)
        done = [r for r in rows if r[1] == "completed"]
        if len(done) >= expected:
            return max(r[3] for r in done)
        time.sleep(0.5)
    raise RuntimeError(f"only {len(done)} of {expected} runs completed in {timeout}s")


def opsloop_sustained(rate: float, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as slack:
        root = make_project(Path(tmp), slack)
        server = Server(root)
        try:
            t0 = time.time()
            sent = send_from_child(server.url, rate, seconds)
            send_end = time.time()
            expected = len(sent) + len([n for n in sent if n % 10 == 0])
            last = wait_done(root, expected, timeout=120)
        finally:
            server.stop()
        posted = {int(p["text"].split()[1]): t for t, m, p in slack.calls if m == "chat.postMessage"}
        latency = [(posted[n] - sent[n]) * 1000 for n in sent if n in posted]
        accepted = accepted_times(root)
        engine = [(posted[n] - accepted[n]) * 1000 for n in accepted if n in posted]
        rows, late = run_stats(root)
        three = [r for r in rows if r[0] == "three_steps" and r[1] == "completed"]
        return {
            "events": len(sent),
            "offered_rate": len(sent) / (send_end - t0),
            "workflows_per_s": len(three) / (max(r[3] for r in three) - t0),
            "drain_s": last - send_end,
            "accepted_to_slack_p50_ms": pct(engine, 0.5),
            "accepted_to_slack_p99_ms": pct(engine, 0.99),
            "sent_to_slack_p50_ms": pct(latency, 0.5),
            "sent_to_slack_p99_ms": pct(latency, 0.99),
            "timer_late_median_ms": statistics.median(late) * 1000 if late else float("nan"),
            "timer_late_p99_ms": pct(late, 0.99) * 1000,
            **stages(root, posted),
        }


def opsloop_burst(count: int) -> float:
    """Engine capacity: ``count`` events appended to the log at once; workflows completed per second."""
    from opsloop._ids import new_id
    from opsloop.state import NewEvent, open_store

    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as slack:
        root = make_project(Path(tmp), slack)
        only_three = textwrap.dedent(FLOW).split("@workflow(on=\"bench.event\", when")[0]
        (root / "workflows" / "bench.py").write_text(only_three)
        server = Server(root)
        try:
            store = open_store("sqlite:///state/opsloop.sqlite", root)
            t0 = time.time()
            store.append_events([NewEvent(id=new_id("evt_"), name="bench.event", received_at=t0, payload={"n": n},
                                          source="bench") for n in range(count)])
            store.close()
            last = wait_done(root, count, timeout=300)
        finally:
            server.stop()
        return count / (last - t0)


DBOS_SCRIPT = """
import json, sys, time, urllib.request
from dbos import DBOS

slack_url, db, token = sys.argv[1], sys.argv[2], sys.argv[3]
count, rate, seconds = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{db}", "run_admin_server": False})

@DBOS.step()
def post(n):
    body = json.dumps({"channel": "#sales", "text": f"event {n}"}).encode()
    req = urllib.request.Request(slack_url + "chat.postMessage", data=body, headers={
        "Content-Type": "application/json", "Authorization": "Bearer " + token})
    with urllib.request.urlopen(req) as answer:
        return json.loads(answer.read())["ts"]

@DBOS.step()
def enrich(n):
    return {"n": n, "bucket": n % 7}

@DBOS.step()
def finish(ts, extra):
    return f"{ts}:{extra['bucket']}"

@DBOS.workflow()
def three_steps(n):
    ts = post(n)
    return finish(ts, enrich(n))

@DBOS.step()
def deadline_in(seconds):
    return time.time() + seconds

@DBOS.step()
def lateness(deadline):
    return time.time() - deadline

@DBOS.workflow()
def sla_timer():
    deadline = deadline_in(2.0)
    DBOS.sleep(max(0.0, deadline - time.time()))
    return lateness(deadline)

DBOS.launch()
out = {}
t0 = time.time()
for n in range(count):
    three_steps(n)
out["sequential"] = count / (time.time() - t0)

t0 = time.time()
handles = [DBOS.start_workflow(three_steps, count + n) for n in range(count)]
for h in handles:
    h.get_result()
out["concurrent"] = count / (time.time() - t0)

# the same load as opsloop's: a steady rate of starts, every 10th also a 2 s timer
base, total = 2 * count, int(rate * seconds)
sent, handles, timers = {}, [], []
t0 = time.perf_counter()
wall0 = time.time()
for i in range(total):
    if time.perf_counter() - t0 > seconds:
        break  # start_workflow blocks while DBOS writes: it offers less than the rate when it falls behind
    delay = t0 + i / rate - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    sent[base + i] = time.time()
    handles.append(DBOS.start_workflow(three_steps, base + i))
    if i % 10 == 0:
        timers.append(DBOS.start_workflow(sla_timer))
offered = len(handles) / (time.time() - wall0)
for h in handles:
    h.get_result()
done = time.time()
out["late"] = [h.get_result() for h in timers]
out["sustained"] = len(handles) / (done - wall0)
out["offered"] = offered
out["sent"] = sent
print(json.dumps(out))
DBOS.destroy()
"""


def dbos_python(given: str | None) -> str | None:
    """The interpreter that runs the DBOS baseline: the one given, else this one when it has ``dbos``."""
    if given:
        return given
    return sys.executable if importlib.util.find_spec("dbos") is not None else None


def dbos(python: str, count: int, rate: float, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as slack:
        script = Path(tmp) / "dbos_bench.py"
        script.write_text(DBOS_SCRIPT)
        out = subprocess.run([python, str(script), slack.url, str(Path(tmp) / "dbos.sqlite"), TOKEN, str(count),
                              str(rate), str(seconds)], capture_output=True, text=True, timeout=900, cwd=tmp)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        found = json.loads(out.stdout.strip().splitlines()[-1])
        sent = {int(n): float(t) for n, t in found["sent"].items()}
        posted = {int(p["text"].split()[1]): t for t, m, p in slack.calls if m == "chat.postMessage"}
        latency = [(posted[n] - sent[n]) * 1000 for n in sent if n in posted]
        late = [float(v) for v in found["late"]]
        return {
            "sequential_per_s": float(found["sequential"]),
            "concurrent_per_s": float(found["concurrent"]),
            "offered_rate": float(found["offered"]),
            "sustained_per_s": float(found["sustained"]),
            "start_to_slack_p50_ms": pct(latency, 0.5),
            "start_to_slack_p99_ms": pct(latency, 0.99),
            "timer_late_median_ms": statistics.median(late) * 1000 if late else float("nan"),
            "timer_late_p99_ms": pct(late, 0.99) * 1000,
        }


def show(title: str, runs: list[dict[str, float]]) -> dict[str, float]:
    """Print each figure's median over the runs (and the runs); returns the medians."""
    print(title)
    medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    for key, value in medians.items():
        print(f"  {key:>26}: {value:10.1f}   (runs: {', '.join(f'{r[key]:.1f}' for r in runs)})")
    return medians


def goal(what: str, met: bool, figure: str) -> None:
    print(f"goal {what}: {'met' if met else 'NOT met'} ({figure})", flush=True)


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child-send":  # the load generator (send_from_child)
        url, rate, seconds, out = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5])
        out.write_text(json.dumps(asyncio.run(send(url, rate, seconds))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--burst", type=int, default=3000)
    parser.add_argument("--dbos-python", default=os.environ.get("DBOS_PYTHON"),
                        help="a Python with dbos installed (default: this one, when it has dbos)")
    parser.add_argument("--dbos-count", type=int, default=300, help="workflows in each DBOS throughput phase")
    parser.add_argument("--dbos-seconds", type=float, default=10, help="length of DBOS's sustained phase")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the whole path runs")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.rate, args.repeat, args.burst = 1.5, 20, 1, 100
        args.dbos_count, args.dbos_seconds = 20, 1.5

    sustained = show(
        f"opsloop, {args.rate:.0f} events/s for {args.seconds:.0f} s (3-step workflow + a 2 s timer on every "
        f"10th), median of {args.repeat}:",
        [opsloop_sustained(args.rate, args.seconds) for _ in range(args.repeat)])
    bursts = [opsloop_burst(args.burst) for _ in range(args.repeat)]
    burst = statistics.median(bursts)
    print(f"opsloop burst capacity ({args.burst} events at once): {burst:.0f} workflows/s "
          f"(runs: {', '.join(f'{b:.0f}' for b in bursts)})")
    ratio("sustained workflows/s / offered events/s", sustained["workflows_per_s"] / sustained["offered_rate"],
          "1.00x keeps up with the load")
    p99 = sustained["sent_to_slack_p99_ms"]
    goal(f"p99 event (POST) -> Slack call < 250 ms at {args.rate:.0f} events/s", p99 < 250, f"{p99:.0f} ms")
    late = sustained["timer_late_p99_ms"]
    goal("2 s timers late < 100 ms at p99", late < 100, f"{late:.0f} ms")
    python = dbos_python(args.dbos_python)
    if python is None:
        skipped("DBOS", "dbos is not installed in this Python (pip install dbos), and no --dbos-python "
                        "/path/to/a/venv/with/dbos/bin/python (or DBOS_PYTHON) was given")
        return
    peer = show(
        f"DBOS Transact on SQLite, the same 3-step workflow ({args.dbos_count} sequential, {args.dbos_count} at "
        f"once; then {args.rate:.0f} starts/s for {args.dbos_seconds:.0f} s with a 2 s timer on every 10th), "
        f"median of {args.repeat}:",
        [dbos(python, args.dbos_count, args.rate, args.dbos_seconds) for _ in range(args.repeat)])
    best = max(peer["sequential_per_s"], peer["concurrent_per_s"])
    ratio("opsloop burst / DBOS workflows/s", burst / best,
          f"goal >= 10x: {'met' if burst / best >= 10 else 'NOT met'}")
    ratio("DBOS start->Slack p99 / opsloop POST->Slack p99", peer["start_to_slack_p99_ms"] / p99)
    ratio("DBOS timer lateness p99 / opsloop timer lateness p99", peer["timer_late_p99_ms"] / max(late, 0.1))


if __name__ == "__main__":
    main()
