"""dbt macros in opsloop's templates: macro files as Jinja reads them (``macro_text``, dbt's built-in naming
macros), and how a macro is called: ``return()`` as control flow, the wrappers that remember the outermost
macro for messages (``_MacroCall``) or compile dbt's own macros on first use (``_LazyMacro``), a package's
lazily compiled files (``_PackageMacros``), the ``dbt_utils.x`` namespaces, and the sandbox that lets
packages call their private macros."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NoReturn, Protocol

from ._render_errors import RenderError

if TYPE_CHECKING:
    from jinja2.runtime import Macro
    from jinja2.sandbox import SandboxedEnvironment

    from ._jinja_objects import _Current
    from ._render import Renderer


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


class _Return(Exception):  # dbt's return() is control flow, not an error
    def __init__(self, value: object) -> None:
        self.value = value


def _return(value: object = None) -> NoReturn:
    raise _Return(value)


class _MacroCall:
    """A macro as dbt calls it: ``{{ return(x) }}`` inside makes the call's value x. The outermost call
    is remembered, so an error deep inside a package names the model's line that called it."""

    __slots__ = ("cur", "macro", "name")

    def __init__(self, macro: Macro, name: str, cur: _Current) -> None:
        self.macro = macro
        self.name = name
        self.cur = cur

    def __call__(self, *args: object, **kwargs: object) -> object:
        cur = self.cur
        if cur.depth == 0:
            cur.outer = self.name
        cur.depth += 1
        try:
            return self.macro(*args, **kwargs)
        except _Return as ret:
            return ret.value
        finally:
            cur.depth -= 1


def _catch_return(macro: Macro) -> None:
    """Make ``{{ return(x) }}`` end this macro even when a macro of the same file calls it directly (that
    call reaches Jinja's Macro, not the _MacroCall wrapper): ``get_x()[0]`` then indexes x."""
    inner = macro._func
    if getattr(inner, "_catches_return", False):
        return

    def func(*args: object) -> object:
        try:
            return inner(*args)
        except _Return as ret:
            return ret.value

    func._catches_return = True  # type: ignore[attr-defined]
    macro._func = func  # type: ignore[assignment]  # Jinja says str; a dbt return() hands back any value


class _LazyMacro:
    """One of dbt's macros, compiled with the others on the first call (most builds never call one)."""

    __slots__ = ("name", "renderer")

    def __init__(self, renderer: Renderer, name: str) -> None:
        self.renderer = renderer
        self.name = name

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self.renderer._dbt_macros()[self.name](*args, **kwargs)


_MACRO_DEF = re.compile(r"{%-?\s*macro\s+(\w+)\s*\(")

MacroFn = _MacroCall | _LazyMacro
"""A macro as a template calls it."""


class Macros(Protocol):
    """One package's macros by name: a dict, or a package's lazily compiled files."""

    def get(self, name: str, /) -> MacroFn | None: ...

    def __getitem__(self, name: str, /) -> MacroFn: ...


class _PackageMacros:
    """A package's macros, each file compiled the first time one of its macros is asked for: a project
    calling two dbt_utils macros compiles two files, not the package's fifty."""

    def __init__(self, renderer: Renderer, owner: str, files: list[tuple[str, str]]) -> None:
        self._r = renderer
        self._owner = owner
        self._files = files
        self._where: dict[str, int] = {}
        for i, (_rel, text) in enumerate(files):
            for name in _MACRO_DEF.findall(text):
                self._where.setdefault(name, i)
        self._loaded: dict[str, _MacroCall] = {}
        self._done: set[int] = set()

    @property
    def names(self) -> set[str]:
        return set(self._where)

    def get(self, name: str, /) -> _MacroCall | None:
        hit = self._loaded.get(name)
        if hit is None and name in self._where:
            with self._r._load_lock:
                index = self._where[name]
                if index not in self._done:
                    self._done.add(index)
                    self._loaded.update(self._r._load(self._r._scopes(), [self._files[index]], export=False,
                                                      owner=self._owner))
            hit = self._loaded.get(name)
        return hit

    def __getitem__(self, name: str, /) -> _MacroCall:
        hit = self.get(name)
        if hit is None:
            raise KeyError(name)
        return hit


class _Namespace:
    """``dbt_utils.star(...)``, ``dbt.concat(...)``: one package's macros as attributes."""

    def __init__(self, name: str, macros: Macros) -> None:
        self.__package = name  # name-mangled: a macro may be called _name or _macros (dbt_utils._is_relation)
        self.__macros = macros

    def __getattr__(self, item: str) -> MacroFn:
        if item.startswith("__"):
            raise AttributeError(item)
        try:
            return self.__macros[item]
        except KeyError:
            raise RenderError(f"macro {self.__package}.{item} does not exist",
                              hint=f"check the name against the {self.__package} package's macros") from None


def _sandbox() -> type[SandboxedEnvironment]:
    from jinja2.sandbox import SandboxedEnvironment

    class Sandbox(SandboxedEnvironment):
        """Jinja's sandbox, letting packages call their private macros (``dbt_utils._is_relation``)."""

        def is_safe_attribute(self, obj: object, attr: str, value: object) -> bool:
            if isinstance(obj, _Namespace) and not attr.startswith("__"):
                return True
            return bool(super().is_safe_attribute(obj, attr, value))

    return Sandbox
