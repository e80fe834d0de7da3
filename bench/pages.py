"""The list pages on a big event log: p95 of each page (``opsloop up``, logged in, HTML rendered) against the
same query run bare on the state store (``StateStore.list_events`` in this process), in the same run.

    .venv/bin/python bench/pages.py [--events 1000000] [--requests 40] [--smoke]

The log is seeded through the store's own ``append_events`` with events that no consumer picks up again
(duplicates, quarantined and rejected ones, as a busy inbox has), so the server measures pages, not a
backlog. Prints a table (ms) and one ``ratio <page> p95 / bare store p95`` line per page; the issue's bar is
300 ms per page with 1M events.

Text search: the log is indexed for search (``StateStore.index_search``, what the server's background
indexer does) before the pages are timed, and each search is also run bare as the scan it replaced
(``search_index`` off): ``ratio search <text>: scan p95 / index p95`` lines. Then the append path with
the indexer running beside it against a store migrated without the search index (``ratio append ...``).

Runs: ``--runs`` workflow runs are seeded through ``RunStore.insert_runs`` (every 10th finished failed, with
an error), so ``/runs`` and its search are timed on a big runs table too; each runs search is also run bare
as the scan it replaced (``ratio runs search <text>: scan p95 / index p95``), and inserting runs with the
search index kept against without it (``ratio run insert ...``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _report import ratio

STATUSES = ("duplicate", "duplicate", "duplicate", "quarantined", "rejected")


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm: the first call pays for caches and imports
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(store: Any, count: int) -> int:
    """``count`` events, 5,000 per append; returns the seq of the one in the middle."""
    from opsloop._ids import new_id
    from opsloop.state import NewEvent

    t0 = time.time() - count  # one a second, up to now
    batch: list[Any] = []
    for n in range(count):
        status = STATUSES[n % len(STATUSES)]
        error = {"schema_errors": [{"pointer": "/email", "message": "'email' is a required property"}]} \
            if status == "quarantined" else ({"reason": "bad signature: no signature header"}
                                             if status == "rejected" else None)
        batch.append(NewEvent(id=new_id("evt_"), name="demo_request.created", received_at=t0 + n, status=status,
                              endpoint="demo_request", payload={"n": n, "name": f"Person {n}",
                                                                "email": f"person{n}@example.com"},
                              error=error))
        if len(batch) == 5000:
            store.append_events(batch)
            batch = []
    if batch:
        store.append_events(batch)
    rows = store.query("SELECT seq FROM events ORDER BY seq LIMIT 1 OFFSET ?", (count // 2,))
    return int(rows[0][0])


def seed_runs(store: Any, count: int) -> None:
    """``count`` finished runs, 5,000 per transaction, each with a 1-event trigger like the inbox's; every
    10th run failed with an error."""
    from opsloop.workflows.runs import NewRun, RunStore

    runs = RunStore(store)
    for start in range(0, count, 5000):
        batch = [NewRun(workflow="notify" if n % 2 else "digest", dedupe_key=f"k{n}", start_seq=n,
                        trigger={"id": f"evt_{n}", "name": "demo_request.created",
                                 "data": {"n": n, "name": f"Person {n}", "email": f"person{n}@example.com",
                                          "company": "Société Générale" if n % 7 == 0 else "Acme"}})
                 for n in range(start, min(count, start + 5000))]
        with runs.transaction() as cur:
            made = runs.insert_runs(cur, batch)
            for run in made.values():
                n = int(run.dedupe_key[1:]) if run.dedupe_key else 0
                # finished, so the server's workers have nothing to claim while the pages are timed
                runs.finish(cur, run.id, "failed" if n % 10 == 0 else "completed", None,
                            f"Slack said channel_not_found for person{n}" if n % 10 == 0 else None, waited=False)


def measure_run_inserts(root: Path, smoke: bool) -> dict[str, tuple[float, float]]:
    """p50 and p99 of ``insert_runs`` (500 runs a transaction) with the runs search index kept, and on the
    same kind of store with ``run_search_tables`` off (what a store without migration 0102 does)."""
    from opsloop.state import open_store
    from opsloop.workflows.runs import NewRun, RunStore

    out: dict[str, tuple[float, float]] = {}
    batches = 5 if smoke else 40
    for label, kept in (("without the runs search index", False), ("with the runs search index", True)):
        store = open_store(f"sqlite:///{root}/runs-{int(kept)}.sqlite", fsync=True)
        store.run_search_tables = kept
        runs = RunStore(store)
        samples = []
        for b in range(batches):
            batch = [NewRun(workflow="notify", dedupe_key=f"{b}-{n}", start_seq=n,
                            trigger={"id": f"evt_{b}_{n}", "name": "demo_request.created",
                                     "data": {"n": n, "email": f"person{n}@example.com", "note": "x" * 900}})
                     for n in range(500)]
            started = time.perf_counter()
            with runs.transaction() as cur:
                runs.insert_runs(cur, batch)
            samples.append(time.perf_counter() - started)
        store.close()
        ordered = sorted(samples)
        out[label] = (ordered[len(ordered) // 2], ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200_000, help="workflow runs seeded for /runs")
    parser.add_argument("--requests", type=int, default=40, help="timed requests per page")
    parser.add_argument("--smoke", action="store_true", help="seconds: 3,000 events, 5 requests per page")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.requests, args.runs = 3_000, 5, 3_000

    import httpx

    from opsloop.project.scaffold import init_project
    from opsloop.state import open_store

    root = Path(tempfile.mkdtemp()) / "proj"
    init_project(root)
    store = open_store("sqlite:///state/opsloop.sqlite", root, fsync=False)
    started = time.perf_counter()
    middle = seed(store, args.events)
    print(f"seeded {args.events} events in {time.perf_counter() - started:.1f}s", flush=True)
    started = time.perf_counter()
    while store.index_search():  # batches as the background indexer takes them
        pass
    took = time.perf_counter() - started
    print(f"indexed {args.events} events for search in {took:.1f}s ({args.events / took:,.0f} events/s)", flush=True)
    started = time.perf_counter()
    seed_runs(store, args.runs)
    print(f"seeded {args.runs} runs in {time.perf_counter() - started:.1f}s", flush=True)
    needle = f"person{args.events - 7}@example.com"  # near the newest end: a search a person makes
    searches = {"an email": needle, "the oldest email": "person7@example.com", "text in every event": "example.com",
                "an error": "required property", "no match": "no-such-text", "2 characters": "zz"}
    pages: dict[str, tuple[str, dict[str, Any]]] = {
        "/events": ("/events", {}),
        "/events?status=quarantined": ("/events?status=quarantined", {"status": "quarantined"}),
        "/events?endpoint=demo_request": ("/events?endpoint=demo_request", {"endpoint": "demo_request"}),
        "/events?before=<middle>": (f"/events?before={middle}", {"before_seq": middle}),
        "/events?q=<an email>": (f"/events?q={needle}", {"search": needle}),
        "/events?q=<no match>": ("/events?q=no-such-text", {"search": "no-such-text"}),
        "/runs": ("/runs", {}),
        "/runs?q=<an email>": (f"/runs?q=person{args.runs - 7}@example.com",
                               {"search": f"person{args.runs - 7}@example.com"}),
        "/runs?q=<no match>": ("/runs?q=no-such-text", {"search": "no-such-text"}),
    }
    run_searches = {"an email": f"person{args.runs - 7}@example.com", "the oldest email": "person7@example.com",
                    "text in every run": "example.com", "an error": "channel_not_found for person7",
                    "non-ASCII (escaped in the JSON)": "société", "no match": "no-such-text"}

    def bare(kwargs: dict[str, Any]) -> Callable[[], object]:
        return lambda: store.list_events(limit=51, **kwargs)

    def bare_runs(kwargs: dict[str, Any]) -> Callable[[], object]:
        from opsloop.workflows import runs

        return lambda: runs.list_runs(store, limit=51, **kwargs)

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSLOOP_")}
    up = subprocess.Popen([sys.executable, "-m", "opsloop", "up", "-p", str(root), "--port", str(port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    token = next(line.split("=", 1)[1] for line in (root / ".env").read_text().splitlines()
                 if line.startswith("OPSLOOP_API_TOKEN="))
    figures: dict[str, tuple[float, float]] = {}
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if up.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("opsloop up did not start")
            time.sleep(0.1)
        assert client.post("/login", data={"token": token}).status_code == 303, "the login was refused"
        for label, (path, kwargs) in pages.items():
            def page(p: str = path) -> None:
                answer = client.get(p)
                assert answer.status_code == 200, (p, answer.status_code, answer.text[:300])

            served = p95(timed(page, args.requests))
            direct = p95(timed(bare_runs(kwargs) if label.startswith("/runs") else bare(kwargs), args.requests))
            figures[label] = (served, direct)
            print(f"measured {label}: page p95 {served * 1000:.1f} ms, bare store p95 {direct * 1000:.1f} ms",
                  flush=True)
    finally:
        up.terminate()
        up.wait(30)
    searched: dict[str, tuple[float, float]] = {}
    for label, text in searches.items():
        indexed = p95(timed(bare({"search": text}), args.requests))
        store.search_index = False
        try:
            scan = p95(timed(bare({"search": text}), max(3, args.requests // 4)))
        finally:
            store.search_index = True
        searched[label] = (indexed, scan)
        print(f"measured search {label!r}: index p95 {indexed * 1000:.1f} ms, scan p95 {scan * 1000:.1f} ms",
              flush=True)
    for label, text in run_searches.items():
        indexed = p95(timed(bare_runs({"search": text}), args.requests))
        store.search_index = False
        try:
            scan = p95(timed(bare_runs({"search": text}), max(3, args.requests // 4)))
        finally:
            store.search_index = True
        searched[f"runs: {label}"] = (indexed, scan)
        print(f"measured runs search {label!r}: index p95 {indexed * 1000:.1f} ms, scan p95 {scan * 1000:.1f} ms",
              flush=True)
    appends = measure_appends(root, args.smoke)
    run_inserts = measure_run_inserts(root, args.smoke)
    store.close()
    print(f"{'page':34} {'page p95':>10} {'bare store p95':>15}   ({args.events} events)")
    for label, (served, direct) in figures.items():
        flag = "" if served < 0.3 else "   over 300 ms"
        print(f"{label:34} {served * 1000:8.1f}ms {direct * 1000:13.1f}ms{flag}")
    print(f"{'search (bare store)':34} {'index p95':>10} {'scan p95':>15}")
    for label, (indexed, scan) in searched.items():
        print(f"{label:34} {indexed * 1000:8.1f}ms {scan * 1000:13.1f}ms")
    print(f"{'append 200 events (1 KB each)':34} {'p50':>10} {'p99':>15}")
    for label, (p50, p99) in appends.items():
        print(f"{label:34} {p50 * 1000:8.1f}ms {p99 * 1000:13.1f}ms")
    print(f"{'insert 500 runs (1 KB triggers)':34} {'p50':>10} {'p99':>15}")
    for label, (p50, p99) in run_inserts.items():
        print(f"{label:34} {p50 * 1000:8.1f}ms {p99 * 1000:13.1f}ms")
    for label, (served, direct) in figures.items():
        ratio(f"{label} p95 / bare store p95", served / max(direct, 1e-6))
    for label, (indexed, scan) in searched.items():
        ratio(f"search {label}: scan p95 / index p95", scan / max(indexed, 1e-6))
    (run50, run99), (kept50, kept99) = (run_inserts["without the runs search index"],
                                        run_inserts["with the runs search index"])
    ratio("run insert p50 with the runs search index / without", kept50 / max(run50, 1e-6))
    ratio("run insert p99 with the runs search index / without", kept99 / max(run99, 1e-6))
    (base50, base99), (with50, with99) = appends["without the search index"], appends["with the indexer beside it"]
    ratio("append p50 with the search indexer / without", with50 / max(base50, 1e-6))
    ratio("append p99 with the search indexer / without", with99 / max(base99, 1e-6))


def measure_appends(root: Path, smoke: bool) -> dict[str, tuple[float, float]]:
    """p50 and p99 of ``append_events`` (200 webhook-like events of 1 KB a batch, fsync on) on a store
    migrated without the search index (0005), and on one with it, its background indexer running."""
    from opsloop._ids import new_id
    from opsloop.state import NewEvent, open_store
    from opsloop.state.sqlite import SQLiteStateStore

    batches = 10 if smoke else 150
    out: dict[str, tuple[float, float]] = {}
    for label, path in (("without the search index", "plain.sqlite"), ("with the indexer beside it", "indexed.sqlite")):
        if path == "plain.sqlite":
            store: Any = SQLiteStateStore(root / "state" / path)
            store.migrate(upto=4)
        else:
            store = open_store(f"sqlite:///state/{path}", root)
        samples = []
        for b in range(batches):
            batch = []
            for n in range(200):
                body = json.dumps({"email": f"person{b * 200 + n}@example.com", "note": "x" * 960}).encode()
                batch.append(NewEvent(id=new_id("evt_"), name="signup", received_at=time.time(), endpoint="signup",
                                      body=body, payload_text=body.decode()))
            start = time.perf_counter()
            store.append_events(batch)
            samples.append(time.perf_counter() - start)
        samples.sort()
        out[label] = (samples[len(samples) // 2], samples[min(len(samples) - 1, math.ceil(0.99 * len(samples)) - 1)])
        if path == "indexed.sqlite":
            behind, started = store.max_seq() - store.search_indexed_upto(), time.perf_counter()
            deadline = time.monotonic() + 120
            while store.search_indexed_upto() < store.max_seq() and time.monotonic() < deadline:
                time.sleep(0.05)
            print(f"the indexer was {behind} events behind after the last append, caught up "
                  f"{time.perf_counter() - started:.2f}s later", flush=True)
        store.close()
    return out


if __name__ == "__main__":
    main()
