"""Jinja rendering of models the way dbt does it: ref, source, config, var, env_var, this, is_incremental,
target — and one clear message with file:line for anything else (an adapter call, a package macro)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..errors import Problem
from ._jinja_builtins import (
    _Api,
    _ask,
    _Flags,
    _fromjson,
    _modules,
    _set,
    _set_strict,
    _Statement,
    _tojson,
)
from ._jinja_macros import (
    DEFAULT_NAMING_MACROS,
    MacroFn,
    Macros,
    _catch_return,
    _LazyMacro,
    _MacroCall,
    _Namespace,
    _PackageMacros,
    _Return,
    _return,
    _sandbox,
    macro_text,
)
from ._jinja_objects import (
    MacroPackage,
    Relation,
    RenderContext,
    _Config,
    _ConfigProxy,
    _Current,
    _Exceptions,
    _Flag,
    _Graph,
    _Model,
    _This,
)
from ._render_errors import RenderError, _line_of_call, _line_of_word, _no_ctx, _strict_undefined, _undefined_name

if TYPE_CHECKING:
    from jinja2 import Template, nodes

    from ._jinja_db import Table

__all__ = ["BUILTIN_NAMES", "DEFAULT_NAMING_MACROS", "UNSUPPORTED_HINTS", "MacroFn", "MacroPackage", "Relation",
           "RenderContext", "RenderError", "Renderer", "macro_text"]


BUILTIN_NAMES = {
    "ref", "source", "config", "var", "env_var", "this", "is_incremental", "target", "execute", "log",
    "exceptions", "return", "run_started_at", "invocation_id", "project_name", "model", "flags",
    "modules", "zip", "tojson", "fromjson", "set", "set_strict", "print", "adapter", "run_query", "statement",
    "load_result", "api", "load_relation", "graph",
    # Jinja's own globals
    "range", "lipsum", "dict", "cycler", "joiner", "namespace", "loop", "caller", "varargs", "kwargs", "super",
    "true", "false", "none", "True", "False", "None",
}
UNSUPPORTED_HINTS: dict[str, str] = {}
"""Names dbt offers that opsloop does not yet, and why (each an error with file:line where it is called)."""


class Renderer:
    """One sandboxed Jinja environment per project, with the project's own macros."""

    def __init__(self, vars_: Mapping[str, object], env: Mapping[str, str], target: Mapping[str, object],
                 macro_sources: list[tuple[str, str]], packages: list[MacroPackage] | None = None,
                 dispatch: Mapping[str, list[str]] | None = None, adapter_type: str = "duckdb") -> None:
        from ._dbt_macros import DBT_MACRO_NAMES, DBT_MACROS

        self._cur = _Current()
        self.jinja = _sandbox()(extensions=["jinja2.ext.do"], undefined=_strict_undefined(self._cur))
        self.vars = dict(vars_)
        self.env = dict(env)
        self.target = dict(target)
        self.macro_sources = [(rel, macro_text(text)) for rel, text in macro_sources]
        self.packages = [MacroPackage(p.name, [(rel, macro_text(text)) for rel, text in p.files])
                         for p in packages or []]
        self.dispatch = {k: list(v) for k, v in (dispatch or {}).items()}
        self.adapter_type = adapter_type
        self.project_name = str(self.target.get("project_name") or "")
        self.macro_names: set[str] = set()
        """Macros callable without a namespace in the project's models (its own and dbt's)."""
        self.package_macros: dict[str, set[str]] = {}
        self._asts: dict[str, nodes.Template] = {}
        self._templates: dict[str, Template] = {}
        self.problems: list[Problem] = []
        self._dbt = [("(dbt's cross-database macros)", DBT_MACROS)]
        self._scope: dict[str, object] | None = None
        self._macros: dict[str, Macros] = {}
        self._scope_lock = threading.Lock()
        self._dbt_lock = threading.Lock()
        self._load_lock = threading.RLock()
        self._lazy = {p.name: _PackageMacros(self, p.name, p.files) for p in self.packages}
        self._dbt_loaded: dict[str, _MacroCall] | None = None
        self.graph: Callable[[], Mapping[str, object]] | None = None
        """dbt's ``graph`` for nodes compiled to run (set by the compiler once it has parsed the project)."""
        self.package_macros["dbt"] = set(DBT_MACRO_NAMES)
        for name, lazy in self._lazy.items():
            self.package_macros[name] = lazy.names
        names = self.package_macros.setdefault(self.project_name, set())
        for rel, text in self.macro_sources:
            names.update(self._macro_names(rel, text))
        self.macro_names = self.package_macros["dbt"] | self.package_macros[self.project_name]

    def _macro_names(self, rel: str, text: str) -> set[str]:
        from jinja2 import nodes

        try:
            ast = self.jinja.parse(text)
        except Exception as exc:
            self.problems.append(Problem(rel, getattr(exc, "lineno", None), f"cannot parse the macro file: {exc}"))
            return set()
        return {macro.name for macro in ast.find_all(nodes.Macro)}

    def search_order(self, namespace: str | None) -> list[str]:
        """Where ``adapter.dispatch(name, namespace)`` looks, in order (as dbt decides it)."""
        if namespace is None:
            return [self.project_name, "dbt"]
        if namespace in self.dispatch:
            return self.dispatch[namespace]
        if any(p.name == namespace for p in self.packages):
            return [self.project_name, namespace]
        return [namespace]

    def macros(self) -> dict[str, Macros]:
        """Every package's macros by name (``dbt``, the installed packages, the project), built once."""
        self._scopes()
        return self._macros

    def _scopes(self) -> dict[str, object]:
        """The project's scope: dbt's context, every package as a namespace, its own macros.

        Built once per project and shared by reference, so a macro finds the others whatever file defines
        them (and a macro defined in a later file)."""
        with self._scope_lock:
            if self._scope is not None:
                return self._scope
            from ._adapter import Adapter

            cur = self._cur
            adapter = Adapter(self)
            base: dict[str, object] = {
                **self.jinja.globals,
                "ref": lambda *a, **k: cur.ctx.ref(*a, **k) if cur.ctx else _no_ctx("ref"),
                "source": lambda *a, **k: cur.ctx.source(*a, **k) if cur.ctx else _no_ctx("source"),
                "this": _This(cur), "config": _ConfigProxy(cur), "execute": _Flag(cur),
                "is_incremental": lambda: bool(cur.ctx and cur.ctx.is_incremental),
                "var": self._var, "env_var": self._env_var, "target": self.target, "log": lambda *a, **k: "",
                "print": lambda *a, **k: "", "exceptions": _Exceptions(), "return": _return,
                "run_started_at": None, "invocation_id": "", "project_name": self.project_name,
                "adapter": adapter, "modules": _modules(), "zip": zip, "tojson": _tojson,
                "fromjson": _fromjson, "set": _set, "set_strict": _set_strict,
                "run_query": self._run_query, "statement": _Statement(cur), "load_result": self._load_result,
                "api": _Api(self), "flags": _Flags(), "load_relation": adapter.load_relation,
                "graph": _Graph(self), "model": _Model(cur),
            }
            # One scope, as when dbt renders the project's nodes: dbt's macros and the project's own are
            # global; a package's macros are reached through its namespace (dbt_utils.x), not by bare name.
            root = dict(base)
            dbt_macros = {name: _LazyMacro(self, name) for name in self.package_macros["dbt"]}
            root.update(dbt_macros)
            self._macros = {"dbt": dbt_macros}
            namespaces = {"dbt": _Namespace("dbt", dbt_macros)}
            for name, lazy in self._lazy.items():
                self._macros[name] = lazy
                namespaces[name] = _Namespace(name, lazy)
            self._macros[self.project_name] = self._load(root, self.macro_sources)
            namespaces.setdefault(self.project_name, _Namespace(self.project_name, self._macros[self.project_name]))
            for name, ns in namespaces.items():
                root.setdefault(name, ns)
            self._scope = root
            return root

    def _dbt_macros(self) -> dict[str, _MacroCall]:
        with self._dbt_lock:
            if self._dbt_loaded is None:
                self._dbt_loaded = self._load(self._scopes(), self._dbt, export=False, owner="dbt")
            return self._dbt_loaded

    def _load(self, scope: dict[str, object], files: list[tuple[str, str]], export: bool = True,
              owner: str = "") -> dict[str, _MacroCall]:
        found: dict[str, _MacroCall] = {}
        for rel, text in files:
            try:
                tpl = self.template(text)
                context = tpl.new_context(scope, shared=True)
                for _ in tpl.root_render_func(context):  # defines the file's macros (private ones too)
                    pass
            except Exception as exc:  # reported by _macro_names when it does not parse
                if not any(p.file == rel for p in self.problems):
                    self.problems.append(Problem(rel, getattr(exc, "lineno", None), f"cannot load the macro file: "
                                                 f"{exc}"))
                continue
            from jinja2.runtime import Macro

            for name, value in context.vars.items():
                if isinstance(value, Macro):
                    _catch_return(value)
                    found[name] = _MacroCall(value, f"{owner}.{name}" if owner else name, self._cur)
                    if export:
                        scope[name] = found[name]
        return found

    # -- static checks -------------------------------------------------------------------------
    def parse(self, text: str) -> nodes.Template:
        """The Jinja AST of a model (cached by text: a model is parsed once per process)."""
        ast = self._asts.get(text)
        if ast is None:
            ast = self._asts[text] = self.jinja.parse(text)
        return ast

    def template(self, text: str) -> Template:
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

        from ._adapter import ADAPTER_METHODS

        try:
            ast = self.parse(text)
        except TemplateSyntaxError as exc:
            return [Problem(file, exc.lineno, f"Jinja syntax error: {exc.message}")]
        def names(target: nodes.Node) -> set[str]:  # the target itself when it is one name ({% set cols = [] %})
            found = {n.name for n in target.find_all(nodes.Name)}
            return found | {target.name} if isinstance(target, nodes.Name) else found

        local = {m.name for m in ast.find_all(nodes.Macro)}
        assigns: list[nodes.Assign | nodes.AssignBlock | nodes.For] = [
            *ast.find_all(nodes.Assign), *ast.find_all(nodes.AssignBlock), *ast.find_all(nodes.For)]
        for assign in assigns:
            local |= names(assign.target)
        for macro in ast.find_all(nodes.Macro):
            local.update(a.name for a in macro.args)
        known = BUILTIN_NAMES | self.macro_names | local
        problems: list[Problem] = []
        for call in ast.find_all(nodes.Call):
            root = call.node
            dotted = []
            while isinstance(root, nodes.Getattr):
                dotted.append(root.attr)
                root = root.node
            if not isinstance(root, nodes.Name):
                continue
            full = ".".join([root.name, *reversed(dotted)])
            if root.name in self.package_macros and root.name not in local:
                if len(dotted) == 1 and dotted[0] not in self.package_macros[root.name]:
                    problems.append(Problem(file, call.lineno, f"macro {full}() does not exist in the "
                                            f"{root.name} package", "check the name against its macros"))
                continue
            if root.name == "adapter" and "adapter" not in local and not (len(dotted) == 1
                                                                           and dotted[0] in ADAPTER_METHODS):
                problems.append(Problem(file, call.lineno, f"unsupported macro {full}(): adapter calls run "
                                        "against dbt internals", "see docs/models.md for what opsloop supports; "
                                        "inline the SQL instead"))
                continue
            if dotted and root.name not in known:
                problems.append(Problem(file, call.lineno, f"unsupported macro {full}(): {root.name} is not an "
                                        "installed package", "list it in packages.yml and run `opsloop deps` "
                                        "(or `dbt deps`)"))
                continue
            if root.name in UNSUPPORTED_HINTS or root.name not in known:
                why = UNSUPPORTED_HINTS.get(root.name, "it is not a macro opsloop knows (no such macro in macros/)")
                problems.append(Problem(file, call.lineno, f"unsupported macro {full}(): {why}",
                                        "see docs/models.md for what opsloop supports; inline the SQL instead"))
        return problems

    # -- rendering ------------------------------------------------------------------------------
    def render(self, file: str, text: str, ctx: RenderContext) -> tuple[str, dict[str, object]]:
        """The SQL text and the config() values the model set."""
        from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError

        config = _Config(ctx.config)
        cur = self._cur
        saved = cur.ctx, cur.config
        cur.ctx, cur.config = ctx, config
        cur.depth, cur.outer = 0, ""
        try:
            glob = dict(self._scopes())  # one copy; the context then shares it (render() would copy it again)
            glob.update(ref=ctx.ref, source=ctx.source, config=config, this=ctx.this,
                        is_incremental=lambda: ctx.is_incremental, **ctx.extra)
            tpl = self.template(text)
            sql = "".join(tpl.root_render_func(tpl.new_context(glob, shared=True)))
        except RenderError as exc:
            line = exc.line or _line_of_call(text, str(exc))
            message = str(exc)
            if line is None and cur.outer:  # raised inside a macro: the line that called it, and which one
                line = _line_of_word(text, cur.outer.rsplit(".", 1)[-1])
                message = f"{message} (in {cur.outer})"
            if line is None:  # "run_query: ...", "adapter.get_relation: ...": the line that calls it
                line = _line_of_word(text, message.split(":", 1)[0].rsplit(".", 1)[-1].strip())
            raise RenderError(message, line, exc.hint) from exc
        except _Return as ret:
            sql = str(ret.value)
        except TemplateSyntaxError as exc:
            raise RenderError(f"Jinja syntax error: {exc.message}", exc.lineno) from exc
        except UndefinedError as exc:
            name = _undefined_name(str(exc))
            if cur.depth or (cur.outer and not name):  # inside a macro (a package's): name the call
                raise RenderError(f"{exc.message} (in {cur.outer})", _line_of_word(text, cur.outer.rsplit(".")[-1]),
                                  "opsloop does not support everything this macro needs yet; see docs/models.md") \
                    from exc
            raise RenderError(f"{exc.message}", _line_of_word(text, name),
                              "define it with {% set %}, or add it under vars: in dbt_project.yml") from exc
        except TemplateError as exc:
            raise RenderError(f"template error: {exc}", None) from exc
        finally:
            cur.ctx, cur.config = saved
        return sql, config.captured

    def call(self, name: str, args: tuple[object, ...], ctx: RenderContext) -> str:
        """Call one of the project's macros (``generate_schema_name(custom, node)``); its output, stripped."""
        from jinja2 import TemplateError

        cur = self._cur
        saved = cur.ctx, cur.config
        cur.ctx, cur.config = ctx, _Config(ctx.config)
        try:
            macro = self._scopes()[name]
            if not callable(macro):
                raise RenderError(f"{name} is not a macro")
            return str(macro(*args)).strip()
        except RenderError:
            raise
        except TemplateError as exc:
            raise RenderError(f"macro {name}: {exc}") from exc
        finally:
            cur.ctx, cur.config = saved

    def relation(self, schema: str, name: str, database: object = None, kind: object = None) -> Relation:
        """A relation object as ``ref()`` returns it, quoted for the project's dialect."""
        from ..warehouse.sql import relation as rel_text

        return Relation(schema, name, rel_text(schema, name, self.adapter_type), str(database) if database else None)

    def _run_query(self, sql: object) -> Table | None:
        """dbt's ``run_query(sql)``: a table of the rows (None while parsing, as in dbt)."""
        from ._jinja_db import Table

        ctx = self._cur.ctx
        if ctx is None or not ctx.execute:
            return None
        found = _ask(ctx, "run_query", str(sql).strip().rstrip(";"))
        return Table(list(found.columns), list(found.rows))

    def _load_result(self, name: str) -> dict[str, object] | None:
        ctx = self._cur.ctx
        if ctx is None or not ctx.execute or ctx.statements is None:
            return None
        return ctx.statements.load(name)

    def _var(self, name: str, default: object = _Config) -> object:
        if name in self.vars:
            return self.vars[name]
        if default is not _Config:
            return default
        raise RenderError(f"var {name!r} is not defined", hint="add it under vars: in dbt_project.yml or opsloop.yml")

    def _env_var(self, name: str, default: object = None) -> object:
        if name in self.env:
            return self.env[name]
        if default is not None:
            return default
        raise RenderError(f"env_var {name!r} is not set and has no default",
                          hint=f"set {name} in the environment or .env, or pass a default")
