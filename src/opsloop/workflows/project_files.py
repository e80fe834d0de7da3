"""Read ``workflows/*.py`` and ``workflows/*.yml`` into the project's ``WORKFLOWS`` section."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path

from ..errors import Problem
from ..project.loader import Project, ProjectLoader, Section
from ._api import WorkflowDef

WORKFLOWS: Section[dict[str, WorkflowDef]] = Section("workflows", dict)
"""The project's workflows by name (``WORKFLOWS.of(project)``); empty when there are none."""


def _rel(project: Project, path: Path) -> str:
    try:
        return str(path.relative_to(project.root))
    except ValueError:
        return str(path)


def _load_python(project: Project, path: Path, rel: str, problems: list[Problem]) -> list[WorkflowDef]:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]  # noqa: S324 - a module name, not security
    module_name = f"_opsloop_workflows_{digest}_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        problems.append(Problem(rel, None, "cannot be imported as a Python module"))
        return []
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        problems.append(Problem(rel, exc.lineno, f"Python syntax error: {exc.msg}", "fix the code"))
        return []
    except Exception as exc:
        line = None
        for frame in traceback.extract_tb(exc.__traceback__):
            if Path(frame.filename) == path:
                line = frame.lineno
        problems.append(Problem(rel, line, f"importing this file failed: {type(exc).__name__}: {exc}"))
        return []
    found = []
    for value in vars(module).values():
        if isinstance(value, WorkflowDef):
            value.source = rel
            try:
                value.line = inspect.getsourcelines(value.fn)[1]
            except (OSError, TypeError):
                value.line = None
            found.append(value)
    return found


def load_workflows(project: Project, problems: list[Problem]) -> None:
    folder = project.root / "workflows"
    workflows: dict[str, WorkflowDef] = {}
    WORKFLOWS.put(project, workflows)
    if not folder.is_dir():
        return
    paths = sorted([*folder.glob("*.py"), *folder.glob("*.yml"), *folder.glob("*.yaml")])
    for path in paths:
        if path.name.startswith("_"):
            continue
        rel = _rel(project, path)
        if path.suffix == ".py":
            defs = _load_python(project, path, rel, problems)
        else:
            from .yaml_workflows import load_yaml_workflow  # Jinja and the actions: only for a YAML workflow

            loaded = load_yaml_workflow(project, path, rel, problems)
            defs = [loaded] if loaded is not None else []
        for wf in defs:
            if wf.name in workflows:
                other = workflows[wf.name]
                problems.append(Problem(rel, wf.line, f"workflow {wf.name!r} is also defined in {other.source}",
                                        "give one of them another name"))
                continue
            workflows[wf.name] = wf


LOADER = ProjectLoader("workflows", load=load_workflows)
"""What the composition root (``opsloop._subsystems``) lists to load and check this subsystem's files."""
