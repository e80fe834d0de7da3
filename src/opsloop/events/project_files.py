"""``events/*.yml``: the webhook endpoints (path, payload schema, signature, idempotency) of a project."""

from __future__ import annotations

import json

from ..errors import Problem
from ..project.config import EndpointConfig
from ..project.loader import Project, ProjectLoader, validate_model
from ..project.yaml_files import rel_path, yaml_mappings


def load_endpoints(project: Project, problems: list[Problem]) -> None:
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
            from .schemas import check_schema

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


LOADER = ProjectLoader("events", load=load_endpoints)
"""What the composition root (``opsloop._subsystems``) lists to load this subsystem's files."""
