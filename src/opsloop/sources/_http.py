"""HTTP for connectors on dlt's retrying requests session: backoff on 429/5xx honouring Retry-After,
a request budget, one clear error per failure naming the source and what the vendor answered."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._errors import QuotaExhausted, SourceAuthError, SourceError, SourceRequestError, SourceUnavailable

if TYPE_CHECKING:
    from requests import Response
    from requests.auth import AuthBase

QuotaCheck = Callable[["Response"], bool]
"""Given a response, True when it says the daily quota is exhausted (so: do not retry, stop cleanly)."""


def next_utc_midnight() -> float:
    now = datetime.now(tz=UTC)
    return (now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)).timestamp()


def vendor_message(response: Response) -> str:
    """The vendor's own error text from a JSON error body (several shapes), else the raw text."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or "").strip()[:300] or response.reason or ""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("type") or err)
        parts = [str(body[k]) for k in ("errorCode", "error", "category", "message", "error_description",
                                        "description") if body.get(k)]
        if parts:
            return ": ".join(dict.fromkeys(parts))
    return str(body)[:300]


class Budget:
    """Counts requests; stops the pull before ``limit`` is exceeded (``max_requests_per_day``)."""

    def __init__(self, used_today: int, limit: int | None) -> None:
        self.used_before = used_today
        self.limit = limit
        self.count = 0

    def check(self, source: str) -> None:
        if self.limit is not None and self.used_before + self.count >= self.limit:
            raise QuotaExhausted(
                f"source {source!r} used its budget of {self.limit} requests for today", next_utc_midnight()
            )


class Http:
    """A connector's HTTP client. ``get``/``post`` return parsed JSON or raise a ``SourceError``."""

    def __init__(
        self, source: str, vendor: str, budget: Budget, *, credentials_hint: str, attempts: int = 6,
        max_delay: float = 300.0, backoff: float = 1.0, quota_check: QuotaCheck | None = None,
        timeout: float = 60.0, ca_file: str | None = None,
    ) -> None:
        from dlt.sources.helpers.requests.retry import Client

        self.source = source
        self.vendor = vendor
        self.budget = budget
        self.hint = credentials_hint
        self.quota_check = quota_check
        self.headers: dict[str, str] = {}
        self.auth: AuthBase | tuple[str, str] | None = None
        self.on_unauthorized: Callable[[], bool] | None = None
        """Called once on 401 (e.g. refresh an OAuth token); True means: try the request again."""

        def retry(response: Response | None, exc: BaseException | None) -> bool:
            if response is None:
                return False
            if response.status_code == 429:
                return not (self.quota_check and self.quota_check(response))
            return bool(500 <= response.status_code < 600)

        self._client = Client(
            request_timeout=timeout, raise_for_status=False, status_codes=(), retry_condition=retry,
            request_max_attempts=attempts, request_backoff_factor=backoff, request_max_retry_delay=max_delay,
            respect_retry_after_header=True,
        )
        self.session = self._client.session
        self.verify = ca_file
        """Per request: requests lets ``REQUESTS_CA_BUNDLE`` override a session's ``verify``."""
        self.session.hooks["response"].append(self._count)

    def _count(self, response: Response, *args: object, **kwargs: object) -> Response:
        self.budget.count += 1
        return response

    def request(self, method: str, url: str, **kwargs: Any) -> Response:
        """Send one request (with retries); returns the ``requests.Response`` when it succeeded."""
        self.budget.check(self.source)
        headers = {**self.headers, **kwargs.pop("headers", {})}
        if self.verify:
            kwargs.setdefault("verify", self.verify)
        response = self.session.request(method, url, headers=headers, auth=self.auth, **kwargs)
        if response.status_code == 401 and self.on_unauthorized is not None and self.on_unauthorized():
            headers = {**headers, **self.headers}
            response = self.session.request(method, url, headers=headers, auth=self.auth, **kwargs)
        self.raise_for(response)
        return response

    def raise_for(self, response: Response) -> None:
        status = response.status_code
        if status < 400:
            return
        error = self._error(response)
        error.status = status
        try:
            error.body = response.json()
        except ValueError:
            error.body = None
        raise error

    def _error(self, response: Response) -> SourceError:
        status = response.status_code
        said = vendor_message(response)
        if self.quota_check and self.quota_check(response):
            return QuotaExhausted(f"source {self.source!r}: {self.vendor} daily API limit reached ({said})",
                                  next_utc_midnight())
        if status in (401, 403):
            return SourceAuthError(
                f"source {self.source!r}: {self.vendor} refused the credentials (HTTP {status}: {said}). "
                f"{self.hint}"
            )
        if status == 429 or status >= 500:
            retry_after = response.headers.get("Retry-After")
            return SourceUnavailable(
                f"source {self.source!r}: {self.vendor} still answered HTTP {status} after retrying ({said}); "
                "the next run tries again",
                float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        return SourceRequestError(
            f"source {self.source!r}: {self.vendor} rejected {response.request.method} "
            f"{response.request.path_url.split('?')[0]} (HTTP {status}: {said})"
        )

    def get(self, url: str, params: Mapping[str, object] | None = None, **kwargs: Any) -> Any:
        return self.json(self.request("GET", url, params=params, **kwargs))

    def post(self, url: str, json: object = None, **kwargs: Any) -> Any:
        return self.json(self.request("POST", url, json=json, **kwargs))

    @staticmethod
    def json(response: Response) -> Any:
        """The body parsed (the vendor's JSON, which each connector reads by its API's documented shape)."""
        import orjson

        return orjson.loads(response.content)

    def close(self) -> None:
        self.session.close()
