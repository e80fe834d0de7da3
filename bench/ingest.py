"""Webhook acceptance: how close `opsloop up` gets to a bare HTTP endpoint, with durability on.

In one run, on loopback, 1 KB JSON payloads, 64 concurrent connections (wrk):
  (a) a bare Starlette endpoint answering 202 without storing anything  -- the HTTP ceiling
  (a') the same endpoint making only the checks every accepted request needs (Standard Webhooks signature
       with the standardwebhooks library, JSON parsing, the JSON Schema with fastjsonschema), storing nothing
       -- the ceiling for any server that verifies and validates in Python
  (b) a bare Starlette endpoint committing each request to SQLite with fsync (synchronous=FULL)
  (c) `opsloop up` with fsync_on_commit on (signature check, schema check, group commit)
  (c+r) the same with `server.receiver_processes: 1`: webhooks are verified and answered in a second
       process, the main one commits them and runs everything else
Each server runs under the same uvicorn settings. Prints accepted/s, p50/p99 latency (medians of
--repeat runs), the ratios c/a and c/b, and where the CPU goes: each server's CPU per accepted request
(main process and receivers apart, from /proc), and for (c) and (c+r) each stage of the main process's
event path per event (from ``GET /api/status``'s ``ingest_cpu``), so the next thing to cut is visible.

    python bench/ingest.py [--seconds 10] [--repeat 3] [--connections 64]
    python bench/ingest.py --smoke     # 1 s per server, one run, 8 connections (the CI smoke test)

Needs `wrk` (Debian: apt-get install wrk). Without it, --smoke loads the servers from Python (httpx),
which checks the whole path but gives figures not comparable with wrk's.
"""

from __future__ import annotations

import argparse
import asyncio
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
import textwrap
import time
from pathlib import Path

import httpx
from _report import ratio

BARE = textwrap.dedent(
    r"""
    import sqlite3, sys, threading
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    import uvicorn

    mode, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    lock = threading.Lock()
    conn = None
    if mode == "sqlite":
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, headers TEXT, body BLOB)")

    async def bare(request):
        await request.body()
        return JSONResponse({"id": "x"}, status_code=202)

    if mode == "checks":
        import json, os
        import fastjsonschema
        from standardwebhooks.webhooks import Webhook
        hook = Webhook(os.environ["BENCH_SECRET"])
        validate = fastjsonschema.compile(json.loads(os.environ["BENCH_SCHEMA"]),
                                          formats={"email": r"^[^@\s]+@[^@\s]+$"})

    async def checks(request):
        body = await request.body()
        validate(hook.verify(body, request.headers))
        return JSONResponse({"id": "x"}, status_code=202)

    def store(body, headers):
        with lock:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO events (headers, body) VALUES (?, ?)", (headers, body))
            conn.execute("COMMIT")

    async def durable(request):
        from starlette.concurrency import run_in_threadpool
        body = await request.body()
        await run_in_threadpool(store, body, repr(dict(request.headers)))
        return JSONResponse({"id": "x"}, status_code=202)

    handler = {"bare": bare, "checks": checks}.get(mode, durable)
    app = Starlette(routes=[Route("/hooks/bench", handler, methods=["POST"]),
                            Route("/healthz", bare)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, backlog=4096)
    """
)

ENDPOINT = """\
event: bench.received
signature:
  preset: standard_webhooks
  secret_env: BENCH_SECRET
schema:
  type: object
  required: [email, name]
  properties:
    email: {type: string, format: email}
    name: {type: string}
"""

SCHEMA = {"type": "object", "required": ["email", "name"],
          "properties": {"email": {"type": "string", "format": "email"}, "name": {"type": "string"}}}
"""The endpoint's schema above, for the (a') server."""

LUA = """\
wrk.method = "POST"
wrk.body = [[%s]]
%s
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early: {url}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"server did not start: {url}")


def parse_wrk(text: str) -> dict[str, float]:
    def ms(value: str, unit: str) -> float:
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    out: dict[str, float] = {}
    for label, key in (("50%", "p50"), ("99%", "p99")):
        m = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if m:
            out[key] = ms(m.group(1), m.group(2))
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non2xx"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = float(m.group(1)) if m else 0.0
    return out


TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of process ``pid`` and of its children (the receivers), from /proc."""

    def stat(path: Path) -> list[str] | None:
        try:
            text = path.read_text()
        except OSError:
            return None
        return text[text.rindex(")") + 2 :].split()  # the fields after "pid (comm)"

    def cpu(fields: list[str]) -> float:
        return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime

    own = stat(Path(f"/proc/{pid}/stat"))
    children = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(pid):
            fields = stat(entry / "stat")
            if fields is not None and fields[1] == str(pid):  # its parent
                children += cpu(fields)
    return (cpu(own) if own else 0.0), children


def stage_cpu(url: str, token: str) -> dict[str, dict[str, float]]:
    """The main process's CPU per stage so far (``ingest_cpu`` of /api/status)."""
    answer = httpx.get(url + "/api/status", headers={"authorization": f"Bearer {token}"}, timeout=30)
    answer.raise_for_status()
    figures: dict[str, dict[str, float]] = answer.json().get("ingest_cpu", {})
    return figures


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    cmd = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", str(script), url]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


def run_python_load(url: str, body: str, headers: dict[str, str], seconds: float,
                    connections: int) -> dict[str, float]:
    """What run_wrk measures, from Python (httpx): for --smoke where wrk is not installed."""
    latencies: list[float] = []
    non2xx = 0

    async def load() -> float:
        nonlocal non2xx
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:
            start = time.perf_counter()
            end = start + seconds

            async def worker() -> None:
                nonlocal non2xx
                while time.perf_counter() < end:
                    t0 = time.perf_counter()
                    response = await client.post(url, content=body)
                    latencies.append((time.perf_counter() - t0) * 1000)
                    non2xx += not 200 <= response.status_code < 400

            await asyncio.gather(*(worker() for _ in range(connections)))
            return time.perf_counter() - start

    elapsed = asyncio.run(load())
    ordered = sorted(latencies) or [float("nan")]
    return {"rps": len(latencies) / elapsed, "p50": ordered[len(ordered) // 2],
            "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], "non2xx": float(non2xx),
            "requests": float(len(latencies))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the whole path runs")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.repeat, args.connections = 1, 1, 8
    use_wrk = bool(shutil.which("wrk"))
    if not use_wrk and not args.smoke:
        raise SystemExit("this benchmark needs wrk: apt-get install wrk (or run --smoke, which loads from Python)")
    if not use_wrk:
        print("wrk not installed: loading from Python (httpx); figures are not comparable with wrk's", flush=True)

    from opsloop.project.scaffold import init_project

    work = Path(tempfile.mkdtemp(prefix="opsloop-bench-"))
    payload = json.dumps({"email": "ada@example.com", "name": "Ada", "pad": "x" * 940}, separators=(",", ":"))
    assert 950 < len(payload) < 1100
    secret_raw = os.urandom(24)
    secret = "whsec_" + base64.b64encode(secret_raw).decode()
    # the middle of the whole run: the standardwebhooks library (a') allows 5 minutes either side
    ts = str(int(time.time()) + 4 * args.repeat * (args.seconds + 5) // 2)
    sig = base64.b64encode(hmac.new(secret_raw, f"msg_bench.{ts}.{payload}".encode(), hashlib.sha256).digest())
    headers = {"Content-Type": "application/json", "webhook-id": "msg_bench", "webhook-timestamp": ts,
               "webhook-signature": f"v1,{sig.decode()}"}
    header_lua = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    script = work / "post.lua"
    script.write_text(LUA % (payload, header_lua))
    bare_py = work / "bare.py"
    bare_py.write_text(BARE)

    project = work / "proj"
    init_project(project)  # what `opsloop init` writes, without a process start per project
    (project / "events" / "bench.yml").write_text(ENDPOINT)
    with (project / ".env").open("a") as fh:
        fh.write(f"BENCH_SECRET={secret}\n")
    # A generous tolerance so the pre-signed request stays valid for the whole run.
    text = (project / "events" / "bench.yml").read_text().replace("secret_env: BENCH_SECRET",
                                                                   "secret_env: BENCH_SECRET\n  tolerance: 1h")
    (project / "events" / "bench.yml").write_text(text)

    def start(kind: str, port: int, run: int) -> subprocess.Popen[bytes]:
        if kind in ("opsloop", "receivers"):
            cmd = [sys.executable, "-m", "opsloop", "up", "--project", str(project), "--port", str(port),
                   "--receivers", "1" if kind == "receivers" else "0"]
        else:
            cmd = [sys.executable, str(bare_py), kind, str(port), str(work / f"bare-{run}.sqlite")]
        env = {**os.environ, "BENCH_SECRET": secret, "BENCH_SCHEMA": json.dumps(SCHEMA)}
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    token = next(line.split("=", 1)[1] for line in (project / ".env").read_text().splitlines()
                 if line.startswith("OPSLOOP_API_TOKEN="))
    results: dict[str, list[dict[str, float]]] = {
        "bare": [], "checks": [], "sqlite": [], "opsloop": [], "receivers": []}
    stages: dict[str, list[dict[str, float]]] = {"opsloop": [], "receivers": []}
    """Per run: each stage's CPU per event (microseconds) during the measured load."""
    for run in range(args.repeat):
        for kind in results:
            port = free_port()
            # each run starts from an empty event log and warehouse, so the order of runs does not matter
            for stale in [*project.glob("state/opsloop.sqlite*"), *project.glob("warehouse.duckdb*")]:
                stale.unlink()
            proc = start(kind, port, run)
            url = f"http://127.0.0.1:{port}"
            try:
                wait_up(url, proc)
                if use_wrk and not args.smoke:  # warm up
                    run_wrk(url + "/hooks/bench", script, 2, args.connections)
                opsloop_kind = kind in stages
                before = stage_cpu(url, token) if opsloop_kind else {}
                cpu_before = tree_cpu(proc.pid)
                if use_wrk:
                    figures = run_wrk(url + "/hooks/bench", script, args.seconds, args.connections)
                else:
                    figures = run_python_load(url + "/hooks/bench", payload, headers, args.seconds, args.connections)
                cpu_after = tree_cpu(proc.pid)
                accepted = max(1.0, figures["requests"] - figures["non2xx"])
                figures["main_us"] = (cpu_after[0] - cpu_before[0]) / accepted * 1e6
                figures["receivers_us"] = (cpu_after[1] - cpu_before[1]) / accepted * 1e6
                if opsloop_kind:
                    after = stage_cpu(url, token)
                    spent = {name: (fig["cpu_seconds"] - before.get(name, {}).get("cpu_seconds", 0.0)) / accepted * 1e6
                             for name, fig in after.items()}
                    spent["(rest of the main process)"] = figures["main_us"] - sum(spent.values())
                    stages[kind].append(spent)
                results[kind].append(figures)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            print(f"run {run + 1}/{args.repeat} {kind:9s} {results[kind][-1]}", flush=True)

    def med(kind: str, key: str) -> float:
        return statistics.median(r.get(key, float("nan")) for r in results[kind])

    print()
    print(f"1 KB JSON, {args.connections} connections, {args.seconds}s x {args.repeat} runs (medians), "
          f"{os.cpu_count()} cores")
    print(f"load average (1, 5, 15 min) at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'server':36s} {'accepted/s':>11s} {'p50 ms':>8s} {'p99 ms':>8s} {'non-2xx':>8s} "
          f"{'main µs/req':>12s} {'recv µs/req':>12s}")
    names = {"bare": "(a) bare Starlette, no storage", "checks": "(a') bare + signature + schema",
             "sqlite": "(b) bare + SQLite fsync/request", "opsloop": "(c) opsloop up, fsync on",
             "receivers": "(c+r) the same, 1 receiver process"}
    for kind, label in names.items():
        print(f"{label:36s} {med(kind, 'rps'):11.0f} {med(kind, 'p50'):8.2f} {med(kind, 'p99'):8.2f} "
              f"{med(kind, 'non2xx'):8.0f} {med(kind, 'main_us'):12.1f} {med(kind, 'receivers_us'):12.1f}")
    print()
    print("CPU per accepted event in the main process, by stage (µs, medians; thread CPU, so waiting for")
    print("the interpreter lock is not counted; the rest is HTTP, the inbox's checks without receivers,")
    print("and the consumers' writes in worker threads):")
    for kind in stages:
        stage_names = sorted({name for run in stages[kind] for name in run})
        label = "(c)" if kind == "opsloop" else "(c+r)"
        for name in stage_names:
            value = statistics.median(run.get(name, 0.0) for run in stages[kind])
            print(f"  {label:6s} {name:34s} {value:8.1f}")
    ratio("c/a", med("opsloop", "rps") / med("bare", "rps"), "goal >= 0.80")
    ratio("a'/a", med("checks", "rps") / med("bare", "rps"), "the checks alone, nothing stored")
    ratio("c/a'", med("opsloop", "rps") / med("checks", "rps"), "storage, dispatch and loading")
    ratio("c/b", med("opsloop", "rps") / med("sqlite", "rps"))
    print(f"opsloop p99 = {med('opsloop', 'p99'):.1f} ms   (goal < 50 ms)")
    ratio("(c+r)/a", med("receivers", "rps") / med("bare", "rps"),
          f"1 receiver process; p99 = {med('receivers', 'p99'):.1f} ms, "
          f"{med('receivers', 'rps') / med('opsloop', 'rps'):.2f}x (c)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
