"""The example schema the starter metrics run on, and projects that carry them.

Four tables in schema ``analytics`` (what the example's models build): customers, orders, leads and
demo_to_purchase. Dates are laid out from ``M``, the Monday of the week four weeks before today, so weekly
cohorts and "last 60 days" ranges are the same whatever day the tests run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from opsloop.app import App
from opsloop.project.scaffold import init_project

from ..conftest import ServerThread, make_app

EXAMPLE = Path(__file__).parent / "example"


def monday_base(today: date | None = None) -> date:
    today = today or datetime.now(UTC).date()
    start = today - timedelta(days=28)
    return start - timedelta(days=start.weekday())


CUSTOMERS = [  # id, name, plan, signup offset, churn offset
    (1, "Ada", "pro", 0, None),
    (2, "Grace", "team", 1, None),
    (3, "Linus", "pro", 8, 20),
    (4, "Edsger", "team", 9, None),
    (5, "Barbara", "pro", 15, None),
]
ORDERS = [  # id, customer, plan, amount, offset
    (1, 1, "pro", 100.0, 0), (2, 2, "team", 50.0, 2), (3, 1, "pro", 100.0, 7), (4, 3, "pro", 80.0, 8),
    (5, 4, "team", 40.0, 10), (6, 1, "pro", 100.0, 14), (7, 4, "team", 40.0, 16), (8, 5, "pro", 30.0, 15),
    (9, 1, "pro", 100.0, 22),
]
LEADS = [  # id, source, status, created offset, qualified offset
    (1, "web", "sql", 0, 1), (2, "web", "sql", 0, 1), (3, "ads", "sql", 2, 3), (4, "ads", "sql", 7, 8),
    (5, "web", "mql", 1, 2), (6, "web", "new", 3, None),
]
BUYERS = [  # customer, name, days from demo request to purchase
    (1, "Ada", 10.0), (2, "Grace", 4.0), (3, "Linus", 7.0), (4, "Edsger", 20.0), (5, "Barbara", 1.0),
]
TABLES = {
    "customers": "customer_id INTEGER, name VARCHAR, plan VARCHAR, signed_up_at TIMESTAMP, churned_at TIMESTAMP",
    "orders": "order_id INTEGER, customer_id INTEGER, plan VARCHAR, amount DOUBLE, ordered_at TIMESTAMP",
    "leads": "lead_id INTEGER, source VARCHAR, status VARCHAR, created_at TIMESTAMP, qualified_at TIMESTAMP",
    "demo_to_purchase": "customer_id INTEGER, name VARCHAR, demo_requested_at TIMESTAMP, purchased_at TIMESTAMP, "
                        "days_to_purchase DOUBLE",
}


def example_rows(base: date) -> dict[str, list[tuple[Any, ...]]]:
    def at(offset: int | None, hour: int = 10) -> datetime | None:
        return None if offset is None else datetime(base.year, base.month, base.day, hour) + timedelta(days=offset)

    signup = {c[0]: c[3] for c in CUSTOMERS}
    return {
        "customers": [(i, n, p, at(s), at(c)) for i, n, p, s, c in CUSTOMERS],
        "orders": [(i, c, p, a, at(o, 12)) for i, c, p, a, o in ORDERS],
        "leads": [(i, s, st, at(c), at(q)) for i, s, st, c, q in LEADS],
        "demo_to_purchase": [(c, n, at(signup[c] - int(d)), at(signup[c]), d) for c, n, d in BUYERS],
    }


def create_example_tables(execute: Callable[[str, tuple[Any, ...]], None], base: date, schema: str = "analytics",
                          placeholder: str = "?") -> None:
    """Create and fill the example tables through ``execute(sql, params)`` (any DB-API-like engine)."""
    execute(f"CREATE SCHEMA IF NOT EXISTS {schema}", ())
    for table, rows in example_rows(base).items():
        execute(f"CREATE TABLE {schema}.{table} ({TABLES[table]})", ())
        for row in rows:
            marks = ", ".join([placeholder] * len(row))
            execute(f"INSERT INTO {schema}.{table} VALUES ({marks})", row)


def write_example(root: Path) -> None:
    for folder in ("metrics", "dashboards", "events"):
        for path in (EXAMPLE / folder).glob("*.yml"):
            (root / folder).mkdir(exist_ok=True)
            shutil.copy(path, root / folder / path.name)


@pytest.fixture
def example_dir(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    init_project(root)
    write_example(root)
    return root


async def announce_builds(app: App, schema: str = "analytics") -> None:
    """What the model engine does after a build: one ``model.built`` event per model."""
    for table, rows in example_rows(monday_base()).items():
        await app.emit("model.built", {"model": table, "relation": f"{schema}.{table}", "rows": len(rows),
                                       "changed_rows": len(rows)})


def seed_app(app: App) -> None:
    """Fill the warehouse and record where each model was built (as the ``model.built`` handler does)."""
    base = monday_base()
    create_example_tables(lambda sql, params: app.warehouse.execute(sql, params), base)
    service = app.services["metrics"]
    for table in TABLES:
        service.record_build(table, f"analytics.{table}")


@pytest.fixture
def example_app(example_dir: Path) -> Iterator[App]:
    app = make_app(example_dir)
    seed_app(app)
    yield app
    app.close()


@pytest.fixture
def example_server(example_dir: Path, server_factory: Callable[..., ServerThread]) -> ServerThread:
    app_root = example_dir
    probe = make_app(app_root)
    seed_app(probe)
    probe.close()
    return server_factory(app_root)
