"""Errors a pull can end with. Retry semantics live in the type (see ``opsloop.errors``)."""

from __future__ import annotations

from ..errors import OpsloopError, TerminalError, TransientError


class SourceError(OpsloopError):
    """A pull failed; the message names the source and what the vendor answered."""

    status: int | None = None
    """The vendor's HTTP status, when the error is an HTTP answer."""
    body: object = None
    """The vendor's parsed JSON error body (None when it sent none), for a connector to read its details."""


class SourceAuthError(SourceError, TerminalError):
    """The vendor refused the credentials: a person has to fix the token, key or grant."""


class SourceRequestError(SourceError, TerminalError):
    """The vendor rejected a request for a reason retrying will not fix (400, 404 ...)."""


class SourceUnavailable(SourceError, TransientError):
    """The vendor kept failing (429/5xx) after every retry; the next run tries again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExhausted(SourceError, TransientError):
    """The daily API budget is (nearly) used up: the run ends as partial and resumes at ``resume_at``."""

    def __init__(self, message: str, resume_at: float) -> None:
        super().__init__(message)
        self.resume_at = resume_at
