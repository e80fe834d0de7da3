"""Metrics defined once (a MetricFlow-compatible YAML subset), dashboards as code, highlights and alerts.

    from opsloop.metrics import MetricQuery
    result = app.services["metrics"].query(MetricQuery.from_params("new_customers", grain="day", since="30d"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .catalog import Catalog, catalog_of
    from .compiler import MetricQueryError
    from .engine import MetricEngine, MetricQuery, MetricResult

# imported on first use: importing one module of the package (its project_files for `opsloop validate`)
# must not load the rest
__getattr__ = lazy_exports(__name__, {
    "Catalog": ".catalog",
    "MetricEngine": ".engine",
    "MetricQuery": ".engine",
    "MetricQueryError": ".compiler",
    "MetricResult": ".engine",
    "catalog_of": ".catalog",
})

__all__ = ["Catalog", "MetricEngine", "MetricQuery", "MetricQueryError", "MetricResult", "catalog_of"]
