"""Reverse-ETL destinations: one module each behind :class:`Destination`, found by a lazy registry.

Built-ins are imported on first use; third parties register a ``Destination`` subclass in the
``opsloop.destinations`` entry-point group (``mycrm = "my_pkg.mycrm:MyCRM"``).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from ..errors import OpsloopError
from .base import Destination, DestinationConfig, DestinationContext, Op, RowOp, RowResult

BUILTIN: dict[str, str] = {
    "outbox": "opsloop.destinations.outbox:OutboxDestination",
    "webhook": "opsloop.destinations.webhook:WebhookDestination",
    "hubspot": "opsloop.destinations.hubspot:HubSpotDestination",
    "zendesk": "opsloop.destinations.zendesk:ZendeskDestination",
    "salesforce": "opsloop.destinations.salesforce:SalesforceDestination",
    "slack": "opsloop.destinations.slack:SlackDestination",
    "email": "opsloop.destinations.email:EmailDestination",
    "postgres": "opsloop.destinations.postgres:PostgresDestination",
}


class UnknownDestination(OpsloopError):
    """No built-in or installed destination has this type."""


def _load(target: str) -> type[Destination]:
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Destination)):
        raise UnknownDestination(f"{target} is not a opsloop Destination subclass")
    return cls


def known_types() -> list[str]:
    names = set(BUILTIN)
    names.update(ep.name for ep in entry_points(group="opsloop.destinations"))
    return sorted(names)


def get_destination(type_: str) -> type[Destination]:
    """The class for ``type_``: built-ins first, then the ``opsloop.destinations`` entry points."""
    if type_ in BUILTIN:
        return _load(BUILTIN[type_])
    for ep in entry_points(group="opsloop.destinations"):
        if ep.name == type_:
            cls = ep.load()
            if isinstance(cls, type) and issubclass(cls, Destination):
                return cls
            raise UnknownDestination(f"entry point {ep.value} for {type_!r} is not a Destination subclass")
    raise UnknownDestination(f"unknown destination type {type_!r}; known: {', '.join(known_types())}")


__all__ = [
    "BUILTIN",
    "Destination",
    "DestinationConfig",
    "DestinationContext",
    "Op",
    "RowOp",
    "RowResult",
    "UnknownDestination",
    "get_destination",
    "known_types",
]
