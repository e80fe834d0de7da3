"""The starter metrics on the example schema (DuckDB), the API and the CLI giving the same answers."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from opsloop import load_project
from opsloop.app import App
from opsloop.errors import ConfigError
from opsloop.metrics import MetricQuery, MetricQueryError

from ..conftest import ServerThread, run_cli
from .conftest import monday_base


def q(app: App, metric: str, **kw: object) -> list[list[object]]:
    return app.services["metrics"].query(MetricQuery.from_params(metric, **kw)).rows  # type: ignore[arg-type]


def test_simple_metrics_by_week_and_total(example_app: App) -> None:
    base = monday_base()
    weeks = {r[0]: r[1] for r in q(example_app, "new_customers", grain="week", since="60d")}
    assert weeks[base.isoformat()] == 2
    assert weeks[(base + timedelta(days=7)).isoformat()] == 2
    assert weeks[(base + timedelta(days=14)).isoformat()] == 1
    assert weeks[(base - timedelta(days=7)).isoformat()] == 0  # gaps are filled with zero
    assert q(example_app, "new_customers") == [[5]]
    assert q(example_app, "churned_customers") == [[1]]
    days = {r[0]: r[1] for r in q(example_app, "daily_sqls", grain="day", since="60d")}
    assert days[(base + timedelta(days=1)).isoformat()] == 2  # the 'mql' lead is not counted
    assert sum(days.values()) == 4


def test_customer_count_is_derived_from_cumulative_metrics(example_app: App) -> None:
    base = monday_base()
    rows = {r[0]: r[1] for r in q(example_app, "customer_count", grain="day", since="60d")}
    assert rows[base.isoformat()] == 1
    assert rows[(base + timedelta(days=19)).isoformat()] == 5
    assert rows[(base + timedelta(days=20)).isoformat()] == 4  # Linus churned
    assert q(example_app, "customer_count") == [[4]]
    # a range that starts after the first signups still opens with them
    since = (base + timedelta(days=10)).isoformat()
    later = q(example_app, "customer_count", grain="day", since=since)
    assert later[0] == [since, 4]


def test_month_to_date_ratio_median_and_percentiles(example_app: App) -> None:
    total = sum(o for o in (100, 50, 100, 80, 40, 100, 40, 30, 100))
    assert q(example_app, "sales") == [[total]]
    assert q(example_app, "sales_per_order") == [[pytest.approx(total / 9)]]
    assert q(example_app, "demo_to_purchase_days") == [[7]]
    rows = q(example_app, "demo_to_purchase_days", by=["name"], percentile=True)
    assert {r[0]: (r[1], r[2]) for r in rows} == {
        "Barbara": (1, 0.0), "Grace": (4, 0.25), "Linus": (7, 0.5), "Ada": (10, 0.75), "Edsger": (20, 1.0)}
    mtd = q(example_app, "sales_mtd", grain="day", since="60d")
    by_day = {r[0]: r[1] for r in mtd}
    base = monday_base()
    first = base.replace(day=1)
    # month-to-date restarts on the first of each month
    if (base + timedelta(days=22)).month == base.month:
        assert by_day[(base + timedelta(days=22)).isoformat()] == total
    assert all(by_day[d] == 0 for d in by_day if d < base.isoformat() and d >= first.isoformat())


def test_trailing_window_and_filtered_ratio(example_app: App) -> None:
    base = monday_base()
    days = {r[0]: r[1] for r in q(example_app, "sales_7d", grain="day", since="60d")}
    assert days[(base + timedelta(days=8)).isoformat()] == 50 + 100 + 80
    assert days[(base + timedelta(days=16)).isoformat()] == 40 + 100 + 30 + 40
    assert q(example_app, "pro_share_of_sales") == [[pytest.approx(510 / 640)]]


def test_by_and_where_are_parameters(example_app: App) -> None:
    pro = q(example_app, "sales", by=["plan"])
    assert dict((r[0], r[1]) for r in pro) == {"pro": 510, "team": 130}
    assert q(example_app, "sales", where=["plan=team"]) == [[130]]
    assert q(example_app, "sales", where=["customer__plan=team"]) == [[130]]  # MetricFlow-style name
    assert q(example_app, "sales", where=["plan!=team"]) == [[510]]
    # SQL in a filter value is a value, not SQL
    evil = "pro' OR '1'='1"
    assert q(example_app, "sales", where=[f"plan={evil}"]) == [[0]]
    assert q(example_app, "sales", where=["plan=pro; DROP TABLE analytics.orders; --"]) == [[0]]
    assert example_app.warehouse.query("SELECT COUNT(*) FROM analytics.orders").rows == [(9,)]
    result = example_app.services["metrics"].query(MetricQuery.from_params("sales", where=[f"plan={evil}"]))
    assert "OR" not in result.sql[0] and "?" in result.sql[0]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"metric": "nope"}, "no metric 'nope'; metrics: buyers"),
        ({"metric": "sales", "by": ["color"]}, "metric 'sales' has no dimension 'color'; dimensions: customer"),
        ({"metric": "sales", "where": ["plan"]}, "should look like DIMENSION=VALUE"),
        ({"metric": "sales", "where": ["1=1"]}, "should look like DIMENSION=VALUE"),
        ({"metric": "sales", "where": ["name=x"]}, "cannot filter metric 'sales' on 'name'"),
        ({"metric": "sales", "grain": "hour"}, "grain 'hour' is not one of day, week"),
        ({"metric": "sales", "since": "yesterdayish"}, "neither a duration back from today"),
    ],
)
def test_bad_requests_say_what_to_do(example_app: App, kw: dict[str, object], message: str) -> None:
    metric = str(kw.pop("metric"))
    with pytest.raises(MetricQueryError) as info:
        q(example_app, metric, **kw)
    assert message in str(info.value)


def test_unbuilt_model_is_named(example_dir: Path) -> None:
    from ..conftest import make_app

    app = make_app(example_dir)
    try:
        with pytest.raises(MetricQueryError, match="reads model 'orders', which has not been built yet"):
            q(app, "sales")
    finally:
        app.close()


def test_yaml_mistakes_are_located(example_dir: Path) -> None:
    (example_dir / "metrics" / "broken.yml").write_text(
        "metrics:\n"
        "  - name: revenue\n"
        "    type: simple\n"
        "    type_params: {measure: no_such_measure}\n"
        "  - name: bad_ratio\n"
        "    type: ratio\n"
        "    type_params: {numerator: sales}\n"
        "  - name: bad_filter\n"
        "    type: simple\n"
        "    filter: \"plan = = 'x'\"\n"
        "    type_params: {measure: sales_amount}\n"
    )
    (example_dir / "dashboards" / "oops.yml").write_text("tiles:\n  - {type: kpi, metric: revenu}\n")
    with pytest.raises(ConfigError) as info:
        load_project(example_dir)
    text = str(info.value)
    assert "metrics/broken.yml:2: metric 'revenue' uses measure 'no_such_measure'" in text
    assert "metrics/broken.yml:5" in text and "needs type_params.numerator and type_params.denominator" in text
    assert "metrics/broken.yml:8: filter is not valid SQL" in text
    assert "dashboards/oops.yml:2: tile 1 uses metric 'revenu'" in text


def test_api_and_cli_give_the_same_answer(example_server: ServerThread) -> None:
    with example_server.api() as api:
        got = api.get("/api/metrics/sales", params=[("grain", "week"), ("since", "60d"), ("by", "plan")])
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["columns"] == ["period", "plan", "value"]
        bad = api.get("/api/metrics/sales", params={"where": "plan"})
        assert bad.status_code == 400 and "DIMENSION=VALUE" in bad.json()["error"]
        listed = api.get("/api/metrics").json()["metrics"]
        assert {"name": "sales"}.items() <= next(m for m in listed if m["name"] == "sales").items()
    import httpx

    assert httpx.get(f"{example_server.url}/api/metrics/sales").status_code == 401
    # the server owns the DuckDB file; the CLI asks it for the same answer
    env = {"OPSLOOP_PORT": str(example_server.port)}
    done = run_cli("metric", "sales", "--grain", "week", "--since", "60d", "--by", "plan", "--json",
                   cwd=example_server.app.project.root, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == body["rows"]
    plain = run_cli("metric", "sales", "--by", "plan", cwd=example_server.app.project.root, env=env)
    assert plain.stdout.splitlines() == ["plan\tvalue", "pro\t510", "team\t130"]
    wrong = run_cli("metric", "sales", "--where", "colour=red", cwd=example_server.app.project.root, env=env)
    assert wrong.returncode == 1 and "cannot filter metric 'sales' on 'colour'" in wrong.stderr


def test_cli_without_a_server(example_dir: Path) -> None:
    from ..conftest import make_app
    from .conftest import seed_app

    app = make_app(example_dir)
    seed_app(app)
    app.close()
    done = run_cli("metric", "new_customers", "--json", cwd=example_dir)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == [[5]]
    listed = run_cli("alerts", cwd=example_dir)
    assert listed.returncode == 0, listed.stderr
    assert "few_sqls\tdaily_sqls\tday value < 5\tunknown" in listed.stdout
