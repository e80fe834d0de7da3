"""Typed models of the user's project files. Unknown keys are errors, so typos are caught."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._durations import parse_duration, parse_size

NAME_RE = re.compile(r"^[a-z][a-z0-9_\-]*$")


def _as_duration(value: object) -> float:
    """A duration as YAML gave it (``15m``, ``30``)."""
    if isinstance(value, str | int | float):
        return parse_duration(value)
    raise ValueError(f"{value!r} is not a duration; write a number with a unit, like 500ms, 30s, 15m, 24h, 7d")


def _as_size(value: object) -> int:
    """A size as YAML gave it (``512KB``, ``1000``)."""
    if isinstance(value, str | int):
        return parse_size(value)
    raise ValueError(f"{value!r} is not a size; write a number with a unit, like 512KB or 1MB")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class WarehouseConfig(_Strict):
    type: str = "duckdb"
    path: str = "warehouse.duckdb"
    url: str | None = None
    threads: int | None = None
    options: dict[str, object] = Field(default_factory=dict)


class StateConfig(_Strict):
    url: str = "sqlite:///state/opsloop.sqlite"


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8620, ge=1, le=65535)
    fsync_on_commit: bool = True
    max_pending: int = 20000
    load_interval: float = 0.5
    receiver_processes: int | Literal["auto"] = "auto"
    """Extra processes that verify and answer webhooks while this one commits them and runs everything
    else (docs/webhooks.md, "Throughput"); 0 answers webhooks in the main process; ``auto`` (the
    default) starts one per core this process may use beyond the first, up to 4, and none on one core."""
    public_url: str | None = None
    """The address senders use (``https://hooks.example.com``) when opsloop runs behind a proxy or tunnel:
    signatures over the URL (HubSpot v3) are checked against it instead of the address the request reached."""
    session_expiry: float = Field(default=12 * 3600.0, gt=0)
    """How long a login lasts (``30m``, ``12h``, ``7d``); logout ends it sooner (docs/project.md)."""
    max_request_body: int = Field(default=1_000_000, gt=0)
    """The largest body any non-webhook request may carry (``1MB``); webhooks have their ``max_body``."""

    @field_validator("receiver_processes", mode="before")
    @classmethod
    def _receivers(cls, value: object) -> int | str:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 64):
            return value
        raise ValueError(f"{value!r} is not a number of processes: write auto (the default), 0 (webhooks "
                         "answered in the main process) or a whole number up to 64")

    @field_validator("session_expiry", mode="before")
    @classmethod
    def _expiry(cls, value: object) -> float:
        return _as_duration(value)

    @field_validator("max_request_body", mode="before")
    @classmethod
    def _body(cls, value: object) -> int:
        return _as_size(value)


class SlackChannelConfig(_Strict):
    """``channels.slack``: the one Slack Web API client (workflow steps, the slack destination, alerts)."""

    token_env: str | None = None
    """Environment variable holding the bot token (default ``SLACK_BOT_TOKEN``)."""
    api_url: str | None = None
    """Web API root (default ``$SLACK_API_URL`` or ``https://slack.com/api/``)."""
    timeout: float | None = Field(default=None, gt=0)
    ca_file: str | None = None
    pace: float | None = Field(default=None, ge=0)


class SmtpChannelConfig(_Strict):
    """``channels.smtp``: the one SMTP server (workflow email, the email destination, alerts)."""

    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] | None = None
    username_env: str | None = None
    password_env: str | None = None
    from_: str | None = Field(default=None, alias="from")
    timeout: float | None = Field(default=None, gt=0)
    ca_file: str | None = None


class HttpChannelConfig(_Strict):
    """``channels.http``: outbound HTTP (the http.request step and the HTTP API destinations)."""

    timeout: float | None = Field(default=None, gt=0)
    ca_file: str | None = None
    retries: int | None = Field(default=None, ge=0, le=10)
    max_retry_delay: float | None = Field(default=None, ge=0)


class ChannelsConfig(_Strict):
    """``channels:`` in ``opsloop.yml``; every key unset falls back to its environment variable
    (docs/project.md, "Outbound channels")."""

    slack: SlackChannelConfig = Field(default_factory=SlackChannelConfig)
    smtp: SmtpChannelConfig = Field(default_factory=SmtpChannelConfig)
    http: HttpChannelConfig = Field(default_factory=HttpChannelConfig)


class ProjectConfig(_Strict):
    """``opsloop.yml``."""

    name: str = "opsloop-project"
    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)
    retention_days: int = 30
    dbt_project: str | None = None
    vars: dict[str, object] = Field(default_factory=dict)


Preset = Literal["none", "stripe", "slack", "github", "hubspot", "standard_webhooks", "zendesk", "shopify", "hmac"]


class SignatureConfig(_Strict):
    """How a webhook endpoint authenticates its sender."""

    preset: Preset
    secret_env: str | None = Field(default=None, description="environment variable holding the secret")
    tolerance: float = 300.0
    # generic hmac only
    header: str | None = None
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    timestamp_header: str | None = None
    separator: str = "."

    @field_validator("tolerance", mode="before")
    @classmethod
    def _tolerance(cls, value: object) -> float:
        return _as_duration(value)

    @model_validator(mode="after")
    def _needs(self) -> SignatureConfig:
        if self.preset != "none" and not self.secret_env:
            raise ValueError(f"preset {self.preset!r} needs secret_env: the environment variable holding the secret")
        if self.preset == "hmac" and not self.header:
            raise ValueError("preset 'hmac' needs header: the request header carrying the signature")
        return self


class IdempotencyConfig(_Strict):
    header: str | None = None
    field: str | None = None
    window: float = 86400.0

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: object) -> float:
        return _as_duration(value)

    @model_validator(mode="after")
    def _one(self) -> IdempotencyConfig:
        if bool(self.header) == bool(self.field):
            raise ValueError("idempotency needs exactly one of header (e.g. Idempotency-Key) or field (e.g. id)")
        return self


class EndpointConfig(_Strict):
    """``events/<name>.yml``: one webhook endpoint served at ``/hooks/<name>``."""

    name: str
    description: str = ""
    event: str | None = None
    event_from: str | None = None
    event_prefix: str = ""
    schema_: dict[str, object] | None = Field(default=None, alias="schema")
    schema_file: str | None = None
    signature: SignatureConfig = Field(default_factory=lambda: SignatureConfig(preset="none"))
    idempotency: IdempotencyConfig | None = None
    max_body: int = 1_000_000
    max_depth: int = Field(default=64, ge=1, le=128)
    """Deepest nesting of objects and arrays a payload may have (deeper is refused with 400)."""
    refused_body: int = Field(default=4096, ge=0)
    """How much of a request refused for its signature is stored (the rest is dropped, its size noted)."""
    refused_per_minute: int = Field(default=60, ge=0)
    """How many requests refused for their signature are stored per client address and minute."""
    redact: list[str] = Field(default_factory=list)
    retention_days: int | None = None

    @field_validator("max_body", "refused_body", mode="before")
    @classmethod
    def _size(cls, value: object) -> int:
        return _as_size(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("use lower-case letters, digits, '_' or '-', starting with a letter")
        return value

    @model_validator(mode="after")
    def _event(self) -> EndpointConfig:
        if self.event and self.event_from:
            raise ValueError("give either event (a fixed name) or event_from (a payload field), not both")
        if self.schema_ is not None and self.schema_file:
            raise ValueError("give either schema (inline) or schema_file, not both")
        return self

    def event_name_for(self, payload: object) -> str:
        """The event name this endpoint produces for ``payload``."""
        if self.event_from:
            value: object = payload
            for part in self.event_from.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, str) and value:
                return self.event_prefix + value
            return self.event_prefix + f"{self.name}.unknown"
        return self.event or f"{self.name}.received"
