"""Dashboards whose highlights highlight: each chart draws the business events its dashboards/*.yml names,
one annotation per event at the time it happened (not a marker on every point); comparisons only where a
previous value exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from opsloop.project.scaffold import init_project

from ..conftest import run_cli, wait_for
from ..metrics.browser import csp_violations, shot, wait_js
from .conftest import DemoSite

CHART = "document.querySelector('#tile-{}-body .chart')"


def chart_state(page: Any, tile: int) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate(f"""() => {{ const gd = {CHART.format(tile)};
        const marks = gd.data.find(t => t.name === 'Highlights');
        return {{points: gd.data[0].x.length, marks: marks ? marks.x.length : 0,
                 kinds: marks ? [...new Set(marks.meta)] : [], xs: marks ? marks.x : [],
                 shapes: (gd.layout.shapes || []).length}}; }}""")
    return state


@pytest.mark.browser
def test_a_chart_has_one_annotation_per_highlighted_event(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    page.goto(f"{demo_site.url}/dashboards/overview")
    for tile in (4, 5, 6, 7, 8):
        wait_js(page, f"{CHART.format(tile)} && {CHART.format(tile)}.data", 30_000)

    def consistent() -> tuple[dict[str, Any], float] | None:
        churned = demo_site.get("/api/metrics/churned_customers", since="90d")["rows"][0][-1] or 0
        state = chart_state(page, 4)
        return (state, churned) if state["marks"] == churned else None

    # the customers line marks each churn (dashboards/overview.yml: highlights: [customer_churned]) ...
    state, churned = wait_for(consistent, 30, interval=0.5, what="one churn annotation per churned customer")
    assert churned >= 1 and state["kinds"] == ["customer_churned"]
    assert state["shapes"] == state["marks"]  # a line across the chart for each, and a marker on the axis
    assert state["marks"] != state["points"]  # not one marker per point of the series
    assert all("T" in x for x in state["xs"])  # at the time it happened, not at the day's point
    # ... and the charts that chose none draw none (the bars of new and churned customers above all)
    for tile in (5, 6, 7, 8):
        assert chart_state(page, tile)["marks"] == 0 and chart_state(page, tile)["shapes"] == 0, tile
    # the label on hover names who churned
    page.evaluate(f"""() => {{ const gd = {CHART.format(4)};
        const i = gd.data.findIndex(t => t.name === 'Highlights');
        Plotly.Fx.hover(gd, [{{curveNumber: i, pointNumber: 0}}]); }}""")
    page.wait_for_selector("#tile-4-body .hovertext")
    assert page.eval_on_selector("#tile-4-body .hovertext", "n => n.textContent").startswith("Churned: ")
    shot(page, "dashboard-annotations")
    assert violations == []


@pytest.mark.browser
def test_comparisons_only_where_a_previous_value_exists(page: Any, demo_site: DemoSite) -> None:
    tiles = {i: demo_site.get(f"/api/dashboards/overview/tiles/{i}") for i in (1, 9)}
    assert tiles[9]["previous"] is None and tiles[1]["previous"] is not None  # last year's median: none
    page.goto(f"{demo_site.url}/dashboards/overview")
    page.wait_for_selector("#tile-9-body .kpi-value")
    page.wait_for_selector("#tile-1-body .kpi-value")
    assert page.locator("#tile-9-body .kpi-prev").count() == 0 and "vs" not in page.inner_text("#tile-9-body")
    assert page.inner_text("#tile-1-body .kpi-prev").startswith(" vs ") or "vs" in page.inner_text("#tile-1-body")


def test_an_unknown_highlight_is_named_with_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    init_project(root, example="saas")
    board = root / "dashboards" / "overview.yml"
    board.write_text(board.read_text().replace("highlights: [customer_churned]", "highlights: [customer_chrned]"))
    result = run_cli("validate", "--project", str(root))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    line = next(n for n, text in enumerate(board.read_text().splitlines(), 1) if "customer_chrned" in text)
    assert f"dashboards/overview.yml:{line}: tile 5 draws highlight 'customer_chrned'" in out, out
    assert "customer_churned" in out and "Traceback" not in out
