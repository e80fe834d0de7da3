"""`opsloop demo` (the README's first command) runs the example project with generated traffic."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import free_port, run_cli


@pytest.mark.slow
def test_demo_runs_and_generates_events(tmp_path: Path) -> None:
    port = free_port()
    result = run_cli("demo", str(tmp_path / "demo"), "--port", str(port), "--duration", "3", "--rate", "10",
                     timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"http://127.0.0.1:{port}/" in result.stdout and "log in with the token:" in result.stdout
    count = int(result.stdout.strip().splitlines()[-1].split()[2])
    assert count >= 5
