"""opsloop's exceptions.

Every error a user can cause is an ``OpsloopError``; its message names the file, line or record
and says what to do. Retry semantics live in the type, never in the message text:

    OpsloopError
    ├── ConfigError              a project file is wrong (carries a list of Problems with file:line)
    ├── StateStoreError          the state store could not be opened or migrated
    ├── ServerBusy (Transient)   more load than the store can absorb right now (HTTP 503)
    ├── WarehouseError           a query or load failed in the warehouse
    │   └── WarehouseLocked      another process (`opsloop up`) holds the single-writer warehouse file
    ├── ServerError              the running `opsloop up` refused or could not answer a CLI verb's request
    └── DeliveryError            an outbound call failed
        ├── TransientDeliveryError (Transient)  try again later: 429, 5xx, timeouts, connection refused
        └── TerminalDeliveryError  (Terminal)   will not succeed by retrying: 4xx, validation

``TransientError`` and ``TerminalError`` are mixins: the workflow engine and the sync runner decide
retry-versus-fail with ``isinstance`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class OpsloopError(Exception):
    """Root of every error opsloop raises on purpose."""


class TransientError(OpsloopError):
    """Mixin: retrying later may succeed."""

    retry_after: float | None = None


class TerminalError(OpsloopError):
    """Mixin: retrying will not help; a person has to change something."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the project, located at ``file:line``, with what to do about it."""

    file: str
    line: int | None
    message: str
    hint: str = ""
    severity: Literal["error", "warning"] = "error"
    """A warning is something a first run fixes or that may be fine (an unreachable destination, a table
    the first build creates): ``opsloop validate`` prints it and exits 0 unless ``--strict``."""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {'warning: ' if self.severity == 'warning' else ''}{self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(TerminalError):
    """The project has one or more problems; ``problems`` lists them all."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StateStoreError(OpsloopError):
    """The state store could not be opened, migrated or written."""


class ServerBusy(TransientError):
    """Too much load right now; the caller should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WarehouseError(OpsloopError):
    """A warehouse statement or load failed."""


class WarehouseLocked(WarehouseError):
    """Another process holds the single-writer warehouse file (DuckDB); ``path`` is the file.

    The CLI catches this type (never its message) to go through the running server instead.
    """

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class ServerError(OpsloopError):
    """The running server answered a CLI verb's request with an error, or did not answer at all.

    ``status`` is the HTTP status (``None`` when it did not answer); ``problems`` the project problems
    (``file:line: message``) that a 400 carries, one a line.
    """

    def __init__(self, message: str, status: int | None = None, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.problems = problems or []


class DeliveryError(OpsloopError):
    """An outbound call (Slack, HTTP, SMTP, a SaaS API) failed."""


class TransientDeliveryError(DeliveryError, TransientError):
    """The destination was unreachable, rate-limited or failed on its side; retry later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TerminalDeliveryError(DeliveryError, TerminalError):
    """The destination refused the request; retrying the same request will not help.

    ``every_request``: the refusal is not about the rows (bad credentials, a missing scope, an untrusted
    certificate), so a sync does not split the batch to find bad rows: every row of it gets this error."""

    def __init__(self, message: str, *, every_request: bool = False) -> None:
        super().__init__(message)
        self.every_request = every_request
