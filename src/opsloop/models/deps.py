"""``opsloop deps``: install what packages.yml / dependencies.yml name into ``dbt_packages/``, as ``dbt deps``
does, and read and write ``package-lock.yml`` in dbt's format.

- ``local:`` packages are linked (a symlink, as dbt does);
- ``git:`` packages are cloned (``revision``, ``subdirectory``) and pinned to the commit;
- ``package: namespace/name`` + ``version:`` (a version or a range, ``[">=1.0.0", "<2.0.0"]``) are looked up
  on the package hub (``https://hub.getdbt.com/``, or ``DBT_PACKAGE_HUB_URL`` as for dbt): the newest
  release every requirement allows (requirements from several packages add up), then its tarball;
- ``tarball: URL`` + ``name:`` are downloaded and unpacked.

A package's own packages.yml (or, for a hub package, the hub's list) is installed too. When
package-lock.yml exists and its ``sha1_hash`` matches packages.yml (the hash dbt computes), the lock's
pinned versions are installed as they are; ``--upgrade`` resolves afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import Problem
from ..narrow import mapping
from ..project.yaml_files import YamlProblem, load_yaml
from . import _semver
from .packages import _project_file, install_path, spec_file

LOCK_FILE = "package-lock.yml"
DEFAULT_HUB = "https://hub.getdbt.com/"
DBT_COMPAT_VERSION = "1.11.0"
"""The dbt-core version opsloop answers to a hub package's ``require_dbt_version``."""


Step = Callable[[str], None]
"""``install(..., on_step=callback)``: ``callback("fetching dbt-labs/dbt_utils 1.3.0")`` before each fetch
and ``callback("installing dbt_utils")`` before each copy into dbt_packages/."""


class DepsError(Exception):
    """`opsloop deps` could not install a package; carries the problems (file:line)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class _InstallProblem(Exception):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def hub_url() -> str:
    url = os.environ.get("DBT_PACKAGE_HUB_URL") or DEFAULT_HUB
    return url if url.endswith("/") else url + "/"


@dataclass
class _Want:
    """One package some packages.yml asks for (hub requirements from several places merged)."""

    kind: str  # local | git | hub | tarball
    key: str
    entry: dict[str, object]
    rel: str
    line: int | None
    base: Path
    bounds: list[_semver.Spec] = field(default_factory=list)
    prerelease: bool = False
    pinned: bool = False  # read from package-lock.yml: install as is


@dataclass
class _Got:
    """A package fetched into a temporary folder (or, for local:, found in place)."""

    name: str
    folder: Path
    locked: dict[str, object]
    pin: str
    deps: list[dict[str, object]]
    link: bool = False


def spec_dict(entry: dict[str, object]) -> dict[str, object]:
    """A packages.yml entry as dbt's ``PackageSpec.to_dict()`` gives it (the input of the lock's hash)."""
    raw = dict(entry)
    out: dict[str, object]
    if "local" in entry:
        out = {"local": entry["local"]}
    elif "tarball" in entry:
        out = {"tarball": entry["tarball"], "name": entry.get("name")}
    elif "git" in entry or "private" in entry:
        kind = "git" if "git" in entry else "private"
        out = {kind: entry[kind]}
        if kind == "private":
            out["provider"] = entry.get("provider")
        out.update({"revision": entry.get("revision"), "warn-unpinned": entry.get("warn-unpinned"),
                    "subdirectory": entry.get("subdirectory")})
    else:
        out = {"package": entry.get("package"), "version": entry.get("version"),
               "install_prerelease": bool(entry.get("install_prerelease") or entry.get("install-prerelease"))}
    out["unrendered"] = raw
    if entry.get("name") is not None:
        out["name"] = entry["name"]
    return out


def lock_hash(entries: list[dict[str, object]]) -> str:
    """dbt's ``sha1_hash`` of packages.yml: the sorted JSON of each entry, one a line."""
    lines = sorted(json.dumps(spec_dict(e), sort_keys=True) for e in entries)
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()  # noqa: S324 - the hash dbt writes


def install(root: Path, display_root: Path | None = None, upgrade: bool = False,
            on_step: Step | None = None) -> list[str]:
    """Install the project's packages; returns one line per package (``name: version``). ``on_step`` hears
    of each fetch and each copy as it begins."""
    display = display_root or root
    project = _project_file(root) or {}
    target = install_path(root, project)
    problems: list[Problem] = []
    spec = spec_file(root)
    if spec is None:
        return []
    try:
        doc = load_yaml(spec, display)
    except YamlProblem as exc:
        raise DepsError([exc.problem]) from exc
    rel = _rel(spec, display)
    entries = [e if isinstance(e, dict) else {} for e in ((doc.data or {}).get("packages") or [])] \
        if isinstance(doc.data, dict) else []
    digest = lock_hash(entries)
    wants: dict[str, _Want] = {}
    lock_path = root / LOCK_FILE
    lock = _read_lock(lock_path) if not upgrade else None
    locked_packages = lock.get("packages") if lock is not None and lock.get("sha1_hash") == digest else None
    if isinstance(locked_packages, list):
        lock_doc = load_yaml(lock_path, display)
        for i, entry in enumerate(locked_packages):
            _add(wants, root, entry if isinstance(entry, dict) else {}, LOCK_FILE,
                 lock_doc.line_of(("packages", i)), problems, pinned=True)
    else:
        for i, entry in enumerate(entries):
            _add(wants, root, entry, rel, doc.line_of(("packages", i)), problems)
    want_file = rel
    with tempfile.TemporaryDirectory(prefix="opsloop-deps-") as tmp:
        got = _resolve(wants, Path(tmp), display, problems, on_step)
        if problems:
            raise DepsError(sorted(problems, key=lambda p: (p.file != want_file, str(p.file), p.line or 0)))
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        target.mkdir(parents=True)
        lines = []
        for g in got:
            if on_step is not None:
                on_step(f"installing {g.name}")
            dest = target / g.name
            if g.link:
                dest.symlink_to(g.folder, target_is_directory=True)
            else:
                shutil.copytree(g.folder, dest, ignore=shutil.ignore_patterns(".git"), symlinks=True)
            lines.append(f"{g.name}: {g.pin}")
    locked = {"packages": [{**g.locked, "name": g.name} for g in got], "sha1_hash": digest}
    lock_path.write_text(yaml.dump(locked, Dumper=_LockDumper))  # sorted keys, indented lists: as dbt writes it
    return lines


class _LockDumper(yaml.SafeDumper):
    """Lists indented under their key, as dbt's package-lock.yml has them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _read_lock(path: Path) -> dict[str, object] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _add(wants: dict[str, _Want], base: Path, entry: dict[str, object], rel: str, line: int | None,
         problems: list[Problem], pinned: bool = False) -> bool:
    """Record what an entry asks for; True when it is new or narrows a hub package's range."""
    if entry.get("local"):
        kind, key = "local", "local:" + str((base / str(entry["local"])).resolve())
    elif entry.get("git"):
        kind, key = "git", f"git:{entry['git']}#{entry.get('subdirectory') or ''}"
    elif entry.get("tarball"):
        if not entry.get("name"):
            problems.append(Problem(rel, line, "a tarball: package needs name: (the folder it installs as)"))
            return False
        kind, key = "tarball", "tarball:" + str(entry["tarball"])
    elif entry.get("package"):
        kind, key = "hub", "hub:" + str(entry["package"])
    elif entry.get("private"):
        problems.append(Problem(rel, line, f"private package {entry['private']!r}: opsloop deps does not install "
                                "private: packages yet", "write it as a git: package with its URL"))
        return False
    else:
        problems.append(Problem(rel, line, "a package entry needs local:, package:, git: or tarball:"))
        return False
    bounds: list[_semver.Spec] = []
    if kind == "hub":
        if entry.get("version") in (None, ""):
            problems.append(Problem(rel, line, f"package {entry['package']!r} needs version:",
                                    "give a version or a range, e.g. version: [\">=1.0.0\", \"<2.0.0\"]"))
            return False
        try:
            bounds = _semver.specs(entry["version"])
        except _semver.VersionError as exc:
            problems.append(Problem(rel, line, f"package {entry['package']!r}: {exc}"))
            return False
    prerelease = bool(entry.get("install_prerelease") or entry.get("install-prerelease"))
    old = wants.get(key)
    if old is None:
        wants[key] = _Want(kind, key, entry, rel, line, base, bounds, prerelease, pinned)
        return True
    if kind != "hub":
        return False
    new = [b for b in bounds if b not in old.bounds]
    old.bounds.extend(new)
    old.prerelease = old.prerelease or prerelease
    return bool(new)


def _resolve(wants: dict[str, _Want], tmp: Path, display: Path, problems: list[Problem],
             on_step: Step | None = None) -> list[_Got]:
    """Fetch every wanted package and what it needs, until nothing changes (a hub package whose range
    another package narrows is chosen again)."""
    got: dict[str, _Got] = {}
    asked: dict[str, str] = {}
    failed: set[str] = set()
    fetches = 0
    for _ in range(50):
        changed = False
        for key, want in list(wants.items()):
            if key in failed:
                continue
            try:
                pin = _pin(want)
                if key in got and asked.get(key) == pin:  # fetched at this pin already (local, git and
                    continue                                # tarball packages record another pin than asked)
                asked[key] = pin
                fetches += 1
                if on_step is not None:
                    on_step(f"fetching {_describe(want)}" + (f" {pin}" if pin else ""))
                g = _fetch(want, pin, tmp / str(fetches))
            except _InstallProblem as exc:
                problems.append(Problem(want.rel, want.line, str(exc), exc.hint))
                failed.add(key)
                continue
            got[key] = g
            changed = True
            if want.pinned:
                continue
            dep_rel = f"{g.name}/packages.yml"
            for dep in g.deps:
                _add(wants, g.folder, dep, dep_rel, None, problems)
        if not changed:
            break
    names: dict[str, str] = {}
    out = []
    for key, g in got.items():
        if g.name in names:
            want = wants[key]
            problems.append(Problem(want.rel, want.line, f"two packages install as {g.name!r}: {names[g.name]} "
                                    f"and {key}", "keep one of them in packages.yml"))
            continue
        names[g.name] = key
        out.append(g)
    return out


def _describe(want: _Want) -> str:
    """A want as the progress names it: the hub package, git URL, tarball URL or local path."""
    return str(want.entry.get({"hub": "package"}.get(want.kind, want.kind)) or want.key)


def _pin(want: _Want) -> str:
    """The version a want resolves to: a hub release, a git revision as asked, or the entry itself."""
    if want.kind != "hub":
        return str(want.entry.get("revision") or "")
    if want.pinned:
        return str(want.entry.get("version"))
    try:
        _semver.check_compatible(want.bounds)
    except _semver.VersionError as exc:
        raise _InstallProblem(f"version error for package {want.entry['package']!r}: {exc}",
                              "loosen one of the version ranges") from exc
    versions = _hub_versions(str(want.entry["package"]))
    usable = [v for v, info in versions.items() if _works_with_dbt(info)]
    chosen = _semver.best(want.bounds, usable, want.prerelease)
    if chosen is None:
        wanted = ", ".join(str(b) for b in want.bounds)
        releases = [v for v in usable if _semver.best([], [v]) is not None]  # parseable, not pre-releases
        known = ", ".join(sorted(releases, key=lambda v: _semver.Version.parse(v).key())[-5:]) or "none"
        raise _InstallProblem(f"package {want.entry['package']!r} has no version matching {wanted} on the hub "
                              f"(latest: {known})", "change version: in packages.yml")
    return chosen


_hub_cache: dict[str, dict[str, object]] = {}


def _hub_versions(package: str) -> dict[str, dict[str, object]]:
    """The hub's ``api/v1/<namespace>/<name>.json``: {version: {name, packages, downloads: {tarball}}}."""
    url = f"{hub_url()}api/v1/{package}.json"
    if url not in _hub_cache:
        data = _get_json(url, f"package {package!r}")
        if not isinstance(data, dict) or not isinstance(data.get("versions"), dict):
            raise _InstallProblem(f"the package hub's answer for {package!r} has no versions ({url})",
                                  "check DBT_PACKAGE_HUB_URL")
        _hub_cache[url] = data
    versions = mapping(_hub_cache[url]["versions"])
    return {k: v for k, v in versions.items() if isinstance(v, dict)}


def _works_with_dbt(info: dict[str, object]) -> bool:
    """A release's ``require_dbt_version`` against the dbt version opsloop stands for (as dbt filters
    releases, unless DBT_VERSION_CHECK=false)."""
    if os.environ.get("DBT_VERSION_CHECK", "").lower() in ("false", "0"):
        return True
    required = info.get("require_dbt_version")
    if not required:
        return True
    try:
        bounds = _semver.specs(required)
    except _semver.VersionError:
        return True
    return all(b.allows(_semver.Version.parse(DBT_COMPAT_VERSION)) for b in bounds)


def _get_json(url: str, what: str) -> object:
    import httpx

    try:
        resp = httpx.get(url, timeout=30, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise _InstallProblem(f"cannot reach the package hub for {what}: {exc} ({url})",
                              "check your network, or set DBT_PACKAGE_HUB_URL") from exc
    if resp.status_code == 404:
        raise _InstallProblem(f"{what} is not on the package hub ({url})", "check the name (namespace/name)")
    if resp.status_code >= 400:
        raise _InstallProblem(f"the package hub answered {resp.status_code} for {what} ({url})", "try again later")
    try:
        return resp.json()
    except ValueError as exc:
        raise _InstallProblem(f"the package hub's answer for {what} is not JSON ({url})",
                              "check DBT_PACKAGE_HUB_URL") from exc


def _download(url: str, dest: Path) -> None:
    import httpx

    if url.startswith("file://"):
        shutil.copyfile(url.removeprefix("file://"), dest)
        return
    try:
        with httpx.stream("GET", url, timeout=60, follow_redirects=True) as resp:
            if resp.status_code >= 400:
                raise _InstallProblem(f"downloading {url} answered {resp.status_code}", "check the URL")
            with dest.open("wb") as fh:
                for chunk in resp.iter_bytes():
                    fh.write(chunk)
    except httpx.HTTPError as exc:
        raise _InstallProblem(f"cannot download {url}: {exc}", "check the URL and your network") from exc


def _untar(archive: Path, into: Path, url: str) -> Path:
    """Unpack a .tar.gz whose files sit under one top folder; returns that folder."""
    into.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                dest = (into / member.name).resolve()
                if not dest.is_relative_to(into.resolve()) or member.issym() or member.islnk():
                    raise _InstallProblem(f"{url} holds {member.name!r}, outside its folder or a link",
                                          "use a tarball of plain files")
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise _InstallProblem(f"{url} is not a readable .tar.gz: {exc}", "check the URL") from exc
    tops = [p for p in into.iterdir()]
    if len(tops) != 1 or not tops[0].is_dir():
        raise _InstallProblem(f"{url} must hold one folder with the package in it (found {len(tops)} entries)",
                              "pack the package as <name>/dbt_project.yml ...")
    return tops[0]


def _own_deps(folder: Path) -> list[dict[str, object]]:
    spec = spec_file(folder)
    if spec is None:
        return []
    try:
        doc = load_yaml(spec, folder)
    except YamlProblem:
        return []
    data = doc.data.get("packages") if isinstance(doc.data, dict) else None
    return [e for e in data or [] if isinstance(e, dict)]


def _fetch(want: _Want, pin: str, tmp: Path) -> _Got:
    entry = want.entry
    if want.kind == "local":
        source = (want.base / str(entry["local"])).resolve()
        data = _project_file(source)
        if data is None:
            raise _InstallProblem(f"local package {entry['local']!r} has no dbt_project.yml", "fix the path")
        name = str(data.get("name") or source.name)
        return _Got(name, source, {"local": str(entry["local"])}, "local", _own_deps(source), link=True)
    tmp.mkdir(parents=True)
    if want.kind == "git":
        return _fetch_git(entry, tmp)
    if want.kind == "tarball":
        url = str(entry["tarball"])
        _download(url, tmp / "package.tar.gz")
        folder = _untar(tmp / "package.tar.gz", tmp / "x", url)
        if _project_file(folder) is None:
            raise _InstallProblem(f"{url} has no dbt_project.yml in {folder.name}/", "check the tarball")
        return _Got(str(entry["name"]), folder, {"tarball": url}, "tarball", _own_deps(folder))
    package = str(entry["package"])
    info = _hub_versions(package).get(pin) or {}
    url = str(mapping(info.get("downloads")).get("tarball") or "")
    if not url:
        raise _InstallProblem(f"the package hub lists no tarball for {package} {pin}", "try another version")
    _download(url, tmp / "package.tar.gz")
    folder = _untar(tmp / "package.tar.gz", tmp / "x", url)
    data = _project_file(folder)
    if data is None:
        raise _InstallProblem(f"{package} {pin} ({url}) has no dbt_project.yml", "try another version")
    name = str(info.get("name") or data.get("name") or package.split("/")[-1])
    listed = info.get("packages")
    deps = [e for e in listed if isinstance(e, dict)] if isinstance(listed, list) else [] if "packages" in info \
        else _own_deps(folder)
    return _Got(name, folder, {"package": package, "version": pin}, pin, deps)


def _fetch_git(entry: dict[str, object], tmp: Path) -> _Got:
    url, revision = str(entry["git"]), entry.get("revision")
    checkout = tmp / "repo"
    clone = subprocess.run(["git", "clone", "--quiet", url, str(checkout)], capture_output=True, text=True,
                           timeout=600)
    if clone.returncode != 0:
        raise _InstallProblem(f"git clone {url} failed: {clone.stderr.strip().splitlines()[-1:]}",
                              "check the URL and your access to it")
    if revision:
        co = subprocess.run(["git", "-C", str(checkout), "checkout", "--quiet", str(revision)],
                            capture_output=True, text=True, timeout=120)
        if co.returncode != 0:
            raise _InstallProblem(f"revision {revision!r} not found in {url}", "use a tag, branch or commit")
    sha = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                         timeout=60).stdout.strip()
    source = checkout / str(entry.get("subdirectory") or "")
    data = _project_file(source)
    if data is None:
        sub = f"/{entry['subdirectory']}" if entry.get("subdirectory") else ""
        raise _InstallProblem(f"{url}{sub} has no dbt_project.yml", "check subdirectory:")
    locked: dict[str, object] = {"git": url, "revision": sha}
    if entry.get("subdirectory"):
        locked["subdirectory"] = entry["subdirectory"]
    return _Got(str(data.get("name") or source.name), source, locked, sha, _own_deps(source))


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
