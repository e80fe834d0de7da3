"""dbt packages, offline: what ``packages.yml`` / ``dependencies.yml`` name, found where ``dbt deps`` installs
them (``dbt_packages/``) or, for ``local:`` packages, in their own folder. Their macros join the project's
Jinja under the package's name (``dbt_utils.star``) and for ``adapter.dispatch``.

    packages:
      - local: ../shared_macros        # read in place, no install step
      - package: dbt-labs/dbt_utils    # read from dbt_packages/dbt_utils once `dbt deps` ran
        version: 1.3.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Problem
from ..project.yaml_files import YamlProblem, load_yaml
from ._config import as_list

if TYPE_CHECKING:
    from .project import ModelProject

SPEC_FILES = ("packages.yml", "dependencies.yml")
_REMOTE_KEYS = ("package", "git", "tarball", "private")


@dataclass
class Package:
    """One installed dbt package: its name (from its dbt_project.yml), folder and macro files."""

    name: str
    root: Path
    macro_files: list[Path] = field(default_factory=list)
    vars: dict[str, object] = field(default_factory=dict)


def spec_file(root: Path) -> Path | None:
    """The project's packages.yml (or dependencies.yml), if it has one."""
    return next((root / name for name in SPEC_FILES if (root / name).is_file()), None)


def _project_file(folder: Path) -> dict[str, object] | None:
    try:
        import yaml

        data = yaml.safe_load((folder / "dbt_project.yml").read_text(encoding="utf-8"))
    except (OSError, ValueError, ImportError):
        return None
    except Exception:
        return None
    return data if isinstance(data, dict) else None


def _guess(entry: dict[str, object]) -> str:
    """The name a remote entry is likely installed under (``dbt-labs/dbt-utils.git`` -> ``dbt_utils``)."""
    for key in _REMOTE_KEYS:
        if entry.get(key):
            tail = str(entry.get("subdirectory") or entry[key]).rstrip("/").split("/")[-1]
            return re.sub(r"\.git$", "", tail).replace("-", "_").lower()
    return ""


def install_path(root: Path, project: dict[str, object]) -> Path:
    return root / str(project.get("packages-install-path") or "dbt_packages")


def read_packages(mp: ModelProject, project: dict[str, object], problems: list[Problem]) -> list[Package]:
    """The packages the project uses, each once; a listed package that is not installed is a problem."""
    root = mp.root
    spec = spec_file(root)
    installed: dict[str, Path] = {}
    folder = install_path(root, project)
    if folder.is_dir():
        for sub in sorted(folder.iterdir()):
            data = _project_file(sub) if sub.is_dir() else None
            if data is not None:
                installed[str(data.get("name") or sub.name)] = sub
    found: dict[str, Path] = {}
    if spec is not None:
        try:
            doc = load_yaml(spec, mp.display_root)
        except YamlProblem as exc:
            problems.append(exc.problem)
            return []
        rel = mp.rel(spec)
        entries = doc.data.get("packages") if isinstance(doc.data, dict) else None
        unmatched = []
        for i, entry in enumerate(entries or []):
            line = doc.line_of(("packages", i))
            if isinstance(entry, dict) and entry.get("local"):
                path = (root / str(entry["local"])).resolve()
                data = _project_file(path)
                if data is None:
                    problems.append(Problem(rel, line, f"local package {entry['local']!r} has no dbt_project.yml",
                                            "fix the path (it is relative to the dbt project folder)"))
                    continue
                found[str(data.get("name") or path.name)] = path
            elif isinstance(entry, dict) and any(entry.get(k) for k in _REMOTE_KEYS):
                guess = _guess(entry)
                name = next((n for n in installed if n.lower() == guess), None)
                if name is not None:
                    found[name] = installed[name]
                else:
                    unmatched.append((line, entry))
            else:
                problems.append(Problem(rel, line, "a package entry needs local:, package:, git: or tarball:"))
        spare = [n for n in installed if n not in found]
        for line, entry in unmatched[len(spare):]:
            label = next(str(entry[k]) for k in _REMOTE_KEYS if entry.get(k))
            problems.append(Problem(rel, line, f"package {label!r} is not installed in {folder.name}/",
                                    "run `opsloop deps` (or `dbt deps`)"))
    for name, path in installed.items():  # what dbt deps installed, including packages' own dependencies
        found.setdefault(name, path)
    packages = []
    for name, path in found.items():
        data = _project_file(path) or {}
        pkg = Package(name=name, root=path)
        generic = [f"{t}/generic" for t in _paths(data, "test-paths", "tests")]
        for macro_dir in [*_paths(data, "macro-paths", "macros"), *generic]:
            if (path / macro_dir).is_dir():
                pkg.macro_files.extend(sorted((path / macro_dir).rglob("*.sql")))
        for model_dir in _paths(data, "model-paths", "models"):
            models = sorted((path / model_dir).rglob("*.sql")) if (path / model_dir).is_dir() else []
            if models:
                problems.append(Problem(mp.rel(models[0]), 1, f"package {name!r} has models, which opsloop does not "
                                        "build yet (dbt would build them)", "build this project with dbt"))
        raw_vars = data.get("vars")
        if isinstance(raw_vars, dict):
            pkg.vars = {str(k): v for k, v in raw_vars.items() if not isinstance(v, dict) or k != name}
            if isinstance(raw_vars.get(name), dict):
                pkg.vars.update(raw_vars[name])
        packages.append(pkg)
    return packages


def _paths(data: dict[str, object], key: str, default: str) -> list[str]:
    return as_list(data.get(key) or [default])


def dispatch_config(project: dict[str, object]) -> dict[str, list[str]]:
    """dbt_project.yml ``dispatch:`` as {macro_namespace: search_order}."""
    out: dict[str, list[str]] = {}
    entries = project.get("dispatch")
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("macro_namespace"):
            out[str(entry["macro_namespace"])] = as_list(entry.get("search_order") or [])
    return out
