"""Models: a lineage graph with a node per model (clicking one opens its page), and a page per model with
its description, columns, tests and their last results, raw and compiled SQL, last build, up/downstream."""

from __future__ import annotations

from typing import Any

import pytest

from ..metrics.browser import csp_violations, shot
from .conftest import DemoSite

pytestmark = pytest.mark.browser


def test_lineage_graph_has_a_node_per_model_that_opens_its_page(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    models = {m["name"] for m in demo_site.get("/api/models")}
    page.goto(f"{demo_site.url}/models")
    shown = page.eval_on_selector_all("#lineage g.node-model", "gs => gs.map(g => g.dataset.node)")
    assert sorted(shown) == sorted(models)
    links = page.eval_on_selector_all("#lineage a", "as => as.map(a => a.getAttribute('href'))")
    assert sorted(links) == sorted(f"/models/{m}" for m in models)
    assert page.locator("#lineage g.node-source[data-node='raw.events']").count() == 1  # what the staging reads
    assert page.locator("#lineage path.edge[data-from='stg_subscriptions'][data-to='customers']").count() == 1
    # left to right: a model is drawn right of everything it reads
    xs = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#lineage g.node')].map(
        g => [g.dataset.node, g.transform.baseVal[0].matrix.e]))""")
    assert xs["customers"] > xs["stg_subscriptions"] > xs["raw.events"]
    shot(page, "models-lineage")
    page.click("#lineage g.node-model[data-node='customers']")
    page.wait_for_url(f"{demo_site.url}/models/customers")
    assert page.inner_text("h1").startswith("customers")
    assert violations == []


def test_model_page_shows_what_dbt_docs_would(page: Any, demo_site: DemoSite) -> None:
    page.goto(f"{demo_site.url}/models/customers")
    main = page.inner_text("main")
    assert "One row per paying customer" in main  # the schema.yml description
    assert page.locator("#last-build time[data-ts]").count() == 1 and "rows" in page.inner_text("#last-build")
    assert page.eval_on_selector_all("#upstream a", "as => as.map(a => a.textContent)") == ["stg_subscriptions"]
    assert "time_to_buy" in page.eval_on_selector_all("#downstream a", "as => as.map(a => a.textContent)")
    tests = page.eval_on_selector_all(
        "#tests tr[data-test]",
        "rows => rows.map(r => [r.dataset.test, r.querySelector('.result').textContent.trim()])")
    assert tests and all(result.startswith("pass") for _, result in tests), tests
    assert page.locator("#columns tr[data-column='email'] .badge").count() == 2  # not_null, unique
    assert "{{" in page.inner_text("#raw-sql") and "ref(" in page.inner_text("#raw-sql")
    page.click("details.sql:nth-of-type(2) summary")
    compiled = page.inner_text("#compiled-sql")
    assert "{{" not in compiled and "stg_subscriptions" in compiled
    shot(page, "model-customers")
    page.click("#downstream a >> text=time_to_buy")
    page.wait_for_url(f"{demo_site.url}/models/time_to_buy")
    answer = page.goto(f"{demo_site.url}/models/nope")
    assert answer is not None and answer.status == 404 and "nope" in page.inner_text("main")
