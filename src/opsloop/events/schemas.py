"""Payload validation: fastjsonschema on the hot path, jsonschema to list every error with its pointer."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import fastjsonschema
import jsonschema

from .._json import JsonObject

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_FORMATS = {"email": _EMAIL.pattern, "idn-email": _EMAIL.pattern}

_checker = jsonschema.FormatChecker()


@_checker.checks("email")  # type: ignore[untyped-decorator]
def _is_email(instance: object) -> bool:
    return not isinstance(instance, str) or bool(_EMAIL.match(instance))


@dataclass(frozen=True)
class SchemaError:
    pointer: str
    message: str

    def as_dict(self) -> JsonObject:
        return {"pointer": self.pointer, "message": self.message}


def check_schema(schema: object) -> str | None:
    """None when ``schema`` is a valid JSON Schema, else the reason."""
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return str(exc.message)
    return None


class PayloadValidator:
    """Validate payloads against one schema; fast when they are valid, thorough when not."""

    def __init__(self, schema: dict[str, object]) -> None:
        self.schema = schema
        self._fast: Callable[[object], object] = fastjsonschema.compile(schema, formats=_FORMATS)
        cls = jsonschema.validators.validator_for(schema)
        self._slow = cls(schema, format_checker=_checker)

    def errors(self, payload: object) -> list[SchemaError]:
        """Every violation in ``payload``, each with a JSON pointer; empty when valid."""
        try:
            self._fast(payload)
            return []
        except fastjsonschema.JsonSchemaException as fast_error:
            found = [
                SchemaError("/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in err.absolute_path),
                            err.message)
                for err in sorted(self._slow.iter_errors(payload), key=lambda e: list(map(str, e.absolute_path)))
            ]
            return found or [SchemaError("/", str(fast_error))]
