"""Jinja (sandboxed) for workflow values and match expressions: ``{{ event.data.email }}``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.environment import TemplateExpression
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
_SINGLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


class Attr(dict[str, object]):
    """A dict whose keys read as attributes in Jinja and Python alike (``event.data.email``)."""

    def __getattr__(self, name: str) -> object:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def wrap(value: object) -> object:
    if isinstance(value, dict) and not isinstance(value, Attr):
        return Attr({k: wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value


def unwrap(value: object) -> object:
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [unwrap(v) for v in value]
    return value


@lru_cache(maxsize=4096)
def _template(text: str) -> Template:
    return _ENV.from_string(text)


@lru_cache(maxsize=4096)
def _expression(text: str) -> TemplateExpression:
    return _ENV.compile_expression(strip_braces(text), undefined_to_none=True)


def strip_braces(text: str) -> str:
    """``"{{ a == b }}"`` and ``"a == b"`` are the same expression."""
    match = _SINGLE.match(text)
    return match.group(1).strip() if match else text.strip()


def render(value: object, context: Mapping[str, object]) -> object:
    """Render every string inside ``value``; a string that is one ``{{ expr }}`` keeps its type."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        match = _SINGLE.match(value)
        if match and "{{" not in match.group(1) and "}}" not in match.group(1):
            return unwrap(_expression(match.group(1).strip())(**context))
        return _template(value).render(**context)
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def evaluate(expression: str, context: Mapping[str, object]) -> object:
    """The value of a Jinja expression (``event.data.email == trigger.data.email``)."""
    return unwrap(_expression(expression)(**context))


def truthy(value: object) -> bool:
    """Whether an evaluated condition holds (the strings "false", "0", "none" do not)."""
    return bool(value) and value not in ("false", "False", "0", "none", "None")


def check(text: str, is_expression: bool) -> str | None:
    """None when ``text`` parses, else the syntax error's message."""
    try:
        if is_expression:
            _ENV.parse("{{ " + strip_braces(text) + " }}")
        else:
            _ENV.parse(text)
    except TemplateSyntaxError as exc:
        return exc.message or str(exc)
    return None


def step_refs(text: str, is_expression: bool = False) -> set[str]:
    """Names used as ``steps.<name>`` (or ``steps['name']``) in a template or expression."""
    try:
        tree = _ENV.parse("{{ " + strip_braces(text) + " }}" if is_expression else text)
    except TemplateSyntaxError:
        return set()
    found: set[str] = set()
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "steps":
            found.add(node.attr)
    for item in tree.find_all(nodes.Getitem):
        if isinstance(item.node, nodes.Name) and item.node.name == "steps" and isinstance(item.arg, nodes.Const):
            found.add(str(item.arg.value))
    return found


def strings_in(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []
