"""pre-/post-hooks (project, folder and model level, adding up as in dbt), on-run-start / on-run-end,
and `--vars` / `--target` on the command line: the same tables as dbt's, build after build."""

from __future__ import annotations

from pathlib import Path

from ._dbt import dbt, opsloop, relations, write_project

FILES = {
    "dbt_project.yml": """
        name: proj
        version: '1.0.0'
        profile: proj
        vars:
          min_amount: 0
          label: default
        on-run-start:
          - "create table if not exists main.audit (event varchar, node varchar)"
          - "insert into main.audit values ('start', '{{ target.name }}')"
        on-run-end:
          - "insert into main.audit select 'end', cast(count(*) as varchar) from main.audit"
          - "create or replace table main.run_end as select '{{ schemas | join(',') }}' as schemas,
             {{ results | selectattr('status', 'equalto', 'success') | list | length }} as ok_nodes,
             '{{ results | map(attribute='node') | map(attribute='name') | sort | join(',') }}' as names"
        models:
          proj:
            +post-hook: "insert into main.audit values ('post', '{{ this.name }}')"
        seeds:
          proj:
            +post-hook: ["insert into main.audit values ('seeded', '{{ this.name }}')"]
    """,
    "seeds/payments.csv": """
        id,amount
        1,3
        2,8
        3,20
    """,
    "models/big.sql": """
        {{ config(materialized='table', pre_hook="insert into main.audit values ('pre', '{{ this.name }}')",
                  post_hook=["insert into main.audit values ('own post', '{{ this.name }}')"]) }}
        select id, amount, '{{ var("label") }}' as label, '{{ target.name }}' as env
        from {{ ref('payments') }}
        where amount > {{ var('min_amount') }}
    """,
    "models/small.sql": "select * from {{ ref('big') }} where amount < 10\n",
}


def test_hooks_vars_and_target_build_what_dbt_builds(tmp_path: Path) -> None:
    ours = write_project(tmp_path / "ours", FILES)
    theirs = write_project(tmp_path / "theirs", FILES)
    for args in [(), ("--vars", "{min_amount: 5, label: cli}", "--target", "prod")]:
        proc = opsloop(ours, "build", *args)
        assert proc.returncode == 0, (args, proc.stdout + proc.stderr)
        ref = dbt(theirs, "build", *args, targets=("dev", "prod"))
        assert ref.returncode == 0, (args, ref.stdout)
        mine = relations(ours / "warehouse.duckdb")
        assert mine == relations(theirs / "dbt.duckdb"), args
    audit = mine["main.audit"][1]  # type: ignore[index]
    assert ("start", "prod") in audit and ("pre", "big") in audit and ("own post", "big") in audit
    assert ("post", "small") in audit and ("seeded", "payments") in audit
    assert mine["main.big"][1] == [(2, 8, "cli", "prod"), (3, 20, "cli", "prod")]  # type: ignore[index]
    assert mine["main.run_end"][1] == [("main", 3, "big,payments,small")]  # type: ignore[index]


def test_a_failing_hook_names_the_file_and_bad_vars_are_refused(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", {
        "dbt_project.yml": "name: proj\nversion: '1.0.0'\nprofile: proj\n"
                           "on-run-start:\n  - \"select * from no_such_table\"\n",
        "models/m.sql": "{{ config(post_hook='insert into nowhere values (1)') }}\nselect 1 as id\n",
    })
    proc = opsloop(root, "build")
    assert proc.returncode == 1
    assert "dbt_project.yml: on-run-start hook 1 failed" in proc.stderr and "no_such_table" in proc.stderr, \
        proc.stderr
    (root / "dbt_project.yml").write_text("name: proj\nversion: '1.0.0'\nprofile: proj\n")
    proc = opsloop(root, "build")
    assert proc.returncode == 1
    assert "models/m.sql: post-hook 1 failed" in proc.stderr and "nowhere" in proc.stderr, proc.stderr
    proc = opsloop(root, "build", "--vars", "[1, 2]")
    assert proc.returncode == 1 and "--vars must be a mapping" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
