"""The examples in docs/metrics.md and docs/dashboards.md stay true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from opsloop.app import App
from opsloop.metrics import MetricQuery, MetricQueryError
from opsloop.metrics.catalog import catalog_of
from opsloop.metrics.spec import Dashboard, MetricsFile

DOCS = Path(__file__).resolve().parents[2] / "docs"


def blocks(name: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", (DOCS / name).read_text(), re.S)


@pytest.mark.parametrize("doc", ["metrics.md", "dashboards.md"])
def test_yaml_examples_validate_against_the_example(doc: str, example_app: App) -> None:
    catalog = catalog_of(example_app.project)
    found = blocks(doc)
    assert found
    for text in found:
        data = yaml.safe_load(text)
        if "tiles" in data:
            board = Dashboard.model_validate({"name": "doc", **data})
            for tile in board.tiles:
                for metric in [tile.metric, *tile.metrics]:
                    assert metric is None or metric in catalog.metrics, metric
            continue
        parsed = MetricsFile.model_validate(data)
        for metric in parsed.metrics:
            assert metric.name in catalog.metrics, metric.name
            assert catalog.metrics[metric.name].type == metric.type


def test_documented_error_message(example_app: App) -> None:
    text = (DOCS / "metrics.md").read_text()
    quoted = re.search(r"\(`(metric 'sales' has no dimension 'color'; dimensions: [^`]+)`\)", text.replace("\n", " "))
    assert quoted
    with pytest.raises(MetricQueryError) as info:
        example_app.services["metrics"].query(MetricQuery.from_params("sales", by=["color"]))
    assert str(info.value) == quoted.group(1)
