"""`opsloop source freshness` gives the verdicts `dbt source freshness` gives (pass / warn / error, an empty
table, a filter, a table's freshness over its source's, `freshness: null`, a missing loaded_at_field), exits
as dbt does, and writes target/sources.json with dbt's results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ._dbt import dbt, opsloop, write_project

FILES = {
    "models/m.sql": "select * from {{ source('raw', 'fresh') }}\n",
    "models/sources.yml": """
        version: 2
        sources:
          - name: raw
            schema: raw
            loaded_at_field: loaded_at
            freshness:
              warn_after: {count: 1, period: hour}
              error_after: {count: 1, period: day}
            tables:
              - name: fresh
              - name: stale
              - name: old
              - name: filtered
                freshness:
                  error_after: {count: 10, period: minute}
                  filter: "kind = 'a'"
              - name: unchecked
                freshness: null
              - name: empty
          - name: other
            schema: raw
            tables:
              - name: nofield
                freshness: {warn_after: {count: 1, period: hour}}
    """,
}


def _load(path: Path) -> None:
    import duckdb

    con = duckdb.connect(str(path))
    try:
        con.execute("create schema raw")
        for name, age in [("fresh", "5 minute"), ("stale", "3 hour"), ("old", "3 day"), ("unchecked", "3 day")]:
            con.execute(f"create table raw.{name} as select now()::timestamp - interval {age} as loaded_at")
        con.execute("create table raw.filtered as select * from (values (now()::timestamp - interval 2 minute, 'b'), "
                    "(now()::timestamp - interval 20 minute, 'a')) t(loaded_at, kind)")
        con.execute("create table raw.empty (loaded_at timestamp)")
        con.execute("create table raw.nofield as select 1 as x")
    finally:
        con.close()


def test_source_freshness_gives_dbts_verdicts_and_sources_json(tmp_path: Path) -> None:
    ours = write_project(tmp_path / "ours", FILES)
    theirs = write_project(tmp_path / "theirs", FILES)
    _load(ours / "warehouse.duckdb")
    shutil.copy(ours / "warehouse.duckdb", theirs / "dbt.duckdb")  # the same rows, the same load times

    proc = opsloop(ours, "source", "freshness")
    ref = dbt(theirs, "source", "freshness")
    assert proc.returncode == 1 and ref.returncode == 1, (proc.stdout + proc.stderr, ref.stdout)
    mine = json.loads((ours / "target" / "sources.json").read_text())
    dbts = json.loads((theirs / "target" / "sources.json").read_text())
    assert mine["metadata"]["dbt_schema_version"] == dbts["metadata"]["dbt_schema_version"]

    def summary(data: dict[str, object]) -> dict[str, tuple[object, ...]]:
        return {r["unique_id"]: (r["status"], r["max_loaded_at"], r["criteria"])  # type: ignore[index]
                for r in data["results"]}  # type: ignore[attr-defined]

    assert summary(mine) == summary(dbts)
    assert {k: v[0] for k, v in summary(mine).items()} == {
        "source.proj.raw.fresh": "pass", "source.proj.raw.stale": "warn", "source.proj.raw.old": "error",
        "source.proj.raw.filtered": "error", "source.proj.raw.empty": "error"}
    assert "models/sources.yml:23: source other.nofield has freshness: but no loaded_at_field" in proc.stderr
    assert "Could not compute freshness for source nofield" in ref.stdout
    assert "warn: raw.stale: last loaded 3.0 hours ago" in proc.stderr, proc.stderr

    # only the fresh and the stale table: a warning does not fail the command, in either
    proc = opsloop(ours, "source", "freshness", "-s", "source:raw.fresh", "-s", "raw.stale")
    assert proc.returncode == 0, proc.stderr
    assert dbt(theirs, "source", "freshness", "-s", "source:raw.fresh", "source:raw.stale").returncode == 0
    assert [r["status"] for r in json.loads((ours / "target" / "sources.json").read_text())["results"]] == \
        ["pass", "warn"]


def test_bad_freshness_criteria_are_an_error_with_file_line(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", {"models/sources.yml": """
        version: 2
        sources:
          - name: raw
            loaded_at_field: loaded_at
            tables:
              - name: t
                freshness: {warn_after: {count: 1, period: fortnight}}
    """})
    proc = opsloop(root, "source", "freshness")
    assert proc.returncode == 1
    assert "models/sources.yml:7: source raw.t: freshness warn_after should be {count: <number>, period: " \
           "minute|hour|day}" in proc.stderr, proc.stderr
