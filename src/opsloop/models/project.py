"""Read a dbt-layout project: dbt_project.yml, models/**/*.sql, schema .yml files, seeds/*.csv."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem
from ..narrow import mapping
from ..project.yaml_files import LocatedYaml, YamlProblem, load_yaml
from ._config import as_list, opt_str, slug
from .nodes import INCREMENTAL_STRATEGIES, MATERIALIZATIONS, ON_SCHEMA_CHANGE, DataTest, Model, Seed, Snapshot, Source
from .packages import Package

GENERIC_TESTS = ("unique", "not_null", "accepted_values", "relationships")
CONFIG_KEYS = {
    "materialized", "schema", "alias", "tags", "unique_key", "incremental_strategy", "on_schema_change",
    "enabled", "full_refresh", "database", "meta", "docs", "persist_docs", "contract", "grants", "column_types",
    "quote_columns", "delimiter", "severity", "where", "store_failures", "description", "group", "access",
    "sql_header", "pre-hook", "post-hook", "pre_hook", "post_hook", "batch_size", "event_time", "lookback",
    "strategy", "updated_at", "check_cols", "target_schema", "target_database", "hard_deletes",
    "invalidate_hard_deletes", "dbt_valid_to_current", "snapshot_meta_column_names", "store_failures_as",
    "location", "format", "options", "begin", "concurrent_batches",
}
UNSUPPORTED_CONFIG: set[str] = set()
"""Config keys dbt acts on that opsloop does not yet (an error with file:line where they are set)."""
HOOK_KEYS = {"pre-hook": "pre_hook", "post-hook": "post_hook", "pre_hook": "pre_hook", "post_hook": "post_hook"}
"""Hooks add up across config levels, as in dbt (the project's, the folder's, the model's)."""
_log = logging.getLogger("opsloop.models")
_SNAPSHOT_RE = re.compile(r"{%-?\s*snapshot\s+(\w+)\s*-?%}(.*?){%-?\s*endsnapshot\s*-?%}", re.S)
_REF_RE = re.compile(r"""^\s*ref\(\s*['"]([^'"]+)['"]\s*(?:,\s*['"]([^'"]+)['"]\s*)?\)\s*$""")
_SOURCE_RE = re.compile(r"""^\s*source\(\s*['"]([^'"]+)['"]\s*,\s*['"]([^'"]+)['"]\s*\)\s*$""")


@dataclass
class ModelProject:
    """Everything under the dbt project folder, before rendering."""

    root: Path
    """The dbt project folder."""
    display_root: Path
    """The opsloop project folder; messages name files relative to it."""
    name: str = "opsloop"
    vars: dict[str, object] = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)
    seeds: dict[str, Seed] = field(default_factory=dict)
    sources: dict[tuple[str, str], Source] = field(default_factory=dict)
    tests: dict[str, DataTest] = field(default_factory=dict)
    macro_files: list[Path] = field(default_factory=list)
    models_config: dict[str, object] = field(default_factory=dict)
    seeds_config: dict[str, object] = field(default_factory=dict)
    model_paths: list[str] = field(default_factory=lambda: ["models"])
    packages: list[Package] = field(default_factory=list)
    """Installed dbt packages whose macros the project can call (packages.yml, dbt_packages/)."""
    dispatch: dict[str, list[str]] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    snapshots_config: dict[str, object] = field(default_factory=dict)
    tests_config: dict[str, object] = field(default_factory=dict)
    """``data_tests:`` (or ``tests:``) in dbt_project.yml: ``+store_failures``, ``+severity`` ... by folder."""
    test_paths: list[str] = field(default_factory=lambda: ["tests"])
    on_run_start: list[str] = field(default_factory=list)
    on_run_end: list[str] = field(default_factory=list)
    read_problems: list[Problem] = field(default_factory=list)
    """What reading found (kept so `opsloop validate` reports them with the parse's, in one pass)."""

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.display_root))
        except ValueError:
            return str(path)

    @property
    def empty(self) -> bool:
        return not (self.models or self.seeds or self.snapshots)


def _folder_config(tree: dict[str, object], fqn: list[str]) -> dict[str, object]:
    """dbt_project.yml ``models:`` config for a node at ``fqn`` (project, folders..., name)."""
    merged: dict[str, object] = {}
    node: object = tree
    parts = list(fqn[1:])
    while isinstance(node, dict):
        for key, value in node.items():
            key = str(key)
            if key.startswith("+"):
                _merge(merged, key[1:], value)
            elif key in CONFIG_KEYS and not isinstance(value, dict):
                _merge(merged, key, value)
            elif key in ("vars",) and isinstance(value, dict):
                continue
        if not parts:
            break
        head = parts.pop(0)
        node = node.get(head) if head in node else None
    return merged


def _merge(target: dict[str, object], key: str, value: object) -> None:
    if key in HOOK_KEYS:
        key = HOOK_KEYS[key]
        target[key] = [*hook_list(target.get(key)), *hook_list(value)]
    elif key == "tags":
        target["tags"] = [*as_list(target.get("tags")), *as_list(value)]
    elif key in ("meta", "column_types") and isinstance(value, dict):
        target[key] = {**mapping(target.get(key)), **value}
    else:
        target[key] = value


def hook_list(value: object) -> list[str]:
    """A hook config as a list of SQL strings (dbt takes a string, a list, or {sql: ...} entries)."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("sql", "")
        if str(item).strip():
            out.append(str(item))
    return out


def merge_config(base: dict[str, object], override: dict[str, object]) -> dict[str, object]:
    out = dict(base)
    for key, value in override.items():
        _merge(out, key, value)
    return out


def read_model_project(project_root: Path, dbt_dir: str | None, problems: list[Problem]) -> ModelProject | None:
    """Read the model project of an opsloop project; None when it has no models, seeds or dbt project.

    Problems are appended to ``problems`` and kept in ``read_problems`` (reported with the parse's)."""
    root = (project_root / dbt_dir).resolve() if dbt_dir else project_root
    mp = ModelProject(root=root, display_root=project_root)
    start = len(problems)
    _read_project(mp, root, project_root, dbt_dir, problems)
    mp.read_problems = list(problems[start:])
    return mp


def _read_project(mp: ModelProject, root: Path, project_root: Path, dbt_dir: str | None,
                  problems: list[Problem]) -> None:
    yml_files: list[Path] = []
    config_path = root / "dbt_project.yml"
    seed_paths = ["seeds"]
    macro_paths = ["macros"]
    test_paths = ["tests"]
    snapshot_paths = ["snapshots"]
    if config_path.is_file():
        try:
            doc = load_yaml(config_path, project_root)
        except YamlProblem as exc:
            problems.append(exc.problem)
            return
        data = doc.data if isinstance(doc.data, dict) else {}
        mp.name = str(data.get("name") or root.name)
        mp.model_paths = as_list(data.get("model-paths") or data.get("source-paths")) or ["models"]
        seed_paths = as_list(data.get("seed-paths") or data.get("data-paths")) or ["seeds"]
        macro_paths = as_list(data.get("macro-paths")) or ["macros"]
        test_paths = as_list(data.get("test-paths")) or ["tests"]
        mp.test_paths = test_paths
        snapshot_paths = as_list(data.get("snapshot-paths")) or ["snapshots"]
        _unsupported_project_keys(mp, doc, mp.rel(config_path), problems)
        raw_vars = data.get("vars") or {}
        if isinstance(raw_vars, dict):
            for key, value in raw_vars.items():
                if key == mp.name and isinstance(value, dict):
                    mp.vars.update(value)
                else:
                    mp.vars[str(key)] = value
        models_cfg = data.get("models") or {}
        mp.models_config = models_cfg.get(mp.name, models_cfg) if isinstance(models_cfg, dict) else {}
        if isinstance(models_cfg, dict):
            top = {k: v for k, v in models_cfg.items() if str(k).startswith("+")}
            mp.models_config = {**top, **mp.models_config}
        snaps_cfg = data.get("snapshots") or {}
        mp.snapshots_config = snaps_cfg.get(mp.name, snaps_cfg) if isinstance(snaps_cfg, dict) else {}
        if isinstance(snaps_cfg, dict):
            top = {k: v for k, v in snaps_cfg.items() if str(k).startswith("+")}
            mp.snapshots_config = {**top, **mp.snapshots_config}
        tests_cfg = data.get("data_tests") or data.get("tests") or {}
        if isinstance(tests_cfg, dict):
            top = {k: v for k, v in tests_cfg.items() if str(k).startswith("+")}
            scoped = tests_cfg.get(mp.name)
            mp.tests_config = {**top, **(scoped if isinstance(scoped, dict) else {})}
        seeds_cfg = data.get("seeds") or {}
        mp.seeds_config = seeds_cfg.get(mp.name, seeds_cfg) if isinstance(seeds_cfg, dict) else {}
        from .packages import dispatch_config, read_packages

        mp.packages = read_packages(mp, data, problems)
        mp.dispatch = dispatch_config(data)
        for package in mp.packages:  # a package's own vars are defaults; the project's `vars: {pkg: ...}` win
            scoped = mp.vars.get(package.name)
            if isinstance(scoped, dict):
                mp.vars.update(scoped)
            for key, value in package.vars.items():
                mp.vars.setdefault(key, value)
    elif dbt_dir:
        problems.append(Problem(mp.rel(config_path), None, "no dbt_project.yml in the folder that "
                                "opsloop.yml's dbt_project: names", "fix the path in opsloop.yml"))
        return
    for folder in macro_paths:
        mp.macro_files.extend(sorted((root / folder).rglob("*.sql")))
    for folder in test_paths:
        base = root / folder
        if base.is_dir():
            for path in sorted(base.rglob("*.sql")):
                parts = path.relative_to(base).parts[:-1]
                if "generic" in parts:
                    mp.macro_files.append(path)  # {% test %} definitions are macros, as in dbt
                elif "fixtures" in parts:
                    continue  # unit-test fixtures (tests/fixtures/, format: sql), not singular tests, as in dbt
                else:
                    _read_singular_test(mp, path, problems)
    for folder in snapshot_paths:
        base = root / folder
        if base.is_dir():
            for path in sorted(base.rglob("*.sql")):
                _read_snapshot_file(mp, base, path, problems)
            yml_files.extend(sorted([*base.rglob("*.yml"), *base.rglob("*.yaml")]))
    for folder in mp.model_paths:
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.sql")):
            _read_model(mp, base, folder, path, problems)
        for path in sorted(base.rglob("*.py")):
            _read_model(mp, base, folder, path, problems)
        yml_files.extend(sorted([*base.rglob("*.yml"), *base.rglob("*.yaml")]))
    for folder in seed_paths:
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.csv")):
            rel_parts = list(path.relative_to(base).with_suffix("").parts)
            fqn = [mp.name, *rel_parts]
            seed = Seed(name=path.stem, file=mp.rel(path), path=str(path.relative_to(root)))
            seed.config = _folder_config(mp.seeds_config, fqn)
            if seed.name in mp.seeds:
                problems.append(Problem(seed.file, None, f"two seeds are named {seed.name!r}", "rename one"))
            mp.seeds[seed.name] = seed
        yml_files.extend(sorted([*base.rglob("*.yml"), *base.rglob("*.yaml")]))
    for path in yml_files:
        _read_schema_file(mp, path, problems)
    _check_configs(mp, problems)
    return


def _unsupported_project_keys(mp: ModelProject, doc: LocatedYaml, rel: str, problems: list[Problem]) -> None:
    """dbt_project.yml entries that make dbt run something opsloop does not run yet."""
    data = doc.data if isinstance(doc.data, dict) else {}
    mp.on_run_start = hook_list(data.get("on-run-start"))
    mp.on_run_end = hook_list(data.get("on-run-end"))

    def walk(node: object, loc: tuple[str | int, ...]) -> None:
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            bare = str(key).lstrip("+")
            if bare in UNSUPPORTED_CONFIG and value:
                problems.append(Problem(rel, doc.line_of((*loc, key)), f"config {bare!r} is not supported "
                                        "yet", "move the statement into a model or remove it"))
            elif isinstance(value, dict):
                walk(value, (*loc, key))

    for kind in ("models", "seeds", "snapshots", "tests", "data_tests"):
        walk(data.get(kind), (kind,))


def _read_singular_test(mp: ModelProject, path: Path, problems: list[Problem]) -> None:
    rel = mp.rel(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(rel, None, f"cannot read the test: {exc}"))
        return
    name = path.stem
    if name in mp.tests:
        problems.append(Problem(rel, None, f"two data tests are named {name!r} (also {mp.tests[name].file})",
                                "rename one of the files"))
        return
    test = DataTest(name=name, test="singular", attached="", column="", kwargs={}, file=rel, line=None, raw_sql=text)
    apply_test_config(test, merge_config(_test_folder_config(mp, rel, name), {}))
    mp.tests[name] = test


def _test_folder_config(mp: ModelProject, rel: str, name: str) -> dict[str, object]:
    """dbt_project.yml's ``data_tests:`` config for a test defined in ``rel`` (fqn: project, folders, name)."""
    return _folder_config(mp.tests_config, [mp.name, *Path(rel).parts[1:-1], name])


def apply_test_config(test: DataTest, config: dict[str, object]) -> None:
    """store_failures / store_failures_as from a test's merged config (the project's, then its own)."""
    if "store_failures" in config:
        test.store_failures = bool(config["store_failures"])
    if config.get("store_failures_as"):
        test.store_failures_as = str(config["store_failures_as"]).lower()


def _read_snapshot_file(mp: ModelProject, base: Path, path: Path, problems: list[Problem]) -> None:
    """The ``{% snapshot name %} ... {% endsnapshot %}`` blocks of one file (a file may hold several)."""
    rel = mp.rel(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(rel, None, f"cannot read the snapshot: {exc}"))
        return
    folders = list(path.relative_to(base).parts[:-1])
    found = False
    for match in _SNAPSHOT_RE.finditer(text):
        found = True
        line = text.count("\n", 0, match.start()) + 1
        body = "\n" * text.count("\n", 0, match.start(2)) + match.group(2)  # the file's line numbers
        _add_snapshot(mp, Snapshot(name=match.group(1), file=rel, line=line, path=str(path.relative_to(mp.root)),
                                   raw_sql=body, fqn=[mp.name, *folders, path.stem, match.group(1)]), problems)
    if not found and "snapshot" in text:
        bad_line = next((i for i, ln in enumerate(text.splitlines(), 1) if "snapshot" in ln), None)
        problems.append(Problem(rel, bad_line, "cannot read a snapshot here: expected {% snapshot name %} ... "
                                "{% endsnapshot %}", "close the block with {% endsnapshot %}"))


def _add_snapshot(mp: ModelProject, snap: Snapshot, problems: list[Problem]) -> None:
    if snap.name in mp.snapshots:
        other = mp.snapshots[snap.name]
        problems.append(Problem(snap.file, snap.line, f"two snapshots are named {snap.name!r} (also "
                                f"{other.file}:{other.line})", "rename one"))
        return
    snap.config = _folder_config(mp.snapshots_config, snap.fqn)
    mp.snapshots[snap.name] = snap


def _read_snapshot_entry(mp: ModelProject, doc: LocatedYaml, rel: str, i: int, entry: object,
                         problems: list[Problem]) -> None:
    """A ``snapshots:`` YAML entry: dbt 1.9's form (``relation: ref('x')`` and ``config:``), or the
    properties (config, description, column tests) of a ``{% snapshot %}`` block."""
    loc: tuple[str | int, ...] = ("snapshots", i)
    if not isinstance(entry, dict) or "name" not in entry:
        problems.append(Problem(rel, doc.line_of(loc), "each entry under snapshots: needs a name:"))
        return
    name = str(entry["name"])
    cfg = entry.get("config") or {}
    if not isinstance(cfg, dict):
        problems.append(Problem(rel, doc.line_of((*loc, "config")), "config: should be a mapping"))
        return
    relation = entry.get("relation")
    if relation is not None:
        rline = doc.line_of((*loc, "relation")) or doc.line_of(loc) or 1
        if not (_REF_RE.match(str(relation)) or _SOURCE_RE.match(str(relation))):
            problems.append(Problem(rel, rline, f"snapshot {name!r}: relation: should be ref('model') or "
                                    f"source('src', 'table'), not {relation!r}"))
            return
        sql = "\n" * (rline - 1) + "select * from {{ " + str(relation).strip() + " }}\n"
        folders = list(Path(rel).parts[1:-1])
        _add_snapshot(mp, Snapshot(name=name, file=rel, line=doc.line_of(loc), path=rel, raw_sql=sql,
                                   fqn=[mp.name, *folders, name]), problems)
    snap = mp.snapshots.get(name)
    if snap is None:
        _log.warning("%s", Problem(rel, doc.line_of((*loc, "name")), f"warning: snapshot {name!r} is described "
                                   "here but there is no {% snapshot " + name + " %} block and no relation:; "
                                   "this entry is ignored", "fix the name, or add relation: ref('...')"))
        return
    snap.config = merge_config(snap.config, cfg)
    snap.description = str(entry.get("description") or snap.description)
    for c_i, col in enumerate(entry.get("columns") or []):
        if not isinstance(col, dict) or "name" not in col:
            continue
        key = "data_tests" if "data_tests" in col else "tests"
        for t_i, test in enumerate(col.get(key) or []):
            _read_test(mp, doc, rel, (*loc, "columns", c_i, key, t_i), test, snap.uid, name, str(col["name"]),
                       problems)


def _read_model(mp: ModelProject, base: Path, folder: str, path: Path, problems: list[Problem]) -> None:
    rel = mp.rel(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(rel, None, f"cannot read the model: {exc}"))
        return
    parts = list(path.relative_to(base).with_suffix("").parts)
    model = Model(name=path.stem, file=rel, path=str(path.relative_to(mp.root)), raw_sql=text,
                  fqn=[mp.name, *parts], language="python" if path.suffix == ".py" else "sql")
    model.config = _folder_config(mp.models_config, model.fqn)
    if model.name in mp.models:
        problems.append(Problem(rel, None, f"two models are named {model.name!r} "
                                f"(also {mp.models[model.name].file})", "rename one of the files"))
        return
    mp.models[model.name] = model


def _read_schema_file(mp: ModelProject, path: Path, problems: list[Problem]) -> None:
    rel = mp.rel(path)
    try:
        doc = load_yaml(path, mp.display_root)
    except YamlProblem as exc:
        problems.append(exc.problem)
        return
    data = doc.data
    if data is None:
        return
    if not isinstance(data, dict):
        problems.append(Problem(rel, 1, "expected a mapping with version: 2 and models:/sources:/seeds:"))
        return
    for i, src in enumerate(data.get("sources") or []):
        _read_source(mp, doc, rel, i, src, problems)
    for i, entry in enumerate(data.get("snapshots") or []):
        _read_snapshot_entry(mp, doc, rel, i, entry, problems)
    from .unit_tests import read_unit_test

    for i, entry in enumerate(data.get("unit_tests") or []):
        read_unit_test(mp, doc, rel, i, entry, problems)
    for kind in ("models", "seeds"):
        entries = data.get(kind) or []
        if not isinstance(entries, list):
            problems.append(Problem(rel, doc.line_of((kind,)), f"{kind}: should be a list of entries with name:"))
            continue
        for i, entry in enumerate(entries):
            loc: tuple[str | int, ...] = (kind, i)
            if not isinstance(entry, dict) or "name" not in entry:
                problems.append(Problem(rel, doc.line_of(loc), f"each entry under {kind}: needs a name:"))
                continue
            name = str(entry["name"])
            target: Model | Seed | None = (mp.models if kind == "models" else mp.seeds).get(name)
            if target is None:  # dbt warns and goes on; so does opsloop
                what = "model file models/.../" + name + ".sql" if kind == "models" else f"seeds/{name}.csv"
                real, section = ("seed", "seeds") if kind == "models" else ("model", "models")
                other = (mp.seeds if kind == "models" else mp.models).get(name)
                also = f" ({name!r} is a {real}; describe it under {section}:)" if other else ""
                _log.warning("%s", Problem(rel, doc.line_of((*loc, "name")), f"warning: {kind[:-1]} {name!r} is "
                                           f"described here but there is no {what}{also}; this entry is ignored",
                                           "fix the name or remove the entry"))
                continue
            cfg = entry.get("config") or {}
            for key in cfg:
                if key in UNSUPPORTED_CONFIG and cfg[key]:
                    problems.append(Problem(rel, doc.line_of((*loc, "config", key)), f"config {key!r} is "
                                            "not supported yet", "move the statement into a model or remove it"))
            if isinstance(target, Model):
                target.yaml_config = dict(cfg)
                target.description = str(entry.get("description") or "")
                target.config = merge_config(target.config, cfg)
            else:
                target.config = merge_config(target.config, cfg)
            uid = target.uid
            for t_i, test in enumerate(entry.get("data_tests") or entry.get("tests") or []):
                key = "data_tests" if "data_tests" in entry else "tests"
                _read_test(mp, doc, rel, (*loc, key, t_i), test, uid, name, None, problems)
            for c_i, col in enumerate(entry.get("columns") or []):
                if not isinstance(col, dict) or "name" not in col:
                    problems.append(Problem(rel, doc.line_of((*loc, "columns", c_i)), "each column needs a name:"))
                    continue
                if isinstance(target, Model):
                    target.columns[str(col["name"])] = col
                key = "data_tests" if "data_tests" in col else "tests"
                for t_i, test in enumerate(col.get(key) or []):
                    _read_test(mp, doc, rel, (*loc, "columns", c_i, key, t_i), test, uid, name,
                               str(col["name"]), problems)


def _read_source(mp: ModelProject, doc: LocatedYaml, rel: str, i: int, src: object, problems: list[Problem]) -> None:
    loc: tuple[str | int, ...] = ("sources", i)
    if not isinstance(src, dict) or "name" not in src:
        problems.append(Problem(rel, doc.line_of(loc), "each source needs a name: and tables:"))
        return
    sname = str(src["name"])
    schema = str(src.get("schema") or sname)
    for t_i, table in enumerate(src.get("tables") or []):
        tloc = (*loc, "tables", t_i)
        if not isinstance(table, dict) or "name" not in table:
            problems.append(Problem(rel, doc.line_of(tloc), "each source table needs a name:"))
            continue
        tname = str(table["name"])
        source = Source(source_name=sname, name=tname, schema=schema,
                        identifier=str(table.get("identifier") or tname), file=rel, line=doc.line_of(tloc),
                        description=str(table.get("description") or ""))
        from .freshness import read_freshness

        read_freshness(source, src, table, doc, tloc, problems)
        source.event_time = _source_event_time(table) or _source_event_time(src)
        template = _external_location(table) or _external_location(src)
        if template:
            source.external = _format_location(mp, template, source, src, table, doc, tloc, rel, problems)
        for c_i, col in enumerate(table.get("columns") or []):
            if isinstance(col, dict) and "name" in col:
                source.columns[str(col["name"])] = str(col.get("data_type") or "")
                key = "data_tests" if "data_tests" in col else "tests"
                for k_i, test in enumerate(col.get(key) or []):
                    _read_test(mp, doc, rel, (*tloc, "columns", c_i, key, k_i), test, source.uid,
                               f"{sname}_{tname}", str(col["name"]), problems, prefix="source_")
        mp.sources[(sname, tname)] = source


def _source_event_time(entry: dict[str, object]) -> str | None:
    config = entry.get("config")
    found = config.get("event_time") if isinstance(config, dict) else None
    return str(found) if found else None


def _external_location(entry: dict[str, object]) -> str | None:
    for part in (entry.get("config"), entry.get("meta"), entry):
        if isinstance(part, dict):
            found = part.get("external_location")
            if not found and isinstance(part.get("meta"), dict):
                found = part["meta"].get("external_location")
            if found:
                return str(found)
    return None


def _format_location(mp: ModelProject, template: str, source: Source, src: dict[str, object], table: dict[str, object],
                     doc: LocatedYaml, tloc: tuple[str | int, ...], rel: str, problems: list[Problem]) -> str | None:
    """dbt-duckdb's rule: ``{name}``, ``{identifier}``, ``{schema}``, meta keys ... formatted in; quoted as a
    file path unless it is a function call (``read_csv(...)``). A relative path is the dbt project's."""
    fields: dict[str, object] = {}
    for part in (src.get("meta"), table.get("meta"), mapping(src.get("config")).get("meta"),
                 mapping(table.get("config")).get("meta")):
        if isinstance(part, dict):
            fields.update(part)
    fields.update(name=source.name, identifier=source.identifier, schema=source.schema, database=None,
                  source_name=source.source_name)
    try:
        location = template.format_map(fields)
    except (KeyError, ValueError, IndexError) as exc:
        problems.append(Problem(rel, doc.line_of(tloc), f"source table {source.source_name}.{source.name}: "
                                f"external_location {template!r} names {exc}, which is not one of the table's "
                                "fields", "use {name}, {identifier}, {schema} or a meta: key"))
        return None
    if "(" in location or location.startswith("'"):
        return location
    path = Path(location)
    if not path.is_absolute() and "://" not in location:
        location = str(mp.root / path)
    return "'" + location.replace("'", "''") + "'"


def _read_test(mp: ModelProject, doc: LocatedYaml, rel: str, loc: tuple[str | int, ...], test: object, attached: str,
               owner: str, column: str | None, problems: list[Problem], prefix: str = "") -> None:
    line = doc.line_of(loc)
    args: dict[str, object]
    if isinstance(test, str):
        kind, args = test, {}
    elif isinstance(test, dict) and len(test) >= 1:
        kind = next(iter(test))
        args = test[kind] if isinstance(test[kind], dict) else {}
        if len(test) > 1:
            problems.append(Problem(rel, line, f"a test entry should have one key (the test name), got {list(test)}"))
            return
    else:
        problems.append(Problem(rel, line, f"cannot read this test entry: {test!r}"))
        return
    kind = str(kind)
    args = dict(args)
    config = mapping(args.pop("config", None))
    kwargs = mapping(args.pop("arguments", None))
    custom_name = args.pop("name", None)
    for key in ("where", "severity", "tags", "enabled", "store_failures", "store_failures_as", "warn_if", "error_if",
                "limit", "meta"):
        if key in args:
            config.setdefault(key, args.pop(key))
    kwargs.update(args)
    column = str(kwargs.pop("column_name", column)) if kwargs.get("column_name") or column else None
    if kind not in GENERIC_TESTS:  # a {% test %} macro of the project's or a package's
        from ._generic import add_generic_test

        add_generic_test(mp, rel, line, kind, kwargs, column, attached, owner, prefix, config, custom_name, problems)
        return
    if column is None:
        problems.append(Problem(rel, line, f"test {kind!r} needs a column",
                                "put it under columns:, or give column_name"))
        return
    depends = {attached}
    name_bits = [prefix + kind, owner, column]
    if kind == "accepted_values":
        values = kwargs.get("values")
        if not isinstance(values, list):
            problems.append(Problem(rel, line, "accepted_values needs values: a list of the allowed values"))
            return
        name_bits.append("_" + "__".join(slug(v) for v in values))
    if kind == "relationships":
        to, field_ = kwargs.get("to"), kwargs.get("field")
        match = _REF_RE.match(str(to)) if to else None
        smatch = _SOURCE_RE.match(str(to)) if to else None
        if not field_ or not (match or smatch):
            problems.append(Problem(rel, line, "relationships needs to: ref('model') (or source('s','t')) and field:"))
            return
        if match:
            parent = match.group(2) or match.group(1)
            kwargs["_to_uid"] = f"ref:{parent}"
            name_bits.append(f"_{slug(field_)}__ref_{parent}_")
        elif smatch:
            kwargs["_to_uid"] = f"source.{smatch.group(1)}.{smatch.group(2)}"
            name_bits.append(f"_{slug(field_)}__source_{smatch.group(1)}_{smatch.group(2)}_")
    name = str(custom_name) if custom_name else "_".join(name_bits)
    config = merge_config(_test_folder_config(mp, rel, name), config)
    severity = str(config.get("severity", "error")).lower()
    if severity not in ("error", "warn"):
        problems.append(Problem(rel, line, f"severity must be error or warn, not {severity!r}"))
        return
    if config.get("enabled") is False:
        return
    if name in mp.tests:
        other = mp.tests[name]
        problems.append(Problem(rel, line, f"two data tests are named {name!r} (the other is at "
                                f"{other.file}:{other.line})", "give one of them a name: key"))
        return
    test = DataTest(name=name, test=kind, attached=attached, column=column, kwargs=kwargs, file=rel, line=line,
                    severity=severity, where=opt_str(config.get("where")), depends_on=depends,
                    tags=as_list(config.get("tags")))
    apply_test_config(test, config)
    if len(name) >= 64 and not custom_name:  # dbt's alias for a long generic test name: a prefix and an md5
        test.alias = f"{prefix + kind}_{owner}"[:30] + "_" + hashlib.md5(name.encode()).hexdigest()  # noqa: S324
    mp.tests[name] = test


def _check_configs(mp: ModelProject, problems: list[Problem]) -> None:
    for model in mp.models.values():
        _check_model_config(model, model.config, problems, None, hooks=False)


def _check_model_config(model: Model, config: dict[str, object], problems: list[Problem], line: int | None,
                        hooks: bool = True) -> None:
    mat = config.get("materialized", "view")
    if mat not in MATERIALIZATIONS:
        problems.append(Problem(model.file, line, f"unsupported materialization {mat!r}",
                                f"use one of {', '.join(MATERIALIZATIONS)}"))
    strategy = config.get("incremental_strategy")
    if strategy is not None and strategy not in INCREMENTAL_STRATEGIES:
        problems.append(Problem(model.file, line, f"unsupported incremental_strategy {strategy!r}",
                                f"use one of {', '.join(INCREMENTAL_STRATEGIES)}"))
    osc = config.get("on_schema_change")
    if osc is not None and osc not in ON_SCHEMA_CHANGE:
        problems.append(Problem(model.file, line, f"unknown on_schema_change {osc!r}",
                                f"use one of {', '.join(ON_SCHEMA_CHANGE)}"))
    for key in config if hooks else ():
        if key in UNSUPPORTED_CONFIG and config[key]:
            problems.append(Problem(model.file, line, f"config {key!r} is not supported",
                                    "move the statement into a model or remove it"))
