"""Reading dbt config values: a node's config is ``dict[str, object]`` (from YAML, dbt_project.yml and the
model's own ``config(...)`` call, so a value may be anything); these narrow one value to what the caller
needs, the way dbt reads it."""

from __future__ import annotations

import re
from collections.abc import Iterable


def as_list(value: object) -> list[str]:
    """``tags: x`` or ``tags: [x, y]`` (also ``unique_key``, ``*-paths``) as a list of strings."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Iterable):
        return [str(value)]
    return [str(v) for v in value]


def slug(value: object) -> str:
    """``value`` as a part of a name: every run of other characters than letters, digits and _ is one _."""
    return re.sub(r"[^0-9a-zA-Z_]+", "_", str(value))


def opt_str(value: object) -> str | None:
    """A config value that is text when set (``where``); None stays None."""
    return None if value is None else str(value)
