"""Reads models/, seeds/ and dbt_project.yml into the project's ``MODELS`` section when a project loads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import Problem
from ..project.loader import Project, ProjectLoader, Section

if TYPE_CHECKING:
    from .project import ModelProject

MODELS: Section[ModelProject | None] = Section("models", lambda: None)
"""The project's dbt layout (``MODELS.of(project)``); None when it has no models, seeds or dbt project."""


def _load(project: Project, problems: list[Problem]) -> None:
    root = project.root
    dbt = project.config.dbt_project
    if not dbt and not any((root / p).exists() for p in ("models", "seeds", "dbt_project.yml")):
        return
    from .project import read_model_project

    mp = read_model_project(root, dbt, [])
    if mp is not None:
        MODELS.put(project, mp)  # its read_problems are reported by _validate, with the parse's




def _validate(project: Project) -> list[Problem]:
    """`opsloop validate`: refs, sources, cycles, macros and column checks, without touching the warehouse."""
    mp = MODELS.of(project)
    if mp is None:
        return []
    if mp.empty:
        return list(mp.read_problems)
    from .checks import check_columns
    from .compiler import Compiler, Target

    compiler = Compiler(mp, Target(schema="main"), project.env, project.config.vars)
    problems = [*mp.read_problems, *compiler.parse()]
    if problems:
        return problems
    problems = check_columns(compiler, None)
    from ._render import RenderError

    for model in mp.models.values():  # what only compiling finds (a package macro opsloop cannot run yet)
        try:
            compiler.sql(model, dialect=compiler.target.source_dialect)
        except RenderError as exc:
            problems.append(Problem(model.file, exc.line, str(exc), exc.hint))
    return problems


LOADER = ProjectLoader("models", load=_load, validate=_validate)
"""What the composition root (``opsloop._subsystems``) lists to load and check this subsystem's files."""
