"""The examples in docs/workflows.md load and validate as written."""

from __future__ import annotations

import re
from pathlib import Path

from opsloop import load_project
from opsloop.workflows.project_files import WORKFLOWS

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def test_every_workflow_example_in_the_docs_loads(project_dir: Path) -> None:
    yaml_examples = [b for b in blocks("yaml") if "steps:" in b]
    python_examples = [b for b in blocks("python") if "@workflow" in b]
    assert len(yaml_examples) == 2 and len(python_examples) == 1
    for i, text in enumerate(yaml_examples):
        (project_dir / "workflows" / f"doc_{i}.yml").write_text(text, encoding="utf-8")
    (project_dir / "workflows" / "doc_py.py").write_text(python_examples[0], encoding="utf-8")
    workflows = WORKFLOWS.of(load_project(project_dir))
    assert {"doc_0", "doc_1", "qualify", "demo_request_sla"} <= set(workflows)
    assert workflows["doc_0"].when == "event.data.country == 'FR'" and workflows["qualify"].step_timeout == 30
