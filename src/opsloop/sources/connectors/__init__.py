"""Connectors, one module per vendor or kind, imported only when a source of that type runs."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import Connector, Page, PullContext, Stream

if TYPE_CHECKING:
    from ..config import SourceConfig

_MODULES = {
    "hubspot": "hubspot", "stripe": "stripe", "salesforce": "salesforce", "zendesk": "zendesk",
    "rest": "rest", "sql_database": "sql", "files": "files",
}


def make_connector(config: SourceConfig, ctx: PullContext) -> Connector:
    """The connector for ``config.type``; its module (and any heavy client) is imported here."""
    module = importlib.import_module(f"{__name__}.{_MODULES[config.type]}")
    connector: Connector = module.build(config, ctx)
    return connector


__all__ = ["Connector", "Page", "PullContext", "Stream", "make_connector"]
