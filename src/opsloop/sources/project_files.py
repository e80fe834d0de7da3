"""Reads ``sources/*.yml`` into the project's ``SOURCES`` section with file:line problems."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from ..errors import Problem
from ..project.env import interpolate
from ..project.loader import Project, ProjectLoader, Section, validate_model
from ..project.yaml_files import LocatedYaml, yaml_mappings
from .config import MODELS, SOURCE_TYPES, SourceConfig

SOURCES: Section[dict[str, SourceConfig]] = Section("sources", dict)
"""The project's sources by name (``SOURCES.of(project)``)."""
SOURCE_FILES: Section[dict[str, tuple[str, LocatedYaml]]] = Section("source_files", dict)
"""Each source's file (relative to the project) and its parsed YAML, for located problems."""


def load_sources(project: Project, problems: list[Problem]) -> None:
    folder = project.root / "sources"
    found: dict[str, SourceConfig] = {}
    lines: dict[str, tuple[str, LocatedYaml]] = {}
    SOURCES.put(project, found)
    SOURCE_FILES.put(project, lines)
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
        found[config.name] = cast("SourceConfig", config)  # MODELS[kind] is the SourceConfig member of that type
        lines[config.name] = (rel, doc)


def check_sources(project: Project) -> list[Problem]:
    """``opsloop validate``: credentials named by each source must be set."""
    problems: list[Problem] = []
    files = SOURCE_FILES.of(project)
    for name, config in SOURCES.of(project).items():
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
    from ..project.loader import load_project

    return load_project(root, loaders=[LOADER])


LOADER = ProjectLoader("sources", load=load_sources, validate=check_sources)
"""What the composition root (``opsloop._subsystems``) lists to load and check this subsystem's files."""
