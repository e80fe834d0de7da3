"""Identifier normalisers: in SQL where SQL can do it, in Python once per distinct raw value otherwise.

Phone numbers go through ``phonenumbers`` (E.164, with the identifier's default region) and custom Jinja
templates through a sandboxed Jinja environment. Both run only for raw values not seen before: results are
kept in ``identity.normalized_values`` so later runs look them up with a join.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from .config import IdentifierConfig

E164_RE = r"\+[1-9][0-9]{7,14}"
NANP_REGIONS = ("US", "CA")
NANP_FORMATTED = r"(\+?1[ .\-]?)?\(?[0-9]{3}\)?[ .\-]?[0-9]{3}[ .\-]?[0-9]{4}"
_DIGITS = re.compile(r"[^0-9]")


def is_python(cfg: IdentifierConfig) -> bool:
    """Whether this normaliser runs in Python (phone, Jinja) rather than in SQL."""
    return cfg.normalize == "phone" or "{{" in cfg.normalize


def cache_key(cfg: IdentifierConfig) -> str:
    if cfg.normalize == "phone":
        return f"phone:{cfg.region}"
    return "jinja:" + hashlib.sha1(cfg.normalize.encode()).hexdigest()[:16]  # noqa: S324 - a cache key


def sql_expression(cfg: IdentifierConfig, raw: str = "raw") -> str:
    """SQL that normalises column ``raw`` for the SQL normalisers; for Python ones, the fast path or NULL."""
    kind = cfg.normalize
    if kind == "email":
        return f"lower(trim({raw}))"
    if kind == "lower":
        return f"lower(trim({raw}))"
    if kind == "trim":
        return f"trim({raw})"
    if kind == "digits":
        return f"regexp_replace({raw}, '[^0-9]', '', 'g')"
    if kind == "none":
        return raw
    if kind == "phone":
        # Values already in E.164 need no parsing. In the North American Numbering Plan (default region US or
        # CA) a plain 10-digit number, or 1 + 10 digits, with only separators, is +1 and the digits, exactly as
        # phonenumbers formats it. Everything else is parsed by phonenumbers once and looked up in the cache.
        fast = f"WHEN regexp_full_match({raw}, '{E164_RE}') THEN {raw}"
        if cfg.region in NANP_REGIONS:
            digits = f"regexp_replace({raw}, '[^0-9]', '', 'g')"
            fast += (f" WHEN regexp_full_match({raw}, '{NANP_FORMATTED}') THEN CASE"
                     f" WHEN regexp_full_match({digits}, '[2-9][0-9]{{2}}[2-9][0-9]{{6}}') THEN '+1' || {digits}"
                     f" WHEN regexp_full_match({digits}, '1[2-9][0-9]{{2}}[2-9][0-9]{{6}}') THEN '+' || {digits}"
                     " END")
        return f"CASE {fast} END"
    return "NULL"


def python_normalizer(cfg: IdentifierConfig) -> Callable[[str], str | None]:
    """A Python function doing the same normalisation (used for caches, blocklists and profile lookups)."""
    kind = cfg.normalize
    if kind == "phone":
        import phonenumbers

        region = cfg.region

        def phone(value: str) -> str | None:
            try:
                number = phonenumbers.parse(value, region)
            except phonenumbers.NumberParseException:
                return None
            if not phonenumbers.is_possible_number(number):
                return None
            return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))

        return phone
    if "{{" in kind:
        from jinja2.sandbox import SandboxedEnvironment

        template = SandboxedEnvironment(autoescape=False).from_string(kind)

        def jinja(value: str) -> str | None:
            out = template.render(value=value).strip()
            return out or None

        return jinja
    simple: dict[str, Callable[[str], str]] = {
        "email": lambda v: v.strip().lower(),
        "lower": lambda v: v.strip().lower(),
        "trim": lambda v: v.strip(),
        "digits": lambda v: _DIGITS.sub("", v),
        "none": lambda v: v,
    }
    fn = simple[kind]

    def plain(value: str) -> str | None:
        out = fn(value)
        return out or None

    return plain


def normalize_many(cfg: IdentifierConfig, values: list[object]) -> list[str | None]:
    fn = python_normalizer(cfg)
    return [None if v is None else fn(str(v)) for v in values]
