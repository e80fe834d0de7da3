"""Snapshots build the same SCD2 tables as dbt-core + dbt-duckdb, build after build, as the source
rows change, vanish and come back: timestamp and check strategies, hard_deletes, the SQL block and the
1.9 YAML form, and a model that reads a snapshot."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path
from typing import Any

from ._dbt import dbt, opsloop, relations, write_project

V1 = """
    id,name,tier,updated_at
    1,alice,gold,2024-01-01 00:00:00
    2,bob,silver,2024-01-01 00:00:00
    3,carol,bronze,2024-01-01 00:00:00
"""
V2 = """
    id,name,tier,updated_at
    1,alice,platinum,2024-02-01 00:00:00
    2,bob,silver,2024-01-01 00:00:00
    4,dave,gold,2024-02-01 00:00:00
"""
V3 = """
    id,name,tier,updated_at
    1,alice,platinum,2024-02-01 00:00:00
    2,robert,silver,2024-01-01 00:00:00
    3,carol,bronze,2024-03-01 00:00:00
"""

FILES = {
    "seeds/customers.csv": V1,
    "snapshots/customers_snap.sql": """
        {% snapshot customers_snap %}
        {{ config(target_schema='snapshots', unique_key='id', strategy='timestamp', updated_at='updated_at',
                  invalidate_hard_deletes=True) }}
        select * from {{ ref('customers') }}
        {% endsnapshot %}

        {% snapshot customers_all %}
        {{ config(unique_key=['id'], strategy='check', check_cols='all',
                  dbt_valid_to_current="'9999-12-31'::timestamp",
                  snapshot_meta_column_names={'dbt_scd_id': 'scd_id', 'dbt_updated_at': 'changed_at'}) }}
        select id, name, tier from {{ ref('customers') }}
        {% endsnapshot %}
    """,
    "snapshots/tiers.yml": """
        snapshots:
          - name: customer_tiers
            relation: ref('customers')
            config:
              schema: history
              unique_key: id
              strategy: check
              check_cols: [tier]
              hard_deletes: new_record
            columns:
              - name: id
                data_tests: [not_null]
    """,
    "models/current_customers.sql": """
        select id, name, tier
        from {{ ref('customers_snap') }}
        where dbt_valid_to is null
    """,
}
CHECK_TABLES = {"main.customers_all", "main_history.customer_tiers"}
"""The check strategy's times (and so its dbt_scd_id hashes) are the build's clock, not the data's."""


def _normal(tables: dict[str, Any]) -> dict[str, Any]:
    """Each table's build-time timestamps as ordinals (<t1> is the first build that wrote one), and the
    check strategy's clock-based hashes as <scd>, so two builds made at different times compare."""
    recent = dt.datetime.now() - dt.timedelta(days=1)
    out: dict[str, Any] = {}
    for name, (cols, rows) in tables.items():
        names = [c for c, _ in cols]
        times = sorted({v for r in rows for v in r if isinstance(v, dt.datetime) and v.replace(tzinfo=None) > recent})
        ordinal = {t: f"<t{i}>" for i, t in enumerate(times, 1)}
        fixed = []
        for row in rows:
            values = [ordinal.get(v, v) if isinstance(v, dt.datetime) else v for v in row]
            for scd in ("dbt_scd_id", "scd_id"):
                if name in CHECK_TABLES and scd in names:
                    values[names.index(scd)] = "<scd>"
            fixed.append(values)
        out[name] = (cols, sorted(fixed, key=lambda r: json.dumps(r, default=str)))
    return out


def _set_seed(root: Path, text: str) -> None:
    (root / "seeds" / "customers.csv").write_text(textwrap.dedent(text).lstrip("\n"))


def test_snapshots_match_dbt_build_after_build(tmp_path: Path) -> None:
    ours = write_project(tmp_path / "ours", FILES)
    theirs = write_project(tmp_path / "theirs", FILES)
    for run, version in enumerate([V1, V2, V3], 1):
        _set_seed(ours, version)
        _set_seed(theirs, version)
        proc = opsloop(ours, "build")
        assert proc.returncode == 0, (run, proc.stdout + proc.stderr)
        ref = dbt(theirs, "build")
        assert ref.returncode == 0, (run, ref.stdout)
        mine, dbts = relations(ours / "warehouse.duckdb"), relations(theirs / "dbt.duckdb")
        assert sorted(mine) == sorted(dbts), run
        assert {"snapshots.customers_snap", "main.customers_all", "main_history.customer_tiers"} <= set(mine)
        assert _normal(mine) == _normal(dbts), run
    snap_cols, snap_rows = mine["snapshots.customers_snap"]
    names = [c for c, _ in snap_cols]
    assert names[-4:] == ["dbt_scd_id", "dbt_updated_at", "dbt_valid_from", "dbt_valid_to"]
    # alice has two versions (the first closed when the second came), carol was invalidated then came back
    alice = [r for r in snap_rows if r[0] == 1]
    assert len(alice) == 2 and sum(r[-1] is None for r in alice) == 1
    assert len({r[names.index("dbt_scd_id")] for r in snap_rows}) == len(snap_rows)
    # the YAML-form check snapshot with new_record marks the deleted rows
    tier_cols, tier_rows = mine["main_history.customer_tiers"]
    deleted = [r for r in tier_rows if r[[c for c, _ in tier_cols].index("dbt_is_deleted")] == "True"]
    assert {r[0] for r in deleted} == {3, 4}
    # renamed meta columns, and the current rows' dbt_valid_to set by dbt_valid_to_current
    all_cols, all_rows = mine["main.customers_all"]
    assert [c for c, _ in all_cols] == ["id", "name", "tier", "scd_id", "changed_at", "dbt_valid_from", "dbt_valid_to"]
    assert sum(r[-1] == dt.datetime(9999, 12, 31) for r in all_rows) == 4  # 1, 2, 3 and dave (ignored delete)
    # the model reading the snapshot sees its current rows
    assert sorted(r[0] for r in mine["main.current_customers"][1]) == [1, 2, 3]


def test_opsloop_snapshot_builds_only_snapshots_and_selects_them(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", FILES)
    assert opsloop(root, "seed").returncode == 0
    proc = opsloop(root, "snapshot", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert sorted((r["kind"], r["name"], r["status"]) for r in results) == [
        ("snapshot", "customer_tiers", "success"), ("snapshot", "customers_all", "success"),
        ("snapshot", "customers_snap", "success")]
    proc = opsloop(root, "build", "-s", "customers_snap+", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = {r["name"]: r for r in json.loads(proc.stdout)["results"]}
    assert set(built) == {"customers_snap", "current_customers"}
    assert built["customers_snap"]["changed_rows"] == 0 and built["customers_snap"]["rows"] == 3


def test_a_bad_snapshot_config_names_file_and_line(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", {
        "seeds/customers.csv": V1,
        "snapshots/bad.sql": """
            -- no strategy
            {% snapshot no_strategy %}
            {{ config(unique_key='id') }}
            select * from {{ ref('customers') }}
            {% endsnapshot %}
            {% snapshot no_updated_at %}
            {{ config(unique_key='id', strategy='timestamp') }}
            select * from {{ ref('customrs') }}
            {% endsnapshot %}
        """,
        "snapshots/bad.yml": """
            snapshots:
              - name: from_yaml
                relation: customers
                config: {unique_key: id, strategy: check, check_cols: all}
        """,
    })
    proc = opsloop(root, "validate")
    assert proc.returncode == 1
    for line in ["snapshots/bad.sql:2: snapshot 'no_strategy': needs a strategy",
                 "snapshots/bad.sql:8: ref('customrs') names no model or seed (did you mean 'customers'?)",
                 "snapshots/bad.yml:3: snapshot 'from_yaml': relation: should be ref('model')"]:
        assert line in proc.stderr, (line, proc.stderr)
    assert "Traceback" not in proc.stderr
