"""Past one machine: accepted events/s, dispatched events/s and completed workflows/s with 1, 2 and 3
opsloop processes on a shared Postgres state store, and the single-process figures on SQLite, in one run.
Each event starts a one-step workflow (an `event.emit`).

    python bench/scale.py [--seconds 8] [--repeat 3] [--pg postgresql://postgres@127.0.0.1:5432/test]

Layouts: sqlite x1 (role all); postgres x1 (role all); postgres x2 (2 receivers + the first also
dispatches: receiver + all); postgres x3 (2 receivers + 1 worker). Load: wrk, 32 connections per receiver,
1 KB signed JSON. "workflows per CPU-s" is the workflows completed in the window over the CPU seconds
(user + system) the opsloop processes (and their children) used in it: the engine's efficiency, which
shows the gain from more workers even when a 2-core machine cannot run them side by side.
"dispatched/s" counts events taken off the log by the dispatcher during the window,
including the `bench.done` events the workflows emit (so about twice the accepted rate when keeping up).
Needs wrk (apt-get install wrk). Each run uses a fresh Postgres schema, dropped afterwards.

    python bench/scale.py --smoke     # sqlite x1 and postgres x2, 1 s each, one run (the CI smoke test)

Without wrk, --smoke loads the receivers from Python (httpx): the whole path, figures not comparable.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from _report import ratio
from ingest import run_python_load

LUA = 'wrk.method = "POST"\nwrk.body = [[%s]]\n%s\n'
ENDPOINT = """\
event: bench.received
signature:
  preset: standard_webhooks
  secret_env: BENCH_SECRET
  tolerance: 1h
schema:
  type: object
  required: [email]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(project: Path, role: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "opsloop", "up", "--project", str(project), "--port", str(port), "--role", role],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{role} did not start")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes and their descendants (Linux /proc)."""
    kids = _children()
    todo, total = list(pids), 0.0
    while todo:
        pid = todo.pop()
        todo += kids.get(pid, [])
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


WORKFLOW = """\
on: bench.received
steps:
  - id: done
    event.emit: {name: bench.done, data: {email: "{{ event.data.email }}"}}
"""


def count(env: dict[str, str], project: Path) -> tuple[int, int, int]:
    from opsloop.state import open_store

    url = env.get("OPSLOOP_STATE_URL") or f"sqlite:///{project}/state/opsloop.sqlite"
    store = open_store(url)
    try:
        total = int(store.query("SELECT COUNT(*) FROM events WHERE accepted = 1")[0][0])
        dispatched = store.count_events("dispatched")
        done = int(store.query("SELECT COUNT(*) FROM wf_runs WHERE status = 'completed'")[0][0])
    finally:
        store.close()
    return total, dispatched, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--only", action="append", default=[], metavar="LAYOUT",
                        help='run only this layout ("postgres x2"); repeatable')
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the whole path runs")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.repeat = 1, 1
    use_wrk = bool(shutil.which("wrk"))
    if not use_wrk and not args.smoke:
        raise SystemExit("this benchmark needs wrk: apt-get install wrk (or run --smoke, which loads from Python)")
    if not use_wrk:
        print("wrk not installed: loading from Python (httpx); figures are not comparable with wrk's", flush=True)
    import psycopg

    from opsloop.project.scaffold import init_project

    work = Path(tempfile.mkdtemp(prefix="opsloop-scale-"))
    secret_raw = os.urandom(24)
    payload = json.dumps({"email": "ada@example.com", "pad": "x" * 960}, separators=(",", ":"))
    ts = str(int(time.time()) + 600)
    sig = base64.b64encode(hmac.new(secret_raw, f"m.{ts}.{payload}".encode(), hashlib.sha256).digest()).decode()
    heads = {"Content-Type": "application/json", "webhook-id": "m", "webhook-timestamp": ts,
             "webhook-signature": f"v1,{sig}"}
    script = work / "post.lua"
    script.write_text(LUA % (payload, "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in heads.items())))

    layouts = {
        "sqlite x1": ("sqlite", ["all"]),
        "postgres x1": ("postgres", ["all"]),
        "postgres x2": ("postgres", ["all", "receiver"]),
        "postgres x3": ("postgres", ["receiver", "receiver", "worker"]),
    }
    if args.smoke:  # one process alone, and two sharing the Postgres store (all + receiver)
        layouts = {k: v for k, v in layouts.items() if k in ("sqlite x1", "postgres x2")}
    if args.only:
        layouts = {k: v for k, v in layouts.items() if k in args.only}
    results: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in layouts}
    for run in range(args.repeat):
        for name, (backend, roles) in layouts.items():
            project = work / f"p-{run}-{name.replace(' ', '')}"
            init_project(project)  # what `opsloop init` writes, without a process start per project
            (project / "events" / "bench.yml").write_text(ENDPOINT)
            (project / "workflows" / "bench.yml").write_text(WORKFLOW)
            with (project / ".env").open("a") as fh:
                fh.write(f"BENCH_SECRET=whsec_{base64.b64encode(secret_raw).decode()}\n")
            env: dict[str, str] = {}
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            if backend == "postgres":
                env["OPSLOOP_STATE_URL"] = f"{args.pg}?schema={schema}"
            procs = [start(project, role, env) for role in roles]
            receivers = [url for (p, url), role in zip(procs, roles, strict=True) if role in ("all", "receiver")]
            try:
                before = count(env, project)
                cpu_before = cpu_seconds([p.pid for p, _ in procs])
                if use_wrk:
                    loads = [
                        subprocess.Popen(["wrk", "-t", "1", "-c", "32", "-d", f"{args.seconds}s", "-s", str(script),
                                          f"{url}/hooks/bench"], stdout=subprocess.PIPE, text=True)
                        for url in receivers
                    ]
                    outs = [p.communicate()[0] for p in loads]
                    accepted = sum(float(re.search(r"Requests/sec:\s+([\d.]+)", o).group(1)) for o in outs)  # type: ignore[union-attr]
                else:
                    rates: list[float] = []
                    threads = [threading.Thread(target=lambda u=url: rates.append(run_python_load(
                        f"{u}/hooks/bench", payload, heads, args.seconds, 8)["rps"])) for url in receivers]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    accepted = sum(rates)
                cpu = cpu_seconds([p.pid for p, _ in procs]) - cpu_before
                after = count(env, project)
                dispatched = (after[1] - before[1]) / args.seconds
                completed = (after[2] - before[2]) / args.seconds
                per_cpu = (after[2] - before[2]) / cpu if cpu > 0 else 0.0
                results[name].append((accepted, dispatched, completed, per_cpu))
                print(f"run {run + 1} {name:12s} accepted/s {accepted:8.0f}  dispatched/s {dispatched:8.0f}  "
                      f"workflows completed/s {completed:8.0f}  per CPU-s {per_cpu:7.1f} ({cpu:.1f} CPU-s)",
                      flush=True)
            finally:
                for proc, _ in procs:
                    proc.send_signal(signal.SIGTERM)
                for proc, _ in procs:
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                if backend == "postgres":
                    with psycopg.connect(args.pg, autocommit=True) as conn:
                        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(f"\nmedians of {args.repeat} runs, {args.seconds}s each, {os.cpu_count()} cores")
    base = statistics.median(r[0] for r in results.get("sqlite x1") or next(iter(results.values())))
    print(f"{'layout':14s} {'accepted/s':>11s} {'dispatched/s':>13s} {'workflows/s':>12s} "
          f"{'workflows per CPU-s':>20s} {'accepted vs sqlite x1':>22s}")
    for name, rows in results.items():
        acc = statistics.median(r[0] for r in rows)
        dis = statistics.median(r[1] for r in rows)
        done = statistics.median(r[2] for r in rows)
        per_cpu = statistics.median(r[3] for r in rows)
        print(f"{name:14s} {acc:11.0f} {dis:13.0f} {done:12.0f} {per_cpu:20.1f} {acc / base:22.2f}")
    for name, rows in results.items():
        if name != "sqlite x1":
            ratio(f"accepted/s {name} / sqlite x1", statistics.median(r[0] for r in rows) / base)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
