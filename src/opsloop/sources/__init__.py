"""Sources: pull SaaS APIs, REST APIs, databases and files into the warehouse on dlt's Arrow path.

``sources/*.yml`` -> ``project.extras["sources"]`` (``opsloop.sources.project_files``); ``pull(app, name)``
runs one source; ``opsloop up`` runs scheduled pulls (``opsloop.sources.service``).
"""

from __future__ import annotations

from ._errors import QuotaExhausted, SourceAuthError, SourceError, SourceUnavailable
from ._runner import PullResult, pull
from ._status import source_status

__all__ = [
    "PullResult",
    "QuotaExhausted",
    "SourceAuthError",
    "SourceError",
    "SourceUnavailable",
    "pull",
    "source_status",
]
