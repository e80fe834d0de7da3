"""Reads ``syncs/*.yml`` into the project's ``SYNCS`` section and checks mappings for ``opsloop validate``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from ..errors import Problem
from ..project.env import interpolate
from ..project.loader import Project, ProjectLoader, Section, pydantic_problems, validate_model
from ..project.yaml_files import LocatedYaml, yaml_mappings
from ..warehouse import TYPES as WAREHOUSE_TYPES
from .config import FieldSpec, SyncConfig, compile_mapping

if TYPE_CHECKING:
    from ..warehouse import Warehouse


@dataclass
class LoadedSync:
    """One sync, parsed and checked: its config, compiled mapping and typed destination config."""

    config: SyncConfig
    specs: list[FieldSpec]
    destination: BaseModel
    alert: BaseModel | None
    file: str
    doc: LocatedYaml

    @property
    def name(self) -> str:
        return self.config.name

    def line(self, *loc: str | int) -> int | None:
        return self.doc.line_of(tuple(loc))


SYNCS: Section[dict[str, LoadedSync]] = Section("syncs", dict)
"""The project's syncs by name (``SYNCS.of(project)``)."""


def _typed_destination(
    data: object, doc: LocatedYaml, rel: str, where: str, project: Project, problems: list[Problem]
) -> BaseModel | None:
    from ..destinations import UnknownDestination, get_destination

    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        problems.append(Problem(rel, doc.line_of((where,)), f"{where}: needs a type: (e.g. hubspot, webhook, outbox)"))
        return None
    try:
        cls = get_destination(data["type"])
    except UnknownDestination as exc:
        problems.append(Problem(rel, doc.line_of((where, "type")), str(exc)))
        return None
    try:
        config = cls.Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(pydantic_problems(doc, rel, exc, prefix=(where,)))
        return None
    for loc, message in cls.validate(config, project.secret):
        problems.append(Problem(rel, doc.line_of((where, *loc)), message))
    return config


def load_syncs(project: Project, problems: list[Problem]) -> None:
    folder = project.root / "syncs"
    syncs: dict[str, LoadedSync] = {}
    SYNCS.put(project, syncs)
    expected = "expected a mapping (model:, key:, destination:, mapping: ...)"
    for path, rel, doc in yaml_mappings(folder, project.root, expected, problems):
        data = interpolate({"name": path.stem, **doc.data}, project.env)
        before = len(problems)
        config = validate_model(SyncConfig, doc, rel, data, problems)
        if config is None:
            if len(problems) > before and problems[-1].line is None:
                problems[-1] = Problem(rel, 1, problems[-1].message, problems[-1].hint)
            continue
        if config.name in syncs:
            problems.append(Problem(rel, 1, f"sync {config.name!r} is defined twice"))
            continue
        dialect = project.config.warehouse.type if project.config.warehouse.type in WAREHOUSE_TYPES else "duckdb"
        specs, mapping_problems = compile_mapping(config.mapping, dialect)
        for field_name, message in mapping_problems:
            problems.append(Problem(rel, doc.line_of(("mapping", field_name)), f"mapping.{field_name}: {message}"))
        if config.sql:
            import sqlglot

            try:
                sqlglot.parse_one(config.sql, read=dialect)
            except Exception as exc:
                problems.append(Problem(rel, doc.line_of(("sql",)), f"sql: does not parse: {str(exc).splitlines()[0]}"))
        destination = _typed_destination(config.destination, doc, rel, "destination", project, problems)
        alert = None
        if config.alert is not None:
            alert = _typed_destination(config.alert, doc, rel, "alert", project, problems)
        if destination is None or mapping_problems:
            continue
        from ..destinations import get_destination

        cls = get_destination(str(config.destination["type"]))
        if config.mode == "mirror" and not cls.DELETES:
            problems.append(Problem(rel, doc.line_of(("mode",)), f"the {cls.type} destination cannot delete records",
                                    "use mode: upsert"))
        if config.batch_size and config.batch_size > cls.MAX_BATCH:
            problems.append(Problem(rel, doc.line_of(("batch_size",)),
                                    f"batch_size {config.batch_size} is over {cls.type}'s limit of {cls.MAX_BATCH}"))
        syncs[config.name] = LoadedSync(config, specs, destination, alert, rel, doc)


def source_sql(project: Project, sync: LoadedSync, warehouse: Warehouse) -> str:
    """The FROM clause for a sync's rows: a table, a model's relation, or the sync's own SQL."""
    from ..errors import WarehouseError
    from .diff import relation_sql

    cfg = sync.config
    if cfg.sql:
        return f"({warehouse.embeddable(cfg.sql)}) AS __src"
    if cfg.table:
        return relation_sql(cfg.table)
    model = str(cfg.model)
    if "." in model:
        return relation_sql(model)
    rows = warehouse.query(
        "SELECT table_schema FROM information_schema.tables WHERE lower(table_name) = lower(?) "
        "ORDER BY lower(table_schema) = lower(?) DESC, table_schema", (model, warehouse.default_schema)
    ).rows
    if not rows:
        raise WarehouseError(
            f"{sync.file}:{sync.line('model')}: model {model!r} is not in the warehouse; build it first "
            "(opsloop build) or use table: schema.name"
        )
    return relation_sql(f"{rows[0][0]}.{model}")


def _model_defined(project: Project, model: str) -> bool:
    """A model or seed of the project's dbt layout is named ``model`` (the first build creates it)."""
    if any(project.root.glob(f"models/**/{model}.sql")):
        return True
    from ..models.project_files import MODELS

    models = MODELS.of(project)
    return models is not None and (model in models.models or model in models.seeds)


def created_by_first_run(project: Project, relation: str) -> str | None:
    """The command whose first run creates ``relation`` (``schema.table``), or None when nothing in the
    project would: a sync reading it before then is a warning for ``opsloop validate``, not an error."""
    schema, _, name = relation.rpartition(".")
    schema, name = schema.strip('"').lower(), name.strip('"')
    from ..identity.project_files import IDENTITY
    from ..sources.project_files import SOURCES

    if schema == "identity" and IDENTITY.of(project) is not None:
        return "opsloop identity build"
    for source, config in sorted(SOURCES.of(project).items()):
        if schema == str(config.schema_name).lower() and name in {_snake(s) for s in config.stream_names()}:
            return f"opsloop pull {source}"
    if _model_defined(project, name):
        return "opsloop build"
    return None


def _snake(stream: str) -> str:
    import re

    return re.sub(r"[^0-9a-z_]+", "_", stream.lower())


def _not_yet(sync: LoadedSync, key: str, relation: str, creator: str) -> Problem:
    return Problem(sync.file, sync.line(key), f"{relation} does not exist yet; the first `{creator}` creates it",
                   "its columns are checked once it exists", severity="warning")


def check_syncs(project: Project) -> list[Problem]:
    """Mappings against the source's columns (asked of the warehouse) and the destination's fields."""
    syncs = SYNCS.of(project)
    if not syncs:
        return []
    problems: list[Problem] = []
    warehouse = _open_readonly(project, problems)
    if problems:
        return problems
    try:
        for sync in syncs.values():
            problems.extend(_check_one(project, sync, warehouse))
    finally:
        if warehouse is not None:
            warehouse.close()
    return problems


def _open_readonly(project: Project, problems: list[Problem]) -> Warehouse | _Locked | None:
    """The warehouse to read the syncs' columns from: None when it does not exist yet, ``_LOCKED`` when the
    running server owns the DuckDB file (column checks are then skipped, not failed)."""
    from ..errors import WarehouseError, WarehouseLocked
    from ..settings import resolve_settings
    from ..warehouse import open_warehouse

    settings = resolve_settings(project)
    if settings.warehouse.type == "duckdb":
        path = Path(settings.warehouse.path)
        if not path.is_absolute():
            path = project.root / path
        if not path.exists():
            return None
    warehouse = open_warehouse(settings.warehouse, project.root, read_only=True)
    if not warehouse.RUNS_SYNCS:
        for sync in SYNCS.of(project).values():
            problems.append(Problem(sync.file, 1, "syncs run on a DuckDB, Postgres, Snowflake or ClickHouse "
                                    f"warehouse; this project's (warehouse.type in opsloop.yml) is "
                                    f"{warehouse.dialect}, where syncs are not supported yet",
                                    "sync from a DuckDB, Postgres, Snowflake or ClickHouse warehouse"))
        return None
    try:
        warehouse.query("SELECT 1")
    except WarehouseLocked:
        return _LOCKED
    except WarehouseError as exc:
        problems.append(Problem("opsloop.yml", None, f"cannot reach the warehouse to check the syncs' sources: "
                                f"{str(exc).splitlines()[0]}", "start the warehouse or fix warehouse: in opsloop.yml"))
        return None
    return warehouse


def _creator(project: Project, cfg: SyncConfig) -> str | None:
    if cfg.table:
        return created_by_first_run(project, str(cfg.table))
    if cfg.model and _model_defined(project, str(cfg.model).rpartition(".")[2]):
        return "opsloop build"
    return None


def _pending(project: Project, cfg: SyncConfig, warehouse: Warehouse) -> list[tuple[str, str]]:
    """(relation, command) for each relation the sync reads that is missing but a first run creates; empty
    when any missing relation is one nothing in the project creates (then it is an error)."""
    if cfg.sql:
        import sqlglot
        from sqlglot import exp

        try:
            tree = sqlglot.parse_one(cfg.sql, read=warehouse.dialect)
        except sqlglot.errors.ParseError:
            return []
        ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
        relations = sorted({".".join(p for p in (t.db, t.name) if p) for t in tree.find_all(exp.Table)
                            if t.name and t.name not in ctes})
    else:
        relations = [str(cfg.table or cfg.model)]
    missing = [r for r in relations if not _exists(warehouse, r)]
    found = [(r, created_by_first_run(project, r) if "." in r or cfg.sql else _creator(project, cfg))
             for r in missing]
    if not found or any(creator is None for _, creator in found):
        return []
    return [(r, str(creator)) for r, creator in found]


def _exists(warehouse: Warehouse, relation: str) -> bool:
    schema, _, name = relation.rpartition(".")
    sql = "SELECT count(*) FROM information_schema.tables WHERE table_name = ?"
    params: tuple[str, ...] = (name.strip('"'),)
    if schema:
        sql += " AND table_schema = ?"
        params += (schema.strip('"'),)
    return bool(warehouse.query(sql, params).rows[0][0])


class _Locked:
    def close(self) -> None:
        pass


_LOCKED = _Locked()


def _check_one(project: Project, sync: LoadedSync, warehouse: Warehouse | _Locked | None) -> list[Problem]:
    from ..destinations import DestinationContext, get_destination
    from ..errors import DeliveryError, TransientDeliveryError, WarehouseError
    from .diff import SyncTables

    problems: list[Problem] = []
    cfg = sync.config
    columns: list[str] | None = None
    src_key = "sql" if cfg.sql else "table" if cfg.table else "model"
    if isinstance(warehouse, _Locked):
        pass
    elif warehouse is not None:
        try:
            columns = SyncTables(warehouse, cfg.name).columns(source_sql(project, sync, warehouse))
        except WarehouseError as exc:
            text = str(exc)
            pending = _pending(project, cfg, warehouse)
            if pending:
                problems.extend(_not_yet(sync, src_key, relation, creator) for relation, creator in pending
                                if not cfg.model)
            elif not (cfg.model and _model_defined(project, cfg.model)):
                problems.append(Problem(sync.file, sync.line(src_key),
                                        text.split(": ", 2)[-1] if text.startswith(sync.file) else
                                        f"cannot read the source: {text.splitlines()[0]}"))
    elif cfg.table or (cfg.model and not _model_defined(project, cfg.model)):
        creator = _creator(project, cfg)
        if creator is not None:
            problems.append(_not_yet(sync, src_key, str(cfg.table or cfg.model), creator))
        else:
            problems.append(Problem(sync.file, sync.line(src_key), "the warehouse does not exist yet, so the "
                                    "source cannot be checked", "load or build data first"))
    if cfg.enforce and "enforce" in cfg.model_fields_set:
        from .enforce import why_not

        reason = why_not(project, sync, columns)
        if reason is not None:
            problems.append(Problem(sync.file, sync.line("enforce"), f"enforce: true cannot apply: {reason}",
                                    "see docs/syncs.md#enforcing-the-hierarchy, or remove enforce:"))
    if columns is not None:
        available = set(columns)
        if cfg.key not in available:
            problems.append(Problem(sync.file, sync.line("key"), f"key column {cfg.key!r} is not in the source",
                                    f"columns: {', '.join(columns)}"))
        for spec in sync.specs:
            missing = [c for c in spec.columns if c not in available]
            if missing:
                problems.append(Problem(sync.file, sync.line("mapping", spec.name),
                                        f"mapping.{spec.name}: no column {', '.join(map(repr, missing))} in the "
                                        "source", f"columns: {', '.join(columns)}"))
    cls = get_destination(str(cfg.destination["type"]))
    from ..channels import ChannelConfigError, channels_of

    ctx = DestinationContext(sync=cfg.name, root=project.root, secret=project.secret,
                             channels_from=lambda: channels_of(project))
    try:
        dest = cls(sync.destination, ctx)
        try:
            declared = dest.declared_fields()
        finally:
            dest.close()
    except TransientDeliveryError as exc:
        # unreachable, timed out, or answering 429/5xx: may be fine where the sync really runs
        problems.append(Problem(sync.file, sync.line("destination"),
                                f"cannot reach the destination to check the mapped fields: {exc}",
                                "the fields are checked when it answers; --strict makes this an error",
                                severity="warning"))
        declared = None
    except DeliveryError as exc:
        problems.append(Problem(sync.file, sync.line("destination"),
                                f"cannot list the destination's fields: {exc}", "check the credentials and URL"))
        declared = None
    except ChannelConfigError as exc:
        problems.append(Problem(sync.file, sync.line("destination"), f"outbound channel: {exc}",
                                "see docs/project.md, \"Outbound channels\""))
        declared = None
    if declared is not None:
        prefixes = tuple(d[:-1] for d in declared if d.endswith(".*"))
        for spec in sync.specs:
            if spec.name not in declared and not (prefixes and spec.name.startswith(prefixes)):
                problems.append(Problem(sync.file, sync.line("mapping", spec.name),
                                        f"{cls.type} has no field {spec.name!r}",
                                        f"fields: {', '.join(sorted(declared)[:30])}"))
    return problems


LOADER = ProjectLoader("syncs", load=load_syncs, validate=check_syncs)
"""What the composition root (``opsloop._subsystems``) lists to load and check this subsystem's files."""
