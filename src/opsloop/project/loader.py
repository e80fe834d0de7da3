"""Load and validate a project folder into typed objects, collecting every problem at once."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar, cast

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, Problem
from .config import EndpointConfig, ProjectConfig
from .env import interpolate, read_dotenv
from .yaml_files import Loc, LocatedYaml, YamlProblem, load_yaml

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, eq=False)
class Section(Generic[T]):
    """The typed key of one subsystem's part of a loaded project: what its loader read.

    Each subsystem declares its key beside its loader (``workflows.project_files.WORKFLOWS``); the loader
    stores what it read with ``KEY.put(project, value)`` and every reader gets it, typed ``T``, with
    ``KEY.of(project)``; ``default`` makes the value of a project loaded without that loader (`opsloop
    pull` reads only ``sources/``)::

        WORKFLOWS: Section[dict[str, WorkflowDef]] = Section("workflows", dict)
        workflows = WORKFLOWS.of(project)  # dict[str, WorkflowDef]
    """

    name: str
    default: Callable[[], T]

    def of(self, project: Project) -> T:
        """What this section's loader read into ``project`` (``default()`` when that loader did not run)."""
        if self in project.sections:
            return cast(T, project.sections[self])  # only ``put`` writes it, with a value of type T
        return self.default()

    def put(self, project: Project, value: T) -> None:
        """Store what this section's loader read (called by the loader)."""
        project.sections[self] = value


@dataclass
class Project:
    """A loaded project folder. ``env`` is the process environment laid over ``.env``.

    ``endpoints`` and ``schemas`` are the webhook endpoints; each subsystem's own files are a typed
    ``Section`` of it (``WORKFLOWS.of(project)``).
    """

    root: Path
    config: ProjectConfig
    env: dict[str, str]
    endpoints: dict[str, EndpointConfig] = field(default_factory=dict)
    schemas: dict[str, dict[str, object]] = field(default_factory=dict)
    sections: dict[object, object] = field(default_factory=dict, repr=False)
    """What each subsystem's loader read, by its key; read and written through ``Section.of`` and ``put``."""

    def secret(self, name: str) -> str | None:
        """A secret from the environment or ``.env``; never read from YAML text."""
        return self.env.get(name)

    def path(self, relative: str) -> Path:
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.root / candidate


@dataclass(frozen=True)
class ProjectLoader:
    """One subsystem's part of loading a project: ``load`` reads its own files (``workflows/*.yml``,
    ``syncs/*.yml`` ...) onto the project and appends problems; ``validate`` is a whole-project check that
    `opsloop validate` runs after loading (SQL compile checks, reachable destinations ...).

    The composition root (``opsloop._subsystems.PROJECT_LOADERS``) lists every subsystem's loader, one line
    each; nothing registers itself at import.
    """

    name: str
    load: Callable[[Project, list[Problem]], None] | None = None
    validate: Callable[[Project], list[Problem]] | None = None


def pydantic_problems(doc: LocatedYaml, rel: str, exc: ValidationError, prefix: Loc = ()) -> list[Problem]:
    """Turn a pydantic error into Problems that point at the YAML line of each bad key."""
    problems = []
    for err in exc.errors():
        loc = (*prefix, *(part for part in err["loc"] if not isinstance(part, str) or not part.startswith("function-")))
        loc_text = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc_text!r}"
            hint = "remove it or check its spelling against the docs"
        elif err["type"] == "missing":
            msg = f"missing required key {loc_text!r}"
            hint = "add it"
        else:
            msg = f"{loc_text}: {msg}"
            hint = ""
        problems.append(Problem(rel, doc.line_of(loc), msg, hint))
    return problems


def validate_model(
    model: type[M], doc: LocatedYaml, rel: str, data: object, problems: list[Problem]
) -> M | None:
    """Validate ``data`` against ``model``; on failure append located problems and return None."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(pydantic_problems(doc, rel, exc))
        return None


def read_project_config(root: Path | str, environ: Mapping[str, str] | None = None) -> Project:
    """``opsloop.yml`` and ``.env`` only (a bare dbt project folder reads as one without ``opsloop.yml``).

    The one reader of ``opsloop.yml``: the model verbs need no more than this (warehouse, vars, the
    environment), and ``load_project`` starts from it. Raises ``ConfigError`` listing the file's problems.
    """
    problems: list[Problem] = []
    project = _read_config(Path(root).resolve(), environ, problems)
    if problems:
        raise ConfigError(problems)
    return project


def _read_config(root: Path, environ: Mapping[str, str] | None, problems: list[Problem]) -> Project:
    """``opsloop.yml`` into a Project; a problem in its keys is appended (the defaults stand in for them)."""
    env = {**read_dotenv(root / ".env"), **(os.environ if environ is None else environ)}
    config_path = root / "opsloop.yml"
    config = ProjectConfig()
    if not config_path.is_file():
        if (root / "dbt_project.yml").is_file():
            config = ProjectConfig(name=root.name, dbt_project=".")
        else:
            raise ConfigError(
                [Problem(str(root), None, "no opsloop.yml here", "run `opsloop init DIR` or pass --project DIR")]
            )
    else:
        try:
            doc = load_yaml(config_path, root)
        except YamlProblem as exc:
            raise ConfigError([exc.problem]) from exc
        data = interpolate(doc.data or {}, env)
        if not isinstance(data, dict):
            raise ConfigError([Problem("opsloop.yml", 1, "expected a mapping of keys (name:, warehouse:, ...)")])
        loaded = validate_model(ProjectConfig, doc, "opsloop.yml", data, problems)
        if loaded is not None:
            config = loaded
    return Project(root=root, config=config, env=env)


def load_project(
    root: Path | str, environ: Mapping[str, str] | None = None, *, loaders: Sequence[ProjectLoader] = ()
) -> Project:
    """``opsloop.yml`` and ``.env``, then each of ``loaders`` in order. Raises ``ConfigError`` listing every
    problem found.

    ``opsloop.load_project(root)`` is this with every subsystem's loader (the composition root's list).
    """
    problems: list[Problem] = []
    project = _read_config(Path(root).resolve(), environ, problems)
    for loader in loaders:
        if loader.load is not None:
            loader.load(project, problems)
    if problems:
        raise ConfigError(problems)
    return project


def run_validators(project: Project, loaders: Sequence[ProjectLoader]) -> list[Problem]:
    """The whole-project checks of ``loaders`` (what `opsloop validate` runs after loading)."""
    problems: list[Problem] = []
    for loader in loaders:
        if loader.validate is not None:
            problems.extend(loader.validate(project))
    return problems
