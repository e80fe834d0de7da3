"""`opsloop deps` installs local: and git: packages (revision, subdirectory, a package's own packages) into
dbt_packages/ and writes package-lock.yml; `opsloop deps && opsloop build` builds what
`dbt deps && dbt build` builds. The git repository is a local one: no network."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from ._dbt import dbt, opsloop, relations, write_project


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def _package_repo(root: Path) -> Path:
    """A git repository holding a package in pkg/ (v1 says 'one', the later commit 'two'), which itself
    needs the helper package in helper/ of the same repository."""
    repo = root / "repo"
    write_project(repo / "pkg", {
        "macros/version.sql": "{% macro which() %}'one' || {{ helper.suffix() }}{% endmacro %}\n",
        "packages.yml": f"packages:\n  - git: {repo.as_uri()}\n    revision: v1\n    subdirectory: helper\n",
    }, name="versioned")
    write_project(repo / "helper", {"macros/suffix.sql": "{% macro suffix() %}'!'{% endmacro %}\n"}, name="helper")
    _git(repo, "init", "--quiet")
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "v1")
    _git(repo, "tag", "v1")
    (repo / "pkg" / "macros" / "version.sql").write_text("{% macro which() %}'two'{% endmacro %}\n")
    _git(repo, "commit", "--quiet", "-am", "v2")
    return repo


def _project(root: Path, repo: Path) -> Path:
    write_project(root / "local_pkg", {"macros/m.sql": "{% macro local_one() %}1{% endmacro %}\n"}, name="local_pkg")
    return write_project(root / "proj", {
        "packages.yml": f"packages:\n  - local: ../local_pkg\n  - git: {repo.as_uri()}\n    revision: v1\n"
                        "    subdirectory: pkg\n",
        "models/m.sql": "select {{ versioned.which() }} as which, {{ local_pkg.local_one() }} as one\n",
    })


def test_deps_installs_local_and_git_packages_like_dbt_deps(tmp_path: Path) -> None:
    repo = _package_repo(tmp_path)
    ours = _project(tmp_path / "ours", repo)
    before = opsloop(ours, "build")
    assert before.returncode == 1
    assert "packages.yml:3: package" in before.stderr and "is not installed" in before.stderr, before.stderr

    proc = opsloop(ours, "deps")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p.name for p in (ours / "dbt_packages").iterdir()} == {"local_pkg", "versioned", "helper"}
    lock = yaml.safe_load((ours / "package-lock.yml").read_text())
    assert lock["packages"][1]["revision"] == _git(repo, "rev-parse", "v1")
    built = opsloop(ours, "build")
    assert built.returncode == 0, built.stdout + built.stderr

    theirs = _project(tmp_path / "theirs", repo)
    assert dbt(theirs, "deps").returncode == 0
    assert dbt(theirs, "build").returncode == 0
    assert relations(ours / "warehouse.duckdb") == relations(theirs / "dbt.duckdb")
    assert relations(ours / "warehouse.duckdb")["main.m"][1] == [("one!", 1)]


def test_deps_names_the_line_of_a_package_it_cannot_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBT_PACKAGE_HUB_URL", "http://127.0.0.1:9/")  # nothing listens there: no network
    root = write_project(tmp_path / "proj", {
        "packages.yml": "packages:\n  - local: ../nowhere\n  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n",
    })
    proc = opsloop(root, "deps")
    assert proc.returncode == 1
    assert "packages.yml:2: local package '../nowhere' has no dbt_project.yml" in proc.stderr, proc.stderr
    assert "packages.yml:3: cannot reach the package hub for package 'dbt-labs/dbt_utils'" in proc.stderr
    assert "Traceback" not in proc.stderr
