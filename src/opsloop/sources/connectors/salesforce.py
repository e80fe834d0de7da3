"""Salesforce REST API: OAuth2 (client credentials or refresh token), SOQL, the daily API budget.

Each object is read with ``GET /services/data/vXX.X/queryAll`` (``query`` when deleted records are not
wanted): ``SELECT <fields> FROM <object> WHERE SystemModstamp >= <cursor minus lag> ORDER BY
SystemModstamp ASC``, following ``nextRecordsUrl``. Records arrive in modification order, so each page
moves the cursor safely. ``queryAll`` returns deleted rows (``IsDeleted = true``); they land with that
flag and raise ``salesforce.<object>.deleted`` events.

Before every request the remaining daily API requests (``/limits`` once, then the ``Sforce-Limit-Info``
header of each answer) are compared with ``api_reserve``: the run stops cleanly, as partial, before the
budget runs out, and the next run continues from the cursor.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._errors import QuotaExhausted, SourceAuthError
from .._http import Http, vendor_message
from ..config import SalesforceSource
from .base import Page, PullContext, Stream

if TYPE_CHECKING:
    from requests import Response

_COMPOUND = {"address", "location"}
_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def _limit_exceeded(response: Response) -> bool:
    return response.status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in response.text


def _soql_time(iso: str, minus: float) -> str:
    parsed = datetime.fromisoformat(iso.replace("Z", "+00:00").replace("+0000", "+00:00")) - timedelta(seconds=minus)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{parsed.microsecond // 1000:03d}Z"


class SalesforceConnector:
    def __init__(self, config: SalesforceSource, ctx: PullContext) -> None:
        self.config = config
        self.ctx = ctx
        self.http = Http(ctx.source, "Salesforce", ctx.budget, attempts=ctx.retry_attempts,
                         max_delay=ctx.max_retry_delay, backoff=ctx.retry_backoff, quota_check=_limit_exceeded,
                         timeout=config.timeout,
                         ca_file=str(ctx.project_root / config.ca_file) if config.ca_file else None,
                         credentials_hint=f"Check {config.client_id_env}, {config.client_secret_env}"
                         + (f" and {config.refresh_token_env}" if config.refresh_token_env else "")
                         + " and the connected app's OAuth policies (see docs/sources.md#salesforce).")
        self.http.on_unauthorized = self._refresh
        self.instance = ""
        self.remaining: int | None = None
        self.max: int | None = None
        self._login()
        self._read_limits()

    # -- auth and limits ----------------------------------------------------------------------
    def _login(self) -> None:
        cfg = self.config
        form = {"client_id": self.ctx.secret(cfg.client_id_env) or "",
                "client_secret": self.ctx.secret(cfg.client_secret_env) or ""}
        if cfg.refresh_token_env:
            form.update(grant_type="refresh_token", refresh_token=self.ctx.secret(cfg.refresh_token_env) or "")
        else:
            form["grant_type"] = "client_credentials"
        self.ctx.budget.check(self.ctx.source)
        verify: str | bool = self.http.verify or True
        response = self.http.session.post(f"{cfg.login_url.rstrip('/')}/services/oauth2/token", data=form,
                                          timeout=cfg.timeout, verify=verify)
        if response.status_code >= 400:
            if response.status_code in (400, 401, 403):
                raise SourceAuthError(
                    f"source {self.ctx.source!r}: Salesforce refused the credentials (HTTP {response.status_code}: "
                    f"{vendor_message(response)}). {self.http.hint}"
                )
            self.http.raise_for(response)
        body = response.json()
        self.instance = body["instance_url"].rstrip("/")
        self.http.headers["Authorization"] = f"Bearer {body['access_token']}"

    def _refresh(self) -> bool:
        self._login()
        return True

    def _read_limits(self) -> None:
        data = self.http.get(self._url("/limits"))
        daily = data.get("DailyApiRequests") or {}
        if "Remaining" in daily:
            self.remaining, self.max = int(daily["Remaining"]), int(daily["Max"])

    def _url(self, path: str) -> str:
        return f"{self.instance}/services/data/{self.config.api_version}{path}"

    def _get(self, url: str, params: Mapping[str, object] | None = None) -> Any:
        """The parsed JSON answer (as ``Http.get``), counting the request against the daily allowance."""
        if self.remaining is not None and self.max is not None:
            reserve = int(self.max * self.config.api_reserve)
            if self.remaining <= reserve:
                raise QuotaExhausted(
                    f"source {self.ctx.source!r}: Salesforce has {self.remaining} of {self.max} daily API requests "
                    f"left, the reserve kept for other integrations (api_reserve: {self.config.api_reserve})",
                    time.time() + 3600,
                )
        response = self.http.request("GET", url, params=params)
        usage = _USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
        if usage:
            used, most = int(usage.group(1)), int(usage.group(2))
            self.remaining, self.max = most - used, most
        elif self.remaining is not None:
            self.remaining -= 1
        return self.http.json(response)

    # -- streams ------------------------------------------------------------------------------
    def streams(self) -> list[Stream]:
        return [Stream(obj, ["Id"], "merge", obj.lower(), id_field="Id") for obj in self.config.objects]

    def _fields(self, obj: str) -> list[str]:
        if obj in self.config.fields:
            wanted = list(self.config.fields[obj])
            for extra in ("Id", "SystemModstamp", "IsDeleted"):
                if extra not in wanted:
                    wanted.append(extra)
            return wanted
        data = self._get(self._url(f"/sobjects/{obj}/describe"))
        return [f["name"] for f in data.get("fields", []) if f.get("type") not in _COMPOUND]

    def read(self, stream: Stream, cursor: object) -> Iterator[Page]:
        obj = stream.name
        fields = self._fields(obj)
        soql = f"SELECT {', '.join(fields)} FROM {obj}"
        if cursor:
            soql += f" WHERE SystemModstamp >= {_soql_time(str(cursor), self.ctx.lag)}"
        soql += " ORDER BY SystemModstamp ASC"
        endpoint = "/queryAll" if self.config.include_deleted and "IsDeleted" in fields else "/query"
        data = self._get(self._url(endpoint), {"q": soql})
        newest = cursor
        while True:
            records = [{k: v for k, v in r.items() if k != "attributes"} for r in data.get("records", [])]
            for r in records:
                stamp = r.get("SystemModstamp")
                if stamp and (newest is None or stamp > newest):
                    newest = stamp
            deleted = [r["Id"] for r in records if r.get("IsDeleted")]
            yield Page(records, cursor=newest, deleted=deleted)
            next_url = data.get("nextRecordsUrl")
            if data.get("done", True) or not next_url:
                return
            data = self._get(f"{self.instance}{next_url}")

    def close(self) -> None:
        self.http.close()


def build(config: SalesforceSource, ctx: PullContext) -> SalesforceConnector:
    return SalesforceConnector(config, ctx)
