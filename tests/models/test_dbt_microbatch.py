"""dbt's `microbatch` incremental strategy: the same tables as dbt-core + dbt-duckdb build, on a first build
(batches from `begin`), a second build after new rows land (the current batch and `lookback` before it),
a backfill of a range (`--event-time-start` / `--event-time-end`), and with a batch that fails."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from ._dbt import opsloop, relations, side_by_side, write_project


def _day(offset: int) -> dt.date:
    return dt.datetime.now(dt.UTC).date() + dt.timedelta(days=offset)


def _at(offset: int, hour: int) -> str:
    return f"{_day(offset)} {hour:02d}:00:00"


def _project_yml(*timed_seeds: str) -> str:
    """dbt_project.yml with these seeds' ``ts`` a timestamp and their event_time."""
    seeds = "".join(f"      {name}:\n        +event_time: ts\n        +column_types: {{ts: timestamp}}\n"
                    for name in timed_seeds)
    return f"name: proj\nversion: '1.0.0'\nprofile: proj\nseeds:\n  proj:\n{seeds}"


def _files() -> dict[str, str]:
    begin = _day(-4)
    month_begin = (_day(0).replace(day=1) - dt.timedelta(days=40)).replace(day=1)
    events = "id,ts,amount\n" + "".join(f"{i},{_at(-4 + i % 5, i % 24)},{i * 10}\n" for i in range(1, 11))
    clicks = "id,ts,page\n" + "".join(f"{i},{_day(-i * 9)} 12:00:00,/p{i % 3}\n" for i in range(0, 8))
    return {
        "dbt_project.yml": _project_yml("events"),
        "seeds/events.csv": events,
        "seeds/customers.csv": "id,name\n1,ann\n2,bob\n",
        "data/clicks.csv": clicks,
        "models/sources.yml": """
            version: 2
            sources:
              - name: files
                meta:
                  external_location: "read_csv('data/{name}.csv', header = true)"
                config:
                  event_time: ts
                tables:
                  - name: clicks
        """,
        # a ref with event_time (filtered to the batch) and one without (read whole)
        "models/daily.sql": f"""
            {{{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='ts',
                        batch_size='day', begin='{begin}', lookback=1) }}}}
            select e.id, e.ts, e.amount * 2 as doubled, (select count(*) from {{{{ ref('customers') }}}}) as n
            from {{{{ ref('events') }}}} e
        """,
        # a source with event_time, monthly batches, an aggregate per batch
        "models/monthly_clicks.sql": f"""
            {{{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='month_start',
                        batch_size='month', begin='{month_begin}') }}}}
            select date_trunc('month', ts) as month_start, count(*) as clicks,
              '{{{{ model.batch.id if model.batch else "" }}}}' as batch_id, '{{{{ model.name }}}}' as model_name
            from {{{{ source('files', 'clicks') }}}}
            group by 1
        """,
        "models/daily_total.sql": "{{ config(materialized='table') }}\n"
                                  "select count(*) as n, sum(doubled) as total from {{ ref('daily') }}\n",
    }


def _both(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    return write_project(tmp_path / "ours", files), write_project(tmp_path / "theirs", files)


def _append(roots: tuple[Path, Path], rel: str, text: str) -> None:
    for root in roots:
        with (root / rel).open("a") as f:
            f.write(text)


def _same(ours: Path, theirs: Path) -> dict[str, object]:
    built = relations(ours / "warehouse.duckdb")
    assert built == relations(theirs / "dbt.duckdb")
    return built


def test_microbatch_builds_backfills_and_adds_new_rows_as_dbt_duckdb(tmp_path: Path) -> None:
    ours, theirs = _both(tmp_path, _files())
    proc, ref = side_by_side(ours, theirs, "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ref.returncode == 0, ref.stdout
    built = _same(ours, theirs)
    assert len(built["main.daily"][1]) == 10  # type: ignore[arg-type]
    batch_ids = {row[2] for row in built["main.monthly_clicks"][1]}  # type: ignore[attr-defined]
    assert len(batch_ids) > 1 and all(len(b) == 6 for b in batch_ids), batch_ids  # model.batch.id: 202612

    # new rows land: today and yesterday are rebuilt (lookback 1), three days ago is not (yet)
    late = f"11,{_at(0, 1)},110\n12,{_at(-1, 2)},120\n13,{_at(-3, 3)},130\n"
    _append((ours, theirs), "seeds/events.csv", late)
    _append((ours, theirs), "data/clicks.csv", f"20,{_day(0)} 01:00:00,/new\n")
    proc, ref = side_by_side(ours, theirs, "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ref.returncode == 0, ref.stdout
    built = _same(ours, theirs)
    ids = sorted(row[0] for row in built["main.daily"][1])  # type: ignore[attr-defined]
    assert ids == [*range(1, 13)], ids

    # a backfill of the day the late row belongs to picks it up, and rebuilds only that window
    start, end = str(_day(-3)), str(_day(-2))
    proc, ref = side_by_side(ours, theirs, "run", "-s", "daily", "--event-time-start", start, "--event-time-end", end)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ref.returncode == 0, ref.stdout
    built = _same(ours, theirs)
    assert sorted(row[0] for row in built["main.daily"][1]) == [*range(1, 14)]  # type: ignore[attr-defined]

    # a full refresh rebuilds from begin
    proc, ref = side_by_side(ours, theirs, "build", "--full-refresh")
    assert proc.returncode == 0 and ref.returncode == 0, proc.stderr + ref.stdout
    _same(ours, theirs)


def test_a_failed_batch_is_reported_and_the_others_still_run_as_in_dbt(tmp_path: Path) -> None:
    files = _files()
    bad_day = _day(-2)
    files["seeds/labels.csv"] = "id,ts,label\n" + "".join(
        f"{i},{_at(-4 + i % 5, 6)},{'x' if _day(-4 + i % 5) == bad_day else i}\n" for i in range(1, 8))
    files["dbt_project.yml"] = _project_yml("events", "labels")
    files["models/labelled.sql"] = f"""
        {{{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='ts',
                    batch_size='day', begin='{_day(-4)}') }}}}
        select id, ts, cast(label as integer) as n from {{{{ ref('labels') }}}}
    """
    files["models/after_labelled.sql"] = "select * from {{ ref('labelled') }}\n"
    ours, theirs = _both(tmp_path, files)
    proc, ref = side_by_side(ours, theirs, "build")
    assert ref.returncode == 1 and "PARTIAL SUCCESS (4/5)" in ref.stdout, ref.stdout
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"models/labelled.sql: partial success (4/5 batches): batch {bad_day} failed" in proc.stderr, proc.stderr
    assert "after_labelled" in proc.stdout and "skipped" in proc.stdout
    assert "Traceback" not in proc.stderr
    built = _same(ours, theirs)
    assert "main.after_labelled" not in built
    assert len(built["main.labelled"][1]) == 7 - sum(  # type: ignore[arg-type]
        1 for i in range(1, 8) if _day(-4 + i % 5) == bad_day)


def test_microbatch_config_problems_name_the_file_and_line(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", {
        "models/no_time.sql": "{{ config(materialized='incremental', incremental_strategy='microbatch',\n"
                              "batch_size='day', begin='2024-01-01') }}\nselect 1 as id\n",
        "models/bad_size.sql": "-- weekly\n{{ config(materialized='incremental', incremental_strategy='microbatch', "
                               "event_time='ts', batch_size='week', begin='2024-01-01') }}\n"
                               "select now() as ts\n",
        "models/keyed.sql": "{{ config(materialized='incremental', incremental_strategy='microbatch', "
                            "event_time='ts', batch_size='day', unique_key='id') }}\nselect now() as ts, 1 as id\n",
        "models/text_flag.sql": "{{ config(materialized='incremental', incremental_strategy='microbatch', "
                                "event_time='ts', batch_size='day', begin='2024-01-01',\n"
                                "concurrent_batches='false') }}\n"
                                "select now() as ts\n",
        "models/py_batched.py": "def model(dbt, session):\n    dbt.config(materialized='incremental', "
                                "incremental_strategy='microbatch')\n    return session.sql('select 1 as id')\n",
    })
    proc = opsloop(root, "validate")
    assert proc.returncode == 1
    for line in ("models/no_time.sql:1: microbatch model 'no_time': needs an event_time config",
                 "models/bad_size.sql:2: microbatch model 'bad_size': batch_size must be one of hour, day, month, "
                 "year, not 'week'",
                 "models/keyed.sql:1: microbatch model 'keyed': needs a begin config",
                 "models/keyed.sql:1: microbatch model 'keyed': unique_key is not used",
                 "models/text_flag.sql:1: microbatch model 'text_flag': concurrent_batches must be true or false, "
                 "not 'false'",
                 "models/py_batched.py: microbatch model 'py_batched': Python models cannot use the microbatch"):
        assert line in proc.stderr, (line, proc.stderr)
    proc = opsloop(root, "build", "--event-time-start", "2024-01-02")
    assert proc.returncode != 0 and "--event-time-start was given without --event-time-end" in proc.stderr
