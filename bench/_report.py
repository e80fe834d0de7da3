"""Shared by the benchmarks: the lines a reader (and tests/test_bench_smoke.py) looks for.

Every benchmark prints at least one ``ratio <what> = <number>x`` line: a figure against a baseline
measured in the same run. A peer that is not installed is named in a ``<peer> baseline skipped: <why>``
line instead of failing the run.
"""

from __future__ import annotations


def ratio(label: str, value: float, note: str = "") -> None:
    print(f"ratio {label} = {value:.2f}x" + (f"   ({note})" if note else ""), flush=True)


def skipped(peer: str, why: str) -> None:
    print(f"{peer} baseline skipped: {why}", flush=True)
