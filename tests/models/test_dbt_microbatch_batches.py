"""Microbatch batches at once: the batches between the first and the last run on up to ``threads`` sessions
(as dbt runs them where the adapter can), unless the model reads ``this`` or says ``concurrent_batches=false``;
the tables are dbt's either way, and a batch that fails among concurrent ones is reported as in order."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from ._dbt import opsloop, relations, side_by_side, write_project


def _day(offset: int) -> dt.date:
    return dt.datetime.now(dt.UTC).date() + dt.timedelta(days=offset)


def _files() -> dict[str, str]:
    begin = _day(-7)
    events = "id,ts,amount\n" + "".join(f"{i},{_day(-7 + i % 8)} {i % 24:02d}:00:00,{i}\n" for i in range(1, 41))
    model = """
        {{{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='ts',
                    batch_size='day', begin='{begin}'{extra}) }}}}
        select id, ts, amount * 3 as tripled from {{{{ ref('events') }}}}
        {tail}
    """
    return {
        "dbt_project.yml": "name: proj\nversion: '1.0.0'\nprofile: proj\nseeds:\n  proj:\n    events:\n"
                           "      +event_time: ts\n      +column_types: {ts: timestamp}\n",
        "seeds/events.csv": events,
        "models/at_once.sql": model.format(begin=begin, extra="", tail=""),
        "models/reads_this.sql": model.format(
            begin=begin, extra="",
            tail="{% if is_incremental() %}where id not in (select -1 from {{ this }}){% endif %}"),
        "models/in_order.sql": model.format(begin=begin, extra=", concurrent_batches=false", tail=""),
    }


def _messages(proc_stdout: str) -> dict[str, str]:
    return {str(r["name"]): str(r["message"]) for r in json.loads(proc_stdout)["results"]}


def test_middle_batches_run_at_once_unless_the_model_reads_this_and_the_tables_are_dbts(tmp_path: Path) -> None:
    files = _files()
    ours, theirs = write_project(tmp_path / "ours", files), write_project(tmp_path / "theirs", files)
    begin = _day(-7)
    # first build: 8 daily batches from begin, the 6 between the first and the last 4 at a time; a later
    # build: today and the lookback day (nothing between); --full-refresh: the 8 again
    concurrent = f"8 batch(es) from {begin}, 6 of them 4 at a time"
    expected = [(("build",), concurrent), (("build",), f"2 batch(es) from {_day(-1)}"),
                (("build", "--full-refresh"), concurrent)]
    for args, at_once in expected:
        proc, ref = side_by_side(ours, theirs, *args, "--threads", "4", "--json", dbt_args=args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert ref.returncode == 0, ref.stdout
        built = relations(ours / "warehouse.duckdb")
        assert built == relations(theirs / "dbt.duckdb")
        assert len(built["main.at_once"][1]) == 40  # type: ignore[arg-type]
        messages = _messages(proc.stdout)
        assert messages["at_once"] == at_once, messages
        assert messages["reads_this"] == at_once.split(",")[0], messages  # in order: it reads {{ this }}
        assert messages["in_order"] == at_once.split(",")[0], messages  # concurrent_batches=false
    # one thread: in order
    proc = opsloop(ours, "build", "--full-refresh", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "at a time" not in _messages(proc.stdout)["at_once"]
    assert relations(ours / "warehouse.duckdb") == relations(theirs / "dbt.duckdb")


def test_a_failed_batch_among_concurrent_ones_is_reported_and_the_rest_are_kept(tmp_path: Path) -> None:
    files = _files()
    bad = _day(-3)
    files["seeds/labels.csv"] = "id,ts,label\n" + "".join(
        f"{i},{_day(-7 + i % 8)} 06:00:00,{'x' if _day(-7 + i % 8) == bad else i}\n" for i in range(1, 17))
    files["dbt_project.yml"] += "    labels:\n      +event_time: ts\n      +column_types: {ts: timestamp}\n"
    files["models/labelled.sql"] = f"""
        {{{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='ts',
                    batch_size='day', begin='{_day(-7)}') }}}}
        select id, ts, cast(label as integer) as n from {{{{ ref('labels') }}}}
    """
    ours, theirs = write_project(tmp_path / "ours", files), write_project(tmp_path / "theirs", files)
    proc, ref = side_by_side(ours, theirs, "build", "--threads", "4", dbt_args=("build",))
    assert ref.returncode == 1 and "PARTIAL SUCCESS (7/8)" in ref.stdout, ref.stdout
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"partial success (7/8 batches): batch {bad} failed" in proc.stderr, proc.stderr
    assert relations(ours / "warehouse.duckdb") == relations(theirs / "dbt.duckdb")
