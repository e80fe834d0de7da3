"""Jinja rendering of models the way dbt does it: ref, source, config, var, env_var, this, is_incremental,
target — and one clear message with file:line for anything else (an adapter call, a package macro)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import Problem

BUILTIN_NAMES = {
    "ref", "source", "config", "var", "env_var", "this", "is_incremental", "target", "execute", "log",
    "exceptions", "return", "run_started_at", "invocation_id", "project_name", "model", "flags",
    # Jinja's own globals
    "range", "lipsum", "dict", "cycler", "joiner", "namespace", "loop", "caller", "varargs", "kwargs", "super",
    "true", "false", "none", "True", "False", "None",
}
UNSUPPORTED_HINTS = {
    "adapter": "adapter calls run against dbt internals",
    "run_query": "run_query executes SQL at compile time",
    "statement": "statement blocks execute SQL at compile time",
    "load_result": "statement results are not available",
    "dbt_utils": "dbt packages are not installed in opsloop",
    "dbt": "dbt's internal macros are not available",
    "graph": "the dbt graph object is not available",
}


_TEST_BLOCK = re.compile(r"{%(-?)\s*test\s+(\w+)\s*\(")
_END_TEST = re.compile(r"{%(-?)\s*endtest\s*(-?)%}")
_MATERIALIZATION = re.compile(r"{%-?\s*materialization\b.*?{%-?\s*endmaterialization\s*-?%}", re.S)
DEFAULT_NAMING_MACROS = """
{% macro default__generate_schema_name(custom_schema_name, node) -%}
  {%- if custom_schema_name is none -%}{{ target.schema }}
  {%- else -%}{{ target.schema }}_{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
{% macro default__generate_alias_name(custom_alias_name=none, node=none) -%}
  {%- if custom_alias_name -%}{{ custom_alias_name | trim }}{%- else -%}{{ node.name }}{%- endif -%}
{%- endmacro %}
{% macro default__generate_database_name(custom_database_name=none, node=none) -%}
  {%- if custom_database_name is none -%}{{ target.database }}{%- else -%}{{ custom_database_name | trim }}{%- endif -%}
{%- endmacro %}
{% macro generate_schema_name_for_env(custom_schema_name, node) -%}
  {%- if target.name == 'prod' and custom_schema_name is not none -%}{{ custom_schema_name | trim }}
  {%- else -%}{{ target.schema }}{%- endif -%}
{%- endmacro %}
"""
"""dbt's built-in naming macros, added when a project overrides one (its override may call them)."""


def macro_text(text: str) -> str:
    """A macro file as Jinja reads it: ``{% test x(...) %}`` is ``{% macro test_x(...) %}`` (as in dbt), and
    custom materialization blocks are blanked out, keeping the line numbers (a model using one is refused)."""
    text = _TEST_BLOCK.sub(lambda m: "{%" + m.group(1) + " macro test_" + m.group(2) + "(", text)
    text = _END_TEST.sub(lambda m: "{%" + m.group(1) + " endmacro " + m.group(2) + "%}", text)
    return _MATERIALIZATION.sub(lambda m: "\n" * m.group(0).count("\n"), text)


class RenderError(Exception):
    def __init__(self, message: str, line: int | None = None, hint: str = "") -> None:
        super().__init__(message)
        self.line = line
        self.hint = hint


@dataclass
class Relation:
    """What ``ref()``/``source()``/``this`` return: prints as the quoted relation name."""

    schema: str
    identifier: str
    text: str
    database: str | None = None

    @property
    def name(self) -> str:
        return self.identifier

    @property
    def table(self) -> str:
        return self.identifier

    def __str__(self) -> str:
        return self.text

    def __html__(self) -> str:
        return self.text


class _Config:
    """``config(...)`` in a model; ``config.get(key, default)`` reads the resolved config."""

    def __init__(self, resolved: dict[str, Any]) -> None:
        self.captured: dict[str, Any] = {}
        self.resolved = resolved

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        if args and isinstance(args[0], dict):
            self.captured.update(args[0])
        self.captured.update(kwargs)
        return ""

    def get(self, key: str, default: Any = None) -> Any:
        return self.captured.get(key, self.resolved.get(key, default))

    def require(self, key: str) -> Any:
        if key not in self.captured and key not in self.resolved:
            raise RenderError(f"config {key!r} is required here but not set")
        return self.get(key)


class _Exceptions:
    @staticmethod
    def raise_compiler_error(message: str) -> None:
        raise RenderError(str(message))

    @staticmethod
    def warn(message: str) -> str:
        return ""


@dataclass
class RenderContext:
    ref: Callable[..., Any]
    source: Callable[..., Any]
    this: Relation | None
    is_incremental: bool
    config: dict[str, Any] = field(default_factory=dict)


class Renderer:
    """One sandboxed Jinja environment per project, with the project's own macros."""

    def __init__(self, vars_: Mapping[str, Any], env: Mapping[str, str], target: Mapping[str, Any],
                 macro_sources: list[tuple[str, str]]) -> None:
        from jinja2.sandbox import SandboxedEnvironment

        self.jinja = SandboxedEnvironment(extensions=["jinja2.ext.do"], undefined=_strict_undefined())
        self.vars = dict(vars_)
        self.env = dict(env)
        self.target = dict(target)
        self.macro_sources = [(rel, macro_text(text)) for rel, text in macro_sources]
        self.macro_names: set[str] = set()
        self._asts: dict[str, Any] = {}
        self._templates: dict[str, Any] = {}
        self.problems: list[Problem] = []
        for rel, text in self.macro_sources:
            try:
                ast = self.jinja.parse(text)
            except Exception as exc:
                self.problems.append(Problem(rel, getattr(exc, "lineno", None), f"cannot parse the macro file: {exc}"))
                continue
            from jinja2 import nodes

            for macro in ast.find_all(nodes.Macro):
                self.macro_names.add(macro.name)

    # -- static checks -------------------------------------------------------------------------
    def parse(self, text: str) -> Any:
        """The Jinja AST of a model (cached by text: a model is parsed once per process)."""
        ast = self._asts.get(text)
        if ast is None:
            ast = self._asts[text] = self.jinja.parse(text)
        return ast

    def template(self, text: str) -> Any:
        """The compiled template (cached by text)."""
        tpl = self._templates.get(text)
        if tpl is None:
            tpl = self._templates[text] = self.jinja.from_string(text)
        return tpl

    def ref_lines(self, text: str) -> list[tuple[str, tuple[str, ...], int]]:
        """Every literal ``ref(...)`` / ``source(...)`` call: (function, args, line)."""
        from jinja2 import nodes

        try:
            ast = self.parse(text)
        except Exception:
            return []
        out = []
        for call in ast.find_all(nodes.Call):
            if isinstance(call.node, nodes.Name) and call.node.name in ("ref", "source"):
                args = tuple(str(a.value) for a in call.args if isinstance(a, nodes.Const))
                out.append((call.node.name, args, call.lineno))
        return out

    def check(self, file: str, text: str) -> list[Problem]:
        """Syntax errors and calls opsloop cannot run, with the line of each."""
        from jinja2 import TemplateSyntaxError, nodes

        try:
            ast = self.parse(text)
        except TemplateSyntaxError as exc:
            return [Problem(file, exc.lineno, f"Jinja syntax error: {exc.message}")]
        local = {m.name for m in ast.find_all(nodes.Macro)}
        for assign in ast.find_all(nodes.Assign):
            local.update(n.name for n in assign.target.find_all(nodes.Name))
        for block in ast.find_all(nodes.AssignBlock):
            local.update(n.name for n in block.target.find_all(nodes.Name))
        for loop in ast.find_all(nodes.For):
            local.update(n.name for n in loop.target.find_all(nodes.Name))
        for macro in ast.find_all(nodes.Macro):
            local.update(a.name for a in macro.args)
        known = BUILTIN_NAMES | self.macro_names | local
        problems: list[Problem] = []
        for call in ast.find_all(nodes.Call):
            root: Any = call.node
            dotted = []
            while isinstance(root, nodes.Getattr):
                dotted.append(root.attr)
                root = root.node
            if not isinstance(root, nodes.Name):
                continue
            full = ".".join([root.name, *reversed(dotted)])
            if root.name in UNSUPPORTED_HINTS or root.name not in known:
                why = UNSUPPORTED_HINTS.get(root.name, "it is not a macro opsloop knows (no such macro in macros/)")
                problems.append(Problem(file, call.lineno, f"unsupported macro {full}(): {why}",
                                        "see docs/models.md for what opsloop supports; inline the SQL instead"))
        for call_block in ast.find_all(nodes.CallBlock):
            if isinstance(call_block.call.node, nodes.Name) and call_block.call.node.name == "statement":
                problems.append(Problem(file, call_block.lineno, "unsupported {% call statement %} block",
                                        "opsloop does not run SQL at compile time"))
        return problems

    # -- rendering ------------------------------------------------------------------------------
    def render(self, file: str, text: str, ctx: RenderContext) -> tuple[str, dict[str, Any]]:
        """The SQL text and the config() values the model set."""
        from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError

        try:
            glob, config = self._globals(ctx)
            sql = self.template(text).render(glob)
        except RenderError as exc:
            raise RenderError(str(exc), exc.line or _line_of_call(text, str(exc)), exc.hint) from exc
        except TemplateSyntaxError as exc:
            raise RenderError(f"Jinja syntax error: {exc.message}", exc.lineno) from exc
        except UndefinedError as exc:
            name = _undefined_name(str(exc))
            raise RenderError(f"{exc.message}", _line_of_word(text, name),
                              "define it with {% set %}, or add it under vars: in dbt_project.yml") from exc
        except TemplateError as exc:
            raise RenderError(f"template error: {exc}", None) from exc
        return sql, config.captured

    def call(self, name: str, args: tuple[Any, ...], ctx: RenderContext) -> str:
        """Call one of the project's macros (``generate_schema_name(custom, node)``); its output, stripped."""
        from jinja2 import TemplateError

        try:
            glob, _ = self._globals(ctx)
            return str(glob[name](*args)).strip()
        except RenderError:
            raise
        except TemplateError as exc:
            raise RenderError(f"macro {name}: {exc}") from exc

    def _globals(self, ctx: RenderContext) -> tuple[dict[str, Any], _Config]:
        config = _Config(ctx.config)
        glob: dict[str, Any] = {
            "ref": ctx.ref, "source": ctx.source, "config": config, "var": self._var, "env_var": self._env_var,
            "this": ctx.this, "is_incremental": lambda: ctx.is_incremental, "target": self.target,
            "execute": True, "log": lambda *a, **k: "", "exceptions": _Exceptions(),
            "run_started_at": None, "invocation_id": "", "project_name": self.target.get("project_name", ""),
        }
        for _rel, source_text in self.macro_sources:
            module = self.template(source_text).make_module(glob)
            for name in dir(module):
                if not name.startswith("_"):
                    glob[name] = getattr(module, name)
        return glob, config

    def _var(self, name: str, default: Any = _Config) -> Any:
        if name in self.vars:
            return self.vars[name]
        if default is not _Config:
            return default
        raise RenderError(f"var {name!r} is not defined", hint="add it under vars: in dbt_project.yml or opsloop.yml")

    def _env_var(self, name: str, default: Any = None) -> Any:
        if name in self.env:
            return self.env[name]
        if default is not None:
            return default
        raise RenderError(f"env_var {name!r} is not set and has no default",
                          hint=f"set {name} in the environment or .env, or pass a default")


def _strict_undefined() -> Any:
    from jinja2 import StrictUndefined

    return StrictUndefined


def _undefined_name(message: str) -> str:
    import re

    match = re.search(r"'([^']+)' is undefined", message)
    return match.group(1) if match else ""


def _line_of_word(text: str, word: str) -> int | None:
    if not word:
        return None
    import re

    pattern = re.compile(r"\b" + re.escape(word) + r"\b")
    for i, line in enumerate(text.splitlines(), 1):
        if pattern.search(line):
            return i
    return None


def _line_of_call(text: str, message: str) -> int | None:
    import re

    match = re.search(r"'([^']+)'", message)
    return _line_of_word(text, match.group(1)) if match else None
