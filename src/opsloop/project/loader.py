"""Load and validate a project folder into typed objects, collecting every problem at once."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, Problem
from ._env import interpolate, read_dotenv
from ._yaml import LocatedYaml, YamlProblem, load_yaml, rel_path, yaml_mappings
from .config import EndpointConfig, ProjectConfig


@dataclass
class Project:
    """A loaded project folder. ``env`` is the process environment laid over ``.env``."""

    root: Path
    config: ProjectConfig
    env: dict[str, str]
    endpoints: dict[str, EndpointConfig] = field(default_factory=dict)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def secret(self, name: str) -> str | None:
        """A secret from the environment or ``.env``; never read from YAML text."""
        return self.env.get(name)

    def path(self, relative: str) -> Path:
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.root / candidate


ExtraLoader = Callable[[Project, list[Problem]], None]
"""A later subsystem's loader: reads its own files into ``project.extras`` and appends problems."""

_EXTRA_LOADERS: list[ExtraLoader] = []


def register_loader(loader: ExtraLoader) -> ExtraLoader:
    """Add a loader for another kind of project file (workflows, models, syncs ...)."""
    if loader not in _EXTRA_LOADERS:
        _EXTRA_LOADERS.append(loader)
    return loader


def pydantic_problems(doc: LocatedYaml, rel: str, exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[Problem]:
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
    model: type[BaseModel], doc: LocatedYaml, rel: str, data: Any, problems: list[Problem]
) -> Any | None:
    """Validate ``data`` against ``model``; on failure append located problems and return None."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(pydantic_problems(doc, rel, exc))
        return None


def load_project(root: Path | str, environ: Mapping[str, str] | None = None) -> Project:
    """Load the project at ``root``. Raises ``ConfigError`` listing every problem found."""
    root = Path(root).resolve()
    problems: list[Problem] = []
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
    project = Project(root=root, config=config, env=env)
    _load_endpoints(project, problems)
    from .._subsystems import hooks

    hooks("_project")
    for loader in _EXTRA_LOADERS:
        loader(project, problems)
    if problems:
        raise ConfigError(problems)
    return project


def _load_endpoints(project: Project, problems: list[Problem]) -> None:
    expected = "expected a mapping describing one endpoint (name:, event:, schema: ...)"
    for path, rel, doc in yaml_mappings(project.root / "events", project.root, expected, problems):
        data = {"name": path.stem, **doc.data}
        endpoint = validate_model(EndpointConfig, doc, rel, data, problems)
        if endpoint is None:
            continue
        if endpoint.name in project.endpoints:
            problems.append(Problem(rel, doc.line_of(("name",)), f"endpoint {endpoint.name!r} is defined twice"))
            continue
        schema = endpoint.schema_
        if endpoint.schema_file:
            schema_path = project.path(endpoint.schema_file)
            if not schema_path.is_file():
                problems.append(
                    Problem(rel, doc.line_of(("schema_file",)), f"schema file {endpoint.schema_file!r} not found")
                )
                continue
            try:
                schema = json.loads(schema_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                problems.append(Problem(rel_path(project.root, schema_path), exc.lineno, f"invalid JSON: {exc.msg}"))
                continue
        if schema is not None:
            from ..events._schemas import check_schema

            error = check_schema(schema)
            if error:
                line = doc.line_of(("schema",)) if endpoint.schema_ is not None else doc.line_of(("schema_file",))
                problems.append(Problem(rel, line, f"the JSON Schema is invalid: {error}"))
                continue
            project.schemas[endpoint.name] = schema
        sig = endpoint.signature
        if sig.secret_env and not project.secret(sig.secret_env):
            problems.append(
                Problem(
                    rel,
                    doc.line_of(("signature", "secret_env")),
                    f"the secret {sig.secret_env} is not set",
                    f"add {sig.secret_env}=... to .env or the environment",
                )
            )
        project.endpoints[endpoint.name] = endpoint


Validator = Callable[[Project], list[Problem]]
_VALIDATORS: list[Validator] = []


def register_validator(validator: Validator) -> Validator:
    """Add a whole-project check run by ``opsloop validate`` after loading (e.g. SQL compile checks)."""
    if validator not in _VALIDATORS:
        _VALIDATORS.append(validator)
    return validator


def run_validators(project: Project) -> list[Problem]:
    from .._subsystems import hooks

    hooks("_project")
    problems: list[Problem] = []
    for validator in _VALIDATORS:
        problems.extend(validator(project))
    return problems
