"""The full example company (``opsloop init DIR --example saas``). Grows with each capability."""

from __future__ import annotations

from pathlib import Path


def write_saas_example(target: Path) -> list[Path]:
    """Until the example company lands, the starter project is the example."""
    return []
