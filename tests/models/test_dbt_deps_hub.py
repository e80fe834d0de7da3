"""`opsloop deps` resolves hub packages (`package: namespace/name` + a version or a range) as `dbt deps` does,
from a package hub served here on 127.0.0.1 (the hub's `api/v1/index.json` and `api/v1/<ns>/<name>.json`,
and the release tarballs, built by the test), and installs `tarball:` packages; both tools, pointed at the
same hub with DBT_PACKAGE_HUB_URL, install the same versions, write the same package-lock.yml and build
the same tables. No network."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from ._dbt import dbt, opsloop, relations, write_project


class _Hub:
    """A package hub: {"ns/name": {version: (project files, its hub dependencies)}}, served over HTTP."""

    def __init__(self) -> None:
        self.releases: dict[str, dict[str, tuple[dict[str, str], list[dict[str, object]]]]] = {}
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def release(self, package: str, version: str, files: dict[str, str],
                deps: list[dict[str, object]] | None = None) -> None:
        self.releases.setdefault(package, {})[version] = (files, deps or [])

    def tarball(self, path: str, top: str, files: dict[str, str]) -> str:
        """Serve a .tar.gz holding ``files`` under the folder ``top``; returns its URL."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for rel, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(f"{top}/{rel}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        self.files[path] = buf.getvalue()
        return self.url + path

    def _document(self, path: str) -> bytes | None:
        if path == "api/v1/index.json":
            return json.dumps(sorted(self.releases)).encode()
        for package, versions in self.releases.items():
            if path == f"api/v1/{package}.json":
                ns, name = package.split("/")
                out = {}
                for version, (files, deps) in versions.items():
                    url = self.tarball(f"tar/{package}/{version}.tar.gz", f"{name}-{version}", files)
                    out[version] = {"id": f"{package}/{version}", "name": name, "version": version,
                                    "packages": deps, "works_with": [], "require_dbt_version": [">=1.3.0"],
                                    "downloads": {"tarball": url, "format": "tgz", "sha1": ""}}
                return json.dumps({"name": name, "namespace": ns, "latest": max(versions),
                                   "versions": out}).encode()
        return self.files.get(path)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.lstrip("/").split("?")[0]
                hub.requests.append(path)
                body = hub._document(path)
                self.send_response(404 if body is None else 200)
                self.send_header("Content-Type", "application/json" if path.endswith(".json") else
                                 "application/gzip")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def _pkg(name: str, macros: dict[str, str], packages: str = "") -> dict[str, str]:
    files = {"dbt_project.yml": f"name: {name}\nversion: '1.0.0'\nconfig-version: 2\n", **macros}
    if packages:
        files["packages.yml"] = packages
    return files


@pytest.fixture(scope="module")
def hub() -> Iterator[_Hub]:
    h = _Hub()
    for version in ("0.9.0", "1.0.0", "1.1.0", "2.0.0", "1.2.0-rc1"):
        h.release("acme/hub_utils", version, _pkg("hub_utils", {
            "macros/v.sql": f"{{% macro version() %}}'{version}'{{% endmacro %}}\n"}))
    # hub_dates needs hub_utils below 1.1: with the project's [">=1.0.0", "<2.0.0"] that makes 1.0.0
    h.release("acme/hub_dates", "0.3.0", _pkg("hub_dates", {
        "macros/d.sql": "{% macro today_label() %}'d-' || {{ hub_utils.version() }}{% endmacro %}\n"}),
        deps=[{"package": "acme/hub_utils", "version": [">=0.9.0", "<1.1.0"]}])
    thread = threading.Thread(target=h.server.serve_forever, daemon=True)
    thread.start()
    yield h
    h.server.shutdown()
    h.server.server_close()


def _project(root: Path, tar_url: str) -> Path:
    return write_project(root, {
        "packages.yml": "packages:\n"
                        "  - package: acme/hub_utils\n    version: [\">=1.0.0\", \"<2.0.0\"]\n"
                        "  - package: acme/hub_dates\n    version: 0.3.0\n"
                        f"  - tarball: {tar_url}\n    name: tar_pkg\n",
        "models/m.sql": "select {{ hub_utils.version() }} as v, {{ hub_dates.today_label() }} as d, "
                        "{{ tar_pkg.answer() }} as a\n",
    })


def test_hub_and_tarball_packages_install_as_dbt_deps_installs_them(hub: _Hub, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    tar_url = hub.tarball("files/tar_pkg.tar.gz", "tar_pkg-main",
                          _pkg("tar_pkg", {"macros/a.sql": "{% macro answer() %}42{% endmacro %}\n"}))
    monkeypatch.setenv("DBT_PACKAGE_HUB_URL", hub.url)
    ours, theirs = _project(tmp_path / "ours", tar_url), _project(tmp_path / "theirs", tar_url)

    proc = opsloop(ours, "deps")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hub_utils: 1.0.0" in proc.stdout and "hub_dates: 0.3.0" in proc.stdout, proc.stdout
    assert {p.name for p in (ours / "dbt_packages").iterdir()} == {"hub_utils", "hub_dates", "tar_pkg"}
    built = opsloop(ours, "build")
    assert built.returncode == 0, built.stdout + built.stderr

    assert dbt(theirs, "deps").returncode == 0
    assert dbt(theirs, "build").returncode == 0
    assert relations(ours / "warehouse.duckdb") == relations(theirs / "dbt.duckdb")
    assert relations(ours / "warehouse.duckdb")["main.m"][1] == [("1.0.0", "d-1.0.0", 42)]
    # the same lock file, byte for byte (its sha1_hash is dbt's hash of packages.yml)
    assert (ours / "package-lock.yml").read_text() == (theirs / "package-lock.yml").read_text()


def test_the_lock_pins_versions_until_upgrade(hub: _Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBT_PACKAGE_HUB_URL", hub.url.rstrip("/"))  # with or without the trailing slash
    root = write_project(tmp_path / "p", {
        "packages.yml": "packages:\n  - package: acme/hub_utils\n    version: \">=1.0.0\"\n",
        "models/m.sql": "select {{ hub_utils.version() }} as v\n",
    })
    assert opsloop(root, "deps").returncode == 0
    assert yaml.safe_load((root / "package-lock.yml").read_text())["packages"] == [
        {"name": "hub_utils", "package": "acme/hub_utils", "version": "2.0.0"}]
    hub.release("acme/hub_utils", "2.1.0", _pkg("hub_utils", {"macros/v.sql": "{% macro version() %}'2.1.0'"
                                                                               "{% endmacro %}\n"}))
    try:
        again = opsloop(root, "deps")
        assert again.returncode == 0 and "hub_utils: 2.0.0" in again.stdout, again.stdout + again.stderr
        upgraded = opsloop(root, "deps", "--upgrade")
        assert upgraded.returncode == 0 and "hub_utils: 2.1.0" in upgraded.stdout, upgraded.stdout
        assert opsloop(root, "build").returncode == 0
        assert relations(root / "warehouse.duckdb")["main.m"][1] == [("2.1.0",)]
    finally:
        del hub.releases["acme/hub_utils"]["2.1.0"]


def test_unresolvable_hub_packages_name_their_line(hub: _Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBT_PACKAGE_HUB_URL", hub.url)
    root = write_project(tmp_path / "p", {
        "packages.yml": "packages:\n"
                        "  - package: acme/hub_utils\n    version: [\">=3.0.0\"]\n"
                        "  - package: acme/nothing\n    version: 1.0.0\n"
                        "  - package: acme/hub_dates\n    version: 1.2\n"
                        f"  - tarball: {hub.url}files/missing.tar.gz\n    name: gone\n",
    })
    proc = opsloop(root, "deps")
    assert proc.returncode == 1
    err = proc.stderr
    assert "packages.yml:2: package 'acme/hub_utils' has no version matching >=3.0.0 on the hub" in err, err
    assert "(latest: 0.9.0, 1.0.0, 1.1.0, 2.0.0)" in err, err
    assert "packages.yml:4: package 'acme/nothing' is not on the package hub" in err, err
    assert "packages.yml:6: package 'acme/hub_dates': '1.2' is not a full version" in err, err
    assert "packages.yml:8: downloading " in err and "answered 404" in err, err
    assert "Traceback" not in err
    assert not (root / "dbt_packages").exists()
