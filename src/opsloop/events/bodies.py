"""What the event log can carry: a webhook body parsed as strict RFC 8259 JSON, within stated limits.

Python's ``json`` is lenient where every consumer behind the log is not: it reads ``NaN`` and
``Infinity``, makes ``1e999`` an infinite float, keeps lone surrogate escapes (``"\\ud800"``) that no
UTF-8 encoder will write back, guesses UTF-16/UTF-32 from bytes, and recurses once per nesting level.
``parse_body`` refuses each of these with a ``BodyRefused`` whose message says what is wrong and where,
so the inbox answers 400 at the door instead of a consumer failing later.

A leading UTF-8 byte order mark is ignored (RFC 8259 section 8.1 allows a parser to), the rest of the
body is parsed as it came.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from .._json import JsonValue

BOM = b"\xef\xbb\xbf"
DEFAULT_MAX_DEPTH = 64
MAX_DEPTH_LIMIT = 128
"""The highest ``max_depth`` an endpoint may set (deeper payloads would recurse past Python's stack
in the template engine and the JSON encoder)."""

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_NUL_ESCAPE = "\\u0000"


class BodyRefused(ValueError):
    """The body is not JSON the log can carry; ``str(exc)`` is the reason given to the sender."""


@dataclass
class Parsed:
    payload: JsonValue
    text: str
    """The JSON text as parsed (the body without a leading BOM)."""


def _refuse_constant(name: str) -> NoReturn:
    raise BodyRefused(f"{name} is not a JSON number (RFC 8259 section 6); send it as a string or null")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise BodyRefused(f"the number {_short(text)} is out of range for a 64-bit float; send it as a string")
    return value


# one decoder, made once (json.loads with hooks builds a new one per call); the float hook runs only for
# numbers with a fraction or an exponent, the constant hook only for NaN and the infinities
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_parse_float)
_INT_DIGITS = re.compile(r"value has (\d+) digits")


def _short(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}...{text[-6:]}"


def _encoding_hint(body: bytes) -> str:
    if body[:2] in (b"\xff\xfe", b"\xfe\xff") or body[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00"):
        return " (it starts with a UTF-16/UTF-32 byte order mark)"
    if b"\x00" in body[:64]:
        return " (it holds NUL bytes, as UTF-16 or UTF-32 text does)"
    return ""


def parse_body(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Parsed:
    """``body`` as strict JSON, or ``BodyRefused`` saying why not."""
    raw = body[len(BOM):] if body.startswith(BOM) else body
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyRefused(
            f"the body is not UTF-8{_encoding_hint(raw)}: byte {exc.start} is invalid; JSON must be sent as UTF-8 "
            "(RFC 8259 section 8.1)"
        ) from None
    if "\x00" in text:
        raise BodyRefused(f"the body is not UTF-8 JSON{_encoding_hint(raw)}: it holds NUL characters")
    try:
        payload: JsonValue = _DECODER.decode(text)
    except BodyRefused:
        raise
    except RecursionError:
        raise BodyRefused(f"the payload is nested deeper than this endpoint's limit of {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise BodyRefused(f"malformed JSON: {exc}") from None
    except ValueError as exc:  # int() past its digit limit (sys.get_int_max_str_digits), and the like
        digits = _INT_DIGITS.search(str(exc))
        if digits:
            raise BodyRefused(f"an integer has {digits.group(1)} digits, more than the {sys.get_int_max_str_digits()} "
                              "a consumer can read back; send it as a string") from None
        raise BodyRefused(f"malformed JSON: {exc}") from None
    if text.count("[") + text.count("{") > max_depth:  # cheap bound; walk only when it could be too deep
        depth = _depth(payload)
        if depth > max_depth:
            raise BodyRefused(
                f"the payload is nested {depth} levels deep, deeper than this endpoint's limit of {max_depth} "
                "(max_depth in its events/*.yml)"
            )
    if _SURROGATE_ESCAPE.search(text):
        where = _lone_surrogate(payload)
        if where is not None:
            raise BodyRefused(
                f"the string at {where or '/'} holds a lone UTF-16 surrogate escape (a character cut in half); "
                "it cannot be stored as UTF-8 (RFC 8259 section 8.2)"
            )
    if _NUL_ESCAPE in text:  # digits only: no upper-case spelling
        where = _nul_string(payload)
        if where is not None:
            raise BodyRefused(f"the string at {where or '/'} holds \\u0000, which the warehouse cannot store")
    return Parsed(payload, text)


def _children(node: JsonValue, pointer: str) -> list[tuple[JsonValue, str]]:
    if isinstance(node, dict):
        return [(v, f"{pointer}/{_escape(k)}") for k, v in node.items()] + [(k, f"{pointer}/{_escape(k)} (key)")
                                                                           for k in node]
    if isinstance(node, list):
        return [(v, f"{pointer}/{i}") for i, v in enumerate(node)]
    return []


def _escape(key: str) -> str:
    return key.encode("utf-8", "backslashreplace").decode().replace("~", "~0").replace("/", "~1")


def _depth(payload: JsonValue) -> int:
    deepest = 0
    stack: list[tuple[JsonValue, int]] = [(payload, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _find_string(payload: JsonValue, bad: Callable[[str], bool]) -> str | None:
    """The JSON pointer of the first string (value or key) for which ``bad`` holds."""
    stack: list[tuple[JsonValue, str]] = [(payload, "")]
    while stack:
        node, pointer = stack.pop()
        if isinstance(node, str):
            if bad(node):
                return pointer
        else:
            stack.extend(reversed(_children(node, pointer)))
    return None


def _is_unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _lone_surrogate(payload: JsonValue) -> str | None:
    return _find_string(payload, _is_unencodable)


def _nul_string(payload: JsonValue) -> str | None:
    return _find_string(payload, lambda s: "\x00" in s)
