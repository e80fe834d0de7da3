"""Small dbt projects written by the tests, built by opsloop (the real CLI) and by dbt-core + dbt-duckdb."""

from __future__ import annotations

import os
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import run_cli

from .conftest import DBT


def write_project(root: Path, files: dict[str, str], name: str = "proj") -> Path:
    """A dbt project in ``root`` (dbt_project.yml first, then ``files``); returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    files = {"dbt_project.yml": f"name: {name}\nversion: '1.0.0'\nprofile: {name}\n", **files}
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def opsloop(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--project", str(root), timeout=120)


def dbt(root: Path, *args: str, name: str = "proj", targets: tuple[str, ...] = ("dev",)) -> \
        subprocess.CompletedProcess[str]:
    """Run the real dbt in ``root`` on its own DuckDB file (dbt.duckdb), schema main (each of ``targets``
    is a profile output on that file)."""
    if not DBT.exists():
        pytest.skip("dbt-core is not installed: run scripts/setup (it creates .venv-dbt)")
    outputs = "".join(f"    {t}:\n      type: duckdb\n      path: {root / 'dbt.duckdb'}\n      schema: main\n"
                      "      threads: 1\n" for t in targets)
    (root / "profiles.yml").write_text(f"{name}:\n  target: {targets[0]}\n  outputs:\n{outputs}")
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false",
           "DBT_PROFILES_DIR": str(root)}
    return subprocess.run([str(DBT), *args, "--project-dir", str(root)], env=env, cwd=root, capture_output=True,
                          text=True, timeout=300)


def relations(path: Path) -> dict[str, object]:
    """``schema.table`` -> its columns with their types, and its sorted rows, for every table and view."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        names = con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                            "WHERE table_schema NOT IN ('information_schema', 'pg_catalog')").fetchall()
        out: dict[str, object] = {}
        for s, t in names:
            cols = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
                               "AND table_name = ? ORDER BY ordinal_position", [s, t]).fetchall()
            out[f"{s}.{t}"] = (cols, sorted(con.execute(f'SELECT * FROM "{s}"."{t}"').fetchall(), key=repr))
        return out
    finally:
        con.close()



def side_by_side(ours: Path, theirs: Path, *args: str, dbt_args: tuple[str, ...] | None = None) -> \
        tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """``opsloop <args>`` in ``ours`` and ``dbt <dbt_args or args>`` in ``theirs`` at the same time (two
    processes on separate files: the comparison tests wait for one build, not two in a row)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        mine = pool.submit(opsloop, ours, *args)
        ref = pool.submit(dbt, theirs, *(args if dbt_args is None else dbt_args))
        return mine.result(), ref.result()


def build_both(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    """The same project written twice (``ours``, ``theirs``) and built by ``opsloop build`` and by
    ``dbt build`` (at once), each of which must succeed; returns the two project folders."""
    ours = write_project(tmp_path / "ours", files)
    theirs = write_project(tmp_path / "theirs", files)
    proc, ref = side_by_side(ours, theirs, "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ref.returncode == 0, ref.stdout
    return ours, theirs
