"""``.env`` files and ``${VAR}`` interpolation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import overload

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines; ``#`` comments, ``export`` prefixes and quotes are understood."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


@overload
def interpolate(value: dict[str, object], env: Mapping[str, str]) -> dict[str, object]: ...


@overload
def interpolate(value: object, env: Mapping[str, str]) -> object: ...


def interpolate(value: object, env: Mapping[str, str]) -> object:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string inside ``value``.

    As in the shell, ``${VAR:-default}`` uses the default when VAR is unset or empty.
    """
    if isinstance(value, str):
        return _VAR.sub(lambda m: env.get(m.group(1)) or m.group(2) or "", value)
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    return value
