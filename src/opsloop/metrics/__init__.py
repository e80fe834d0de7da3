"""Metrics defined once (a MetricFlow-compatible YAML subset), dashboards as code, highlights and alerts.

    from opsloop.metrics import MetricQuery
    result = app.services["metrics"].query(MetricQuery.from_params("new_customers", grain="day", since="30d"))
"""

from .catalog import Catalog, catalog_of
from .compiler import MetricQueryError
from .engine import MetricEngine, MetricQuery, MetricResult

__all__ = ["Catalog", "MetricEngine", "MetricQuery", "MetricQueryError", "MetricResult", "catalog_of"]
