"""Dashboards: webhook posted -> tile changed in the browser; metric API latency on 1M rows in DuckDB.

    .venv/bin/python bench/dashboards.py [--events 50] [--rows 1000000] [--runs 3]
    .venv/bin/python bench/dashboards.py --smoke     # 3 events, 10,000 rows, 5 requests, one run

1. End to end: a purchase webhook is posted; the example's customers "model" (a stand-in that rebuilds on
   each raw.events load and emits model.built) updates; the server pushes the tile; headless Chromium
   redraws the KPI. Timed from the POST to the new value on the page. Baseline in the same run: the
   webhook's own acknowledgement time.
2. Metric API: ``GET /api/metrics/sales?grain=day&since=1y&by=plan`` over an orders table of N rows,
   right after a build (the result cache dropped, as ``model.built`` does) and repeated (from the cache).
   Baseline in the same run: the same compiled SQL run directly on the DuckDB connection.

Goals: end-to-end p95 < 1 s; metric API p95 < 100 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _report import ratio  # noqa: E402
from tests.conftest import ServerThread, make_app  # noqa: E402
from tests.metrics.browser import launch, login, wait_js  # noqa: E402
from tests.metrics.conftest import seed_app, write_example  # noqa: E402
from tests.metrics.test_browser import purchases_become_customers  # noqa: E402

from opsloop.metrics import MetricQuery  # noqa: E402
from opsloop.project.scaffold import init_project  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def fmt(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:7.1f} ms   p95 {pct(values, 95) * 1000:7.1f} ms"


def project() -> Path:
    root = Path(tempfile.mkdtemp(prefix="opsloop-bench-")) / "shop"
    init_project(root)
    write_example(root)
    app = make_app(root)
    seed_app(app)
    app.close()
    return root


def end_to_end(events: int) -> tuple[list[float], list[float]]:
    root = project()
    server = ServerThread(make_app(root))
    server.__enter__()
    purchases_become_customers(server.app)
    gen = launch()
    browser = next(gen)
    acks: list[float] = []
    seen: list[float] = []
    try:
        page = browser.new_page()
        login(page, server.url, server.token, "/dashboards/sales")
        page.wait_for_selector("#tile-0-body .kpi-value")
        page.wait_for_selector("#live.on")
        # the pages' CSP forbids eval, which Playwright's wait_for_function uses; wait_js polls through DevTools
        wait_js(page, "[...document.querySelectorAll('section.tile')].every(t => t.dataset.refreshedAt)")
        count = int(page.inner_text("#tile-0-body .kpi-value"))
        with httpx.Client() as client:
            for i in range(-1, events):  # event -1 warms the server up and is not counted
                start = time.perf_counter()
                got = client.post(f"{server.url}/hooks/purchase",
                                  json={"customer_id": 1001 + i, "name": f"Bench {i}", "amount": 10})
                ack = time.perf_counter() - start
                assert got.status_code in (200, 202), got.text
                count += 1
                wait_js(page, f"document.querySelector('#tile-0-body .kpi-value').textContent === '{count}'",
                        30_000, interval=0.005)
                if i >= 0:
                    acks.append(ack)
                    seen.append(time.perf_counter() - start)
        page.close()
    finally:
        try:
            next(gen)
        except StopIteration:
            pass
        server.__exit__(None, None, None)
    return acks, seen


def metric_api(rows: int, requests: int) -> tuple[list[float], list[float], list[float]]:
    root = project()
    app = make_app(root)
    app.warehouse.execute("DROP TABLE analytics.orders")
    app.warehouse.execute(
        "CREATE TABLE analytics.orders AS SELECT i AS order_id, i % 5000 AS customer_id, "
        "CASE WHEN i % 3 = 0 THEN 'team' ELSE 'pro' END AS plan, (i % 97)::DOUBLE AS amount, "
        # spread over the 359 days before today, so '1y' always covers every row whatever the date
        "CAST(current_date AS TIMESTAMP) - INTERVAL 364 DAY + to_seconds(CAST(i * 7919 % 31000000 AS BIGINT)) "
        "AS ordered_at FROM range(?) t(i)",
        (rows,))
    from opsloop.metrics.compiler import MeasureQuery, compile_measure

    sm, measure = app.services["metrics"].catalog.measures["sales_amount"]
    q = MetricQuery.from_params("sales", "day", "1y", None, ["plan"])
    sql, params = compile_measure(MeasureQuery(sm, measure, "analytics.orders", "day", q.since, None, ["plan"]))
    direct: list[float] = []
    for _ in range(requests):
        start = time.perf_counter()
        app.warehouse.query(sql, params)
        direct.append(time.perf_counter() - start)
    app.close()
    server = ServerThread(make_app(root))
    server.__enter__()
    cold: list[float] = []
    warm: list[float] = []
    cache = server.app.services["metrics"].engine.cache
    params = {"grain": "day", "since": "1y", "by": "plan"}
    try:
        with server.api() as api:
            api.get("/api/metrics/sales", params=params)
            for _ in range(requests):
                cache.invalidate({"orders"})  # what a model.built for orders does: the next request reads DuckDB
                start = time.perf_counter()
                got = api.get("/api/metrics/sales", params=params)
                cold.append(time.perf_counter() - start)
                assert got.status_code == 200 and got.json()["rows"], got.text
                start = time.perf_counter()
                got = api.get("/api/metrics/sales", params=params)
                warm.append(time.perf_counter() - start)
                assert got.status_code == 200 and got.json()["rows"], got.text
    finally:
        server.__exit__(None, None, None)
    return direct, cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the whole path runs")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.rows, args.requests, args.runs = 3, 10_000, 5, 1
    e2e_ratio: list[float] = []
    cold_ratio: list[float] = []
    warm_ratio: list[float] = []
    e2e_p95: list[float] = []
    api_p95: list[float] = []
    for run in range(args.runs):
        acks, seen = end_to_end(args.events)
        print(f"run {run + 1}: webhook ack (baseline)        {fmt(acks)}")
        print(f"run {run + 1}: webhook -> tile in browser    {fmt(seen)}   "
              f"(x{statistics.median(seen) / statistics.median(acks):.0f} the ack)")
        e2e_p95.append(pct(seen, 95))
        e2e_ratio.append(statistics.median(seen) / statistics.median(acks))
        direct, cold, warm = metric_api(args.rows, args.requests)
        print(f"run {run + 1}: SQL direct on DuckDB (baseline) {fmt(direct)}   ({args.rows:,} rows)")
        print(f"run {run + 1}: GET /api/metrics/sales, after a build  {fmt(cold)}   "
              f"(x{statistics.median(cold) / statistics.median(direct):.2f} the direct SQL)")
        print(f"run {run + 1}: GET /api/metrics/sales, repeated       {fmt(warm)}   "
              f"(x{statistics.median(warm) / statistics.median(direct):.2f} the direct SQL)")
        api_p95.append(pct(cold, 95))
        cold_ratio.append(statistics.median(cold) / statistics.median(direct))
        warm_ratio.append(statistics.median(warm) / statistics.median(direct))
    e2e, api = statistics.median(e2e_p95), statistics.median(api_p95)
    print(f"\nmedian over {args.runs} runs: end-to-end p95 {e2e * 1000:.0f} ms (goal < 1000 ms: "
          f"{'met' if e2e < 1 else 'NOT met'}); metric API p95 right after a build {api * 1000:.1f} ms (goal < 100 ms: "
          f"{'met' if api < 0.1 else 'NOT met'})")
    ratio("webhook -> tile in browser / webhook ack (p50)", statistics.median(e2e_ratio))
    ratio("metric API after a build / direct SQL (p50)", statistics.median(cold_ratio))
    ratio("metric API repeated / direct SQL (p50)", statistics.median(warm_ratio))


if __name__ == "__main__":
    main()
