"""Every mistake a user can make in a model project gives one message with file:line — never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli

from .conftest import SHOP


def _edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1))


CASES = [
    pytest.param("models/staging/stg_orders.sql", "ref('shop', 'orders')", "ref('ordrs')",
                 "models/staging/stg_orders.sql:10: ref('ordrs') names no model or seed (did you mean 'orders'?)",
                 id="ref-typo"),
    pytest.param("models/staging/stg_events.sql", "source('raw', 'events')", "source('raw', 'evnts')",
                 "models/staging/stg_events.sql:8: source('raw', 'evnts') is not declared (did you mean 'raw.events'?)",
                 id="source-typo"),
    pytest.param("models/marts/dim_customers.sql", "c.customer_name,", "c.customer_nme,",
                 "models/marts/dim_customers.sql:3: column 'customer_nme' does not exist in fct_orders, stg_customers",
                 id="missing-column"),
    pytest.param("models/staging/stg_products.sql", "from {{ ref('products') }}",
                 "from {{ ref('products') }} join {{ ref('dim_customers') }} on true",
                 "models/marts/dim_customers.sql:10: models form a cycle: dim_customers -> fct_orders -> "
                 "int_order_items -> stg_products -> dim_customers",
                 id="cycle"),
    pytest.param("models/staging/schema.yml", "      - name: country\n",
                 "      - name: country\n     bad: [\n",
                 "models/staging/schema.yml:12: invalid YAML", id="bad-yaml"),
    pytest.param("models/staging/stg_products.sql", "select id", "select {{ dbt_utils.star(ref('products')) }}, id",
                 "models/staging/stg_products.sql:1: unsupported macro dbt_utils.star(): dbt_utils is not an "
                 "installed package", id="unsupported-macro"),
    pytest.param("models/staging/stg_products.sql", "select id",
                 "{% set cols = adapter.get_column_schema_from_query('select 1') %}\nselect id",
                 "models/staging/stg_products.sql:1: unsupported macro adapter.get_column_schema_from_query(): adapter "
                 "calls run against dbt internals", id="adapter-call"),
    pytest.param("models/marts/repeat_customers.sql", "var('min_orders')", "var('min_order')",
                 "models/marts/repeat_customers.sql:3: var 'min_order' is not defined", id="undefined-var"),
    pytest.param("models/marts/daily_orders.sql", "incremental_strategy='delete+insert'",
                 "incremental_strategy='upsert'",
                 "models/marts/daily_orders.sql:1: unsupported incremental_strategy 'upsert'", id="bad-strategy"),
]


@pytest.mark.parametrize(("rel", "old", "new", "expected"), CASES)
def test_build_error_names_file_and_line(tmp_path: Path, rel: str, old: str, new: str, expected: str) -> None:
    root = tmp_path / "shop"
    shutil.copytree(SHOP, root)
    _edit(root, rel, old, new)
    proc = run_cli("build", "--project", str(root))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (root / "warehouse.duckdb").exists() or "bad-yaml" not in rel
