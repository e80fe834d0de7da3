"""Benchmarks that cannot rot: every `bench/*.py` runs its whole path in `--smoke` mode (tiny sizes, seconds)
and prints its `ratio <what> = <number>x` line(s) against a baseline measured in the same run.

A peer that cannot be installed here is named by the benchmark (`<peer> baseline skipped: <why>`) and the
run still passes; a machine without Postgres or Chromium skips the benchmarks that need them, except in CI.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import IN_CI, PG_DSN, _pg_available

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
BENCHMARKS = sorted(p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_"))
RATIO = re.compile(r"^ratio (?P<what>.+?) = (?P<value>\d+(?:\.\d+)?)x(?:\s|$)")

# What each benchmark's smoke run must print besides its ratio lines, and what it needs from the machine.
EXPECTED: dict[str, list[str]] = {
    "cli": ["opsloop --help / bare python (cpu)"],
    "dashboards": ["webhook -> tile in browser / webhook ack (p50)", "metric API after a build / direct SQL (p50)"],
    "identity": ["full resolution / baseline scan", "incremental (1%) / baseline scan"],
    "ingest": ["c/a", "c/b", "(c+r)/a"],
    "models": ["opsloop/floor at 10 models"],
    "pages": ["/events p95 / bare store p95", "/events?q=<an email> p95 / bare store p95"],
    "query": ["API query / bare DuckDB (sum of the queries)", "CLI query / bare DuckDB (sum of the queries)"],
    "scale": ["accepted/s postgres x2 / sqlite x1"],
    "sources": ["opsloop / dlt parquet into DuckDB"],
    "syncs": ["diff / floor", "webhook rows/s / outbox rows/s"],
    "workflows": ["sustained workflows/s / offered events/s"],
}
DBT = ROOT / ".venv-dbt" / "bin" / "dbt"


def test_every_benchmark_has_a_smoke_run() -> None:
    assert sorted(EXPECTED) == BENCHMARKS, "a new bench/*.py needs its --smoke run checked here"


def _needs(name: str) -> list[str]:
    if name == "scale":
        if not _pg_available():
            if IN_CI:
                pytest.fail(f"Postgres is required when CI=true and is not reachable at {PG_DSN}")
            pytest.skip(f"Postgres not reachable at {PG_DSN}")
        return ["--pg", PG_DSN]
    if name == "dashboards" and not Path("/usr/bin/chromium").exists():
        if IN_CI:
            pytest.fail("/usr/bin/chromium is missing; .ci/run installs Debian's chromium package")
        pytest.skip("/usr/bin/chromium is missing (apt-get install chromium)")
    return []


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_smoke_run(name: str) -> None:
    args = _needs(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSLOOP_") and k != "DBOS_PYTHON"}
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--smoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    output = f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, output
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ratio ")]
    parsed = [RATIO.match(line) for line in lines]
    assert lines and all(parsed), f"ratio lines missing or without a number:\n{output}"
    whats = {m.group("what") for m in parsed if m}
    expected = list(EXPECTED[name])
    if name == "models":
        expected += ["dbt/opsloop at 10 models"] if DBT.exists() else []
        assert DBT.exists() or "dbt baseline skipped:" in proc.stdout, output
    if name == "cli":
        expected += ["dbt --help / opsloop --help (cpu)", "dbt build / opsloop build (cpu)"] if DBT.exists() else []
        assert DBT.exists() or "dbt baseline skipped:" in proc.stdout, output
    if name == "workflows":  # DBOS runs in this Python when it is installed here (pip install dbos)
        has_dbos = importlib.util.find_spec("dbos") is not None
        expected += ["opsloop burst / DBOS workflows/s"] if has_dbos else []
        assert has_dbos or "DBOS baseline skipped:" in proc.stdout, output
    assert set(expected) <= whats, f"expected ratios {expected}, got {sorted(whats)}\n{output}"
    assert all(float(m.group("value")) > 0 for m in parsed if m), output
