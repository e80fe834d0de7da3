"""Custom generic tests, as dbt runs them: a schema file's ``- dbt_utils.equality: {compare_model: ref('x')}``
or ``- my_test: {...}`` calls the macro ``test_<name>`` (a ``{% test name(model, ...) %}`` block in
``macros/`` or ``tests/generic/``, the project's or a package's) with ``model`` (the relation under test, or
``(select * ... where <where>) dbt_subquery`` with ``config: {where:}``), ``column_name`` when the test is on
a column, and the test's arguments; the SQL it returns selects the failing rows.

Arguments are passed as dbt passes them: a string that reads as ``ref(...)``, ``source(...)``, ``var(...)``
or ``env_var(...)`` is that call's value, a ``{{ ... }}`` string its value; anything else as written.
A macro's ``config(fail_calc=..., warn_if=..., error_if=...)`` decides the verdict, as in dbt.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING

from ..errors import Problem
from ._config import as_list, opt_str, slug
from .nodes import DataTest

if TYPE_CHECKING:
    from ._render import Renderer
    from .project import ModelProject

_LOOKS_LIKE_CALL = re.compile(r"^\s*(env_var|ref|var|source|doc)\s*\(.+\)\s*$", re.S)
_WHOLE_JINJA = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)


def add_generic_test(mp: ModelProject, rel: str, line: int | None, kind: str, kwargs: dict[str, object],
                     column: str | None, attached: str, owner: str, prefix: str, config: dict[str, object],
                     custom_name: object, problems: list[Problem]) -> None:
    """Record a custom generic test from a schema file (its macro is looked up when the project compiles)."""
    severity = str(config.get("severity", "error")).lower()
    if severity not in ("error", "warn") and "{{" not in severity:  # Jinja is rendered when the project compiles
        problems.append(Problem(rel, line, f"severity must be error or warn, not {severity!r}"))
        return
    if config.get("enabled") is False:
        return
    args = {k: v for k, v in kwargs.items() if k != "column_name"}
    named = {**args, **({"column_name": column} if column else {})}
    name = str(custom_name) if custom_name else _name(prefix + kind.replace(".", "_"), owner, named)
    if name in mp.tests:
        if custom_name:
            other = mp.tests[name]
            problems.append(Problem(rel, line, f"two data tests are named {name!r} (the other is at "
                                    f"{other.file}:{other.line})", "give one of them a name: key"))
            return
        name = f"{name}_{hashlib.md5(f'{rel}:{line}'.encode()).hexdigest()[:8]}"  # noqa: S324 - a name
    test = DataTest(name=name, test="generic", attached=attached, column=column or "",
                    kwargs={**args, "_macro": kind}, file=rel, line=line, severity=severity,
                    where=opt_str(config.get("where")), depends_on={attached}, tags=as_list(config.get("tags")))
    for key in ("fail_calc", "warn_if", "error_if"):
        if config.get(key):
            setattr(test, key, str(config[key]))
    if isinstance(enabled := config.get("enabled"), str) and "{{" in enabled:
        test.kwargs["_enabled"] = enabled  # rendered when the project compiles
    mp.tests[name] = test


def _name(test_type: str, owner: str, args: dict[str, object]) -> str:
    """dbt's test name: ``<namespace>_<test>_<model>_<arguments by name, values joined by __>``."""
    flat: list[object] = []
    for key in sorted(args):
        value = args[key]
        flat.extend(value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple)
                    else [value])
    return f"{test_type}_{owner}_" + "__".join(slug(v) for v in flat)


def resolve_macro(renderer: Renderer, kind: str) -> str | None:
    """The Jinja name that calls the test's macro (``dbt_utils.test_equality``, ``test_my_test``), looked up
    as dbt does: a namespaced test in that package; otherwise the project's own, then the packages'."""
    ns, _, bare = kind.rpartition(".")
    macro = f"test_{bare}"
    known = renderer.package_macros
    if ns:
        return f"{ns}.{macro}" if macro in known.get(ns, set()) else None
    if macro in known.get(renderer.project_name, set()):
        return macro
    for package, names in known.items():
        if package not in ("dbt", renderer.project_name) and macro in names:
            return f"{package}.{macro}"
    return None


def call_text(test: DataTest, callee: str, target: str) -> str:
    """The Jinja that runs the test: ``{{ callee(model=..., column_name=..., **arguments) }}``."""
    model = target
    if test.where:
        model = f"'(select * from ' ~ {target} ~ ' where ' ~ {json.dumps(str(test.where))} ~ ') dbt_subquery'"
    parts = [f"model={model}"]
    if test.column:
        parts.append(f"column_name={json.dumps(test.column)}")
    for key, value in test.kwargs.items():
        if not key.startswith("_") and re.fullmatch(r"[A-Za-z_]\w*", key):
            parts.append(f"{key}={_jinja(value)}")
    return "{{ " + callee + "(" + ", ".join(parts) + ") }}\n"


def _jinja(value: object) -> str:
    """A YAML value as a Jinja expression."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_jinja(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_jinja(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _LOOKS_LIKE_CALL.match(text):
        return "(" + text.strip() + ")"
    whole = _WHOLE_JINJA.match(text)
    if whole and "{{" not in whole.group(1):
        return "(" + whole.group(1).strip() + ")"
    if "{{" in text:  # "week = {{ dbt_date.week_start('d') }}": the text with each expression's value
        pieces = re.split(r"\{\{(.*?)\}\}", text, flags=re.S)
        out = [json.dumps(p) if i % 2 == 0 else f"({p.strip()})" for i, p in enumerate(pieces) if p or i % 2]
        return "(" + " ~ ".join(out) + ")"
    return json.dumps(text)
