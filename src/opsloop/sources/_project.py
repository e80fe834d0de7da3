"""Reads ``sources/*.yml`` into ``project.extras["sources"]`` with file:line problems."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Problem
from ..project._env import interpolate, read_dotenv
from ..project._yaml import YamlProblem, load_yaml, yaml_mappings
from ..project.config import ProjectConfig
from ..project.loader import Project, register_loader, register_validator, validate_model
from .config import MODELS, SOURCE_TYPES


def load_sources(project: Project, problems: list[Problem]) -> None:
    folder = project.root / "sources"
    found: dict[str, Any] = {}
    lines: dict[str, tuple[str, Any]] = {}
    project.extras["sources"] = found
    project.extras["sources_files"] = lines
    expected = "expected a mapping describing one source (type:, streams ...)"
    for path, rel, doc in yaml_mappings(folder, project.root, expected, problems):
        data = doc.data
        kind = data.get("type")
        if kind not in MODELS:
            problems.append(
                Problem(rel, doc.line_of(("type",)),
                        f"unknown source type {kind!r}" if kind is not None else "missing required key 'type'",
                        f"use one of: {', '.join(SOURCE_TYPES)}")
            )
            continue
        data = interpolate({"name": path.stem, **data}, project.env)
        config = validate_model(MODELS[kind], doc, rel, data, problems)
        if config is None:
            continue
        if config.name in found:
            problems.append(Problem(rel, doc.line_of(("name",)), f"source {config.name!r} is defined twice",
                                    f"it is also in {lines[config.name][0]}; rename one"))
            continue
        found[config.name] = config
        lines[config.name] = (rel, doc)


def check_sources(project: Project) -> list[Problem]:
    """``opsloop validate``: credentials named by each source must be set."""
    problems: list[Problem] = []
    files = project.extras.get("sources_files", {})
    for name, config in project.extras.get("sources", {}).items():
        rel, doc = files[name]
        for key, value in config.model_dump().items():
            skip = config.type == "zendesk" and config.oauth_token_env and key in ("email_env", "token_env")
            if key.endswith("_env") and value and not skip and not project.secret(value):
                problems.append(Problem(rel, doc.line_of((key,)), f"the secret {value} is not set",
                                        f"add {value}=... to .env or the environment"))
        if config.type == "files":
            for i, stream in enumerate(config.streams):
                if not list(project.root.glob(stream.path)) and not Path(stream.path).is_absolute():
                    problems.append(Problem(rel, doc.line_of(("streams", i, "path")),
                                            f"no file matches {stream.path!r}",
                                            "paths are relative to the project folder"))
    return problems


def load_sources_project(root: Path | str) -> Project:
    """``opsloop.yml``, ``.env`` and ``sources/*.yml`` only: the project as `opsloop pull` needs it.

    The other subsystems' loaders (workflows, models, syncs, metrics ...) and their imports are skipped,
    which keeps a pull of a few rows short (docs/sources.md, "How fast a small pull starts"); a broken
    file of theirs is reported by `opsloop validate` and `opsloop up`, not by a pull. Raises ``ConfigError``
    as ``load_project`` does, for ``opsloop.yml`` and the sources' files.
    """
    root = Path(root).resolve()
    env = {**read_dotenv(root / ".env"), **os.environ}
    problems: list[Problem] = []
    config = ProjectConfig()
    config_path = root / "opsloop.yml"
    if config_path.is_file():
        try:
            doc = load_yaml(config_path, root)
        except YamlProblem as exc:
            raise ConfigError([exc.problem]) from exc
        data = interpolate(doc.data or {}, env)
        if not isinstance(data, dict):
            raise ConfigError([Problem("opsloop.yml", 1, "expected a mapping of keys (name:, warehouse:, ...)")])
        config = validate_model(ProjectConfig, doc, "opsloop.yml", data, problems) or config
    elif (root / "dbt_project.yml").is_file():
        config = ProjectConfig(name=root.name, dbt_project=".")
    else:
        raise ConfigError([Problem(str(root), None, "no opsloop.yml here",
                                   "run `opsloop init DIR` or pass --project DIR")])
    project = Project(root=root, config=config, env=env)
    load_sources(project, problems)
    if problems:
        raise ConfigError(problems)
    return project


register_loader(load_sources)
register_validator(check_sources)
