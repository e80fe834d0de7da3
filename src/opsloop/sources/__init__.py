"""Sources: pull SaaS APIs, REST APIs, databases and files into the warehouse on dlt's Arrow path.

``sources/*.yml`` -> ``SOURCES.of(project)`` (``opsloop.sources.project_files``); ``pull(app, name)``
runs one source; ``opsloop up`` runs scheduled pulls (``opsloop.sources.service``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._errors import QuotaExhausted, SourceAuthError, SourceError, SourceUnavailable
    from ._runner import PullResult, StreamProgress, pull
    from ._status import source_runs, source_status

# imported on first use: importing one module of the package (its project_files for `opsloop validate`)
# must not load the rest
__getattr__ = lazy_exports(__name__, {
    "PullResult": "._runner",
    "QuotaExhausted": "._errors",
    "SourceAuthError": "._errors",
    "SourceError": "._errors",
    "SourceUnavailable": "._errors",
    "StreamProgress": "._runner",
    "pull": "._runner",
    "source_runs": "._status",
    "source_status": "._status",
})

__all__ = [
    "PullResult",
    "QuotaExhausted",
    "SourceAuthError",
    "SourceError",
    "SourceUnavailable",
    "StreamProgress",
    "pull",
    "source_runs",
    "source_status",
]
