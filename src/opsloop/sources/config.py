"""Typed ``sources/*.yml``: one pydantic model per ``type:``, chosen by a discriminator.

Every model forbids unknown keys, so a typo is reported with its file and line by ``opsloop validate``.
Credentials are never written in YAML: each connector names the environment variables that hold them
(``token_env: HUBSPOT_TOKEN``), read from the environment or ``.env`` when a pull starts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._durations import parse_duration

WriteDisposition = Literal["merge", "append", "replace"]
StripeObject = Literal["customers", "subscriptions", "invoices", "charges", "products", "prices"]
ZendeskStream = Literal["tickets", "users", "organizations"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _SourceBase(_Strict):
    name: str = Field(default="", description="the source name; defaults to the file name")
    schedule: str | None = Field(default=None, description="cron expression; pulled inside `opsloop up`")
    dataset: str | None = Field(default=None, description="warehouse schema the tables land in (default: name)")
    lag: float | None = Field(default=None, description="re-read this far behind the cursor (late changes)")
    events: bool | None = Field(default=None, description="write an event per created/updated/deleted record")
    max_record_events: int = 10000
    max_requests_per_day: int | None = Field(
        default=None, description="stop cleanly (partial) after this many API requests in 24 hours"
    )
    retry_attempts: int = 6
    max_retry_delay: float = 300.0

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from croniter import croniter  # ~0.1 s to import: only for a source with a schedule

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression; write five fields, like '0 * * * *' (hourly)")
        return value

    @field_validator("lag", "max_retry_delay", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str | int | float) else value

    @property
    def default_lag(self) -> float:
        return 0.0

    @property
    def effective_lag(self) -> float:
        return self.default_lag if self.lag is None else self.lag

    @property
    def default_events(self) -> bool:
        return True

    @property
    def emit_events(self) -> bool:
        return self.default_events if self.events is None else self.events

    @property
    def schema_name(self) -> str:
        return (self.dataset or self.name).replace("-", "_")

    def stream_names(self) -> list[str]:
        raise NotImplementedError


# -- SaaS connectors ---------------------------------------------------------------------------------------


class HubSpotObject(_Strict):
    name: str
    properties: list[str] | None = Field(default=None, description="default: every property of the object")
    associations: list[str] = Field(default_factory=list)


class HubSpotSource(_SourceBase):
    """HubSpot CRM v3 with a private app token."""

    type: Literal["hubspot"]
    token_env: str = "HUBSPOT_TOKEN"  # noqa: S105 (a variable name)
    base_url: str = "https://api.hubapi.com"
    objects: list[str | HubSpotObject] = Field(
        default_factory=lambda: list[str | HubSpotObject](["contacts", "companies", "deals"]),
        description="default: contacts, companies, deals (each skipped with a warning if the token cannot "
                    "read it); objects listed here are required",
    )
    owners: bool = Field(default=True, description="read /crm/v3/owners (scope crm.objects.owners.read); by "
                                                  "default skipped with a warning when not granted")
    pipelines: list[str] = Field(default_factory=lambda: ["deals"],
                                 description="objects whose pipelines to read; by default [deals], skipped "
                                             "with a warning when not granted")
    page_size: int = 100
    ca_file: str | None = Field(default=None, description="PEM file of CAs to trust for base_url (relative to the "
                                                          "project folder); default: the system's")
    timeout: float = Field(default=60.0, gt=0, description="seconds per request")

    @property
    def default_lag(self) -> float:
        return 300.0

    def object_configs(self) -> list[HubSpotObject]:
        return [HubSpotObject(name=o) if isinstance(o, str) else o for o in self.objects]

    def required(self, option: str) -> bool:
        """True when the project set ``option`` itself: then a stream it names that the token cannot read
        fails the pull; a default one is skipped with a warning naming the missing scope."""
        return option in self.model_fields_set

    def stream_names(self) -> list[str]:
        names = [o.name for o in self.object_configs()]
        if self.owners:
            names.append("owners")
        names += [f"{p}_pipelines" for p in self.pipelines]
        return names


class StripeSource(_SourceBase):
    """Stripe with a (restricted) secret key."""

    type: Literal["stripe"]
    key_env: str = "STRIPE_SECRET_KEY"
    base_url: str = "https://api.stripe.com"
    objects: list[StripeObject] = Field(
        default_factory=lambda: list[StripeObject](["customers", "subscriptions", "invoices", "charges"])
    )
    page_size: int = 100
    ca_file: str | None = Field(default=None, description="PEM file of CAs to trust for base_url (relative to the "
                                                          "project folder); default: the system's")
    timeout: float = Field(default=60.0, gt=0, description="seconds per request")

    def stream_names(self) -> list[str]:
        return list(self.objects)


class SalesforceSource(_SourceBase):
    """Salesforce REST API: OAuth2 client credentials or refresh token, SOQL."""

    type: Literal["salesforce"]
    login_url: str = "https://login.salesforce.com"
    client_id_env: str = "SALESFORCE_CLIENT_ID"
    client_secret_env: str = "SALESFORCE_CLIENT_SECRET"  # noqa: S105 (a variable name)
    refresh_token_env: str | None = Field(default=None, description="set to use the refresh-token flow")
    api_version: str = "v59.0"
    objects: list[str] = Field(default_factory=lambda: ["Account", "Contact", "Lead", "Opportunity", "User"])
    fields: dict[str, list[str]] = Field(default_factory=dict, description="object -> fields (default: all)")
    ca_file: str | None = Field(default=None, description="PEM file of CAs to trust for the API (relative to the "
                                                          "project folder); default: the system's")
    timeout: float = Field(default=60.0, gt=0, description="seconds per request")
    include_deleted: bool = True
    api_reserve: float = Field(
        default=0.1, description="stop when fewer than this share of the daily API requests remain"
    )

    @property
    def default_lag(self) -> float:
        return 300.0

    def stream_names(self) -> list[str]:
        return list(self.objects)


class ZendeskSource(_SourceBase):
    """Zendesk Support: API token (email/token) or OAuth access token; incremental exports."""

    type: Literal["zendesk"]
    subdomain: str | None = None
    base_url: str | None = Field(default=None, description="default https://<subdomain>.zendesk.com")
    email_env: str | None = "ZENDESK_EMAIL"
    token_env: str | None = "ZENDESK_API_TOKEN"  # noqa: S105 (a variable name)
    oauth_token_env: str | None = None
    streams: list[ZendeskStream] = Field(
        default_factory=lambda: list[ZendeskStream](["tickets", "users", "organizations"])
    )
    start_date: str | None = Field(default=None, description="ISO date for the first export (default: 2000-01-01)")
    ca_file: str | None = Field(default=None, description="PEM file of CAs to trust for the API (relative to the "
                                                          "project folder); default: the system's")
    timeout: float = Field(default=60.0, gt=0, description="seconds per request")
    page_size: int = 1000

    @model_validator(mode="after")
    def _where(self) -> ZendeskSource:
        if not self.subdomain and not self.base_url:
            raise ValueError("set subdomain: (the part before .zendesk.com)")
        return self

    @property
    def url(self) -> str:
        return self.base_url or f"https://{self.subdomain}.zendesk.com"

    def stream_names(self) -> list[str]:
        return list(self.streams)


# -- generic sources --------------------------------------------------------------------------------------


class RestSource(_SourceBase):
    """dlt's rest_api configuration shape: ``client``, ``resource_defaults``, ``resources``."""

    type: Literal["rest"]
    client: dict[str, Any]
    resource_defaults: dict[str, Any] = Field(default_factory=dict)
    resources: list[str | dict[str, Any]]

    @property
    def default_events(self) -> bool:
        return False

    @field_validator("client")
    @classmethod
    def _client(cls, value: dict[str, object]) -> dict[str, object]:
        if "base_url" not in value:
            raise ValueError("client needs base_url: (the API's root URL)")
        return value

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: list[str | dict[str, object]]) -> list[str | dict[str, object]]:
        for item in value:
            if isinstance(item, dict) and "name" not in item:
                raise ValueError("every resource needs name:")
        return value

    def stream_names(self) -> list[str]:
        return [r if isinstance(r, str) else str(r["name"]) for r in self.resources]


class SqlTable(_Strict):
    name: str
    table: str | None = Field(default=None, description="schema-qualified source table (default: name)")
    incremental: str | None = Field(default=None, description="a column that grows with every change")
    primary_key: list[str] | str | None = None
    write_disposition: WriteDisposition | None = None


class SqlDatabaseSource(_SourceBase):
    """Tables from Postgres or MySQL/MariaDB, incremental by a column."""

    type: Literal["sql_database"]
    connection: str = Field(description="postgresql://user@host/db or mysql://user@host/db; ${ENV} allowed")
    tables: list[SqlTable]
    chunk_size: int = 50000

    @property
    def default_events(self) -> bool:
        return False

    @field_validator("connection")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if value.split(":", 1)[0].split("+", 1)[0] not in ("postgresql", "postgres", "mysql", "mariadb"):
            raise ValueError("connection must start with postgresql:// or mysql://")
        return value

    def stream_names(self) -> list[str]:
        return [t.name for t in self.tables]


class FileStream(_Strict):
    name: str
    path: str = Field(description="a path or glob, relative to the project folder")
    format: Literal["csv", "parquet", "jsonl"] | None = None
    primary_key: list[str] | str | None = None
    write_disposition: WriteDisposition | None = None


class FilesSource(_SourceBase):
    """CSV, Parquet and JSON-lines files; a file is loaded again only when it changed."""

    type: Literal["files"]
    streams: list[FileStream]

    @property
    def default_events(self) -> bool:
        return False

    def stream_names(self) -> list[str]:
        return [s.name for s in self.streams]


SourceConfig = Annotated[
    HubSpotSource | StripeSource | SalesforceSource | ZendeskSource | RestSource | SqlDatabaseSource | FilesSource,
    Field(discriminator="type"),
]

SOURCE_TYPES = ("salesforce", "hubspot", "zendesk", "stripe", "rest", "sql_database", "files")


MODELS: dict[str, type[_SourceBase]] = {
    "hubspot": HubSpotSource,
    "stripe": StripeSource,
    "salesforce": SalesforceSource,
    "zendesk": ZendeskSource,
    "rest": RestSource,
    "sql_database": SqlDatabaseSource,
    "files": FilesSource,
}
