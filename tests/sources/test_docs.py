"""docs/sources.md stays true: every YAML example validates, every connector section names permissions."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from opsloop.sources.config import MODELS

DOC = Path(__file__).resolve().parents[2] / "docs" / "sources.md"


def test_every_yaml_example_validates() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    kinds = []
    for block in blocks:
        data = yaml.safe_load(block)
        model = MODELS[data["type"]]
        model.model_validate({"name": "example", **data})
        kinds.append(data["type"])
    assert sorted(set(kinds)) == sorted(MODELS)


def test_each_connector_section_names_permissions() -> None:
    text = DOC.read_text()
    for kind in ("hubspot", "stripe", "salesforce", "zendesk", "sql_database"):
        section = text.split(f"## {kind}\n", 1)[1].split("\n## ", 1)[0]
        assert "**Permissions**" in section, kind
