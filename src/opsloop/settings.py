"""Settings resolved in this order: environment > ``.env`` > ``opsloop.yml`` > defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TypedDict, Unpack

from .errors import OpsloopError
from .project import Project
from .project.config import WarehouseConfig


def _bool(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    if not text.strip().isdigit():
        raise OpsloopError(f"{name}={text!r} is not a whole number; set it to 0, 1, 2 ...")
    return int(text)


def _port(env: Mapping[str, str], default: int) -> int:
    text = env.get("OPSLOOP_PORT")
    if not text:
        return default
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise OpsloopError(f"OPSLOOP_PORT={text!r} is not a TCP port; set it to a number from 1 to 65535")
    return int(text)


class SettingsOverrides(TypedDict, total=False):
    """What a caller may set over the resolved settings (``App.from_path(root, port=0)``); None keeps the
    resolved value."""

    state_url: str | None
    warehouse: WarehouseConfig | None
    host: str | None
    port: int | None
    fsync_on_commit: bool | None
    max_pending: int | None
    load_interval: float | None
    api_token: str | None
    retention_days: int | None
    time_scale: float | None
    role: str | None
    public_url: str | None
    lead_retry: float | None
    receiver_processes: int | None
    session_expiry: float | None
    max_request_body: int | None


@dataclass(frozen=True)
class Settings:
    """Everything the running app needs that is not a project file. Never log ``api_token``."""

    state_url: str = "sqlite:///state/opsloop.sqlite"
    warehouse: WarehouseConfig = field(default_factory=WarehouseConfig)
    host: str = "127.0.0.1"
    port: int = 8620
    fsync_on_commit: bool = True
    max_pending: int = 20000
    load_interval: float = 0.5
    api_token: str | None = None
    retention_days: int = 30
    time_scale: float = 1.0
    """Multiplier applied to workflow sleeps and SLA timers (tests use e.g. 0.01)."""
    role: str = "all"
    """all | receiver (webhooks + API only) | worker (consumers, workflows, loads) | scheduler."""
    public_url: str | None = None
    """The public address of the server (``server.public_url``); webhook URLs for signatures are built on it."""
    lead_retry: float = 2.0
    receiver_processes: int = 0
    """Extra processes that take webhooks (``server.receiver_processes``); 0 answers them in-process."""
    """Seconds between attempts to take over a leader-only job (dispatcher, loader, scheduler)."""
    session_expiry: float = 12 * 3600.0
    """Seconds a login session lasts (``server.session_expiry``)."""
    max_request_body: int = 1_000_000
    """Bytes a non-webhook request body may hold (``server.max_request_body``)."""

    def has_role(self, role: str) -> bool:
        """Whether this process runs ``role``'s work (``all`` runs everything)."""
        return self.role == "all" or self.role == role

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return f"Settings(state_url={self.state_url!r}, host={self.host!r}, port={self.port}, api_token=***)"

    def with_(self, **changes: Unpack[SettingsOverrides]) -> Settings:
        given: dict[str, object] = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **given)  # type: ignore[arg-type]  # each value is typed by SettingsOverrides


def resolve_settings(project: Project, overrides: SettingsOverrides | None = None) -> Settings:
    """Build settings for ``project``; ``project.env`` already lays the environment over ``.env``."""
    cfg = project.config
    env = project.env
    warehouse = cfg.warehouse
    if env.get("OPSLOOP_WAREHOUSE_PATH"):
        warehouse = warehouse.model_copy(update={"path": env["OPSLOOP_WAREHOUSE_PATH"]})
    settings = Settings(
        state_url=env.get("OPSLOOP_STATE_URL") or cfg.state.url,
        warehouse=warehouse,
        host=env.get("OPSLOOP_HOST") or cfg.server.host,
        port=_port(env, cfg.server.port),
        fsync_on_commit=_bool(env["OPSLOOP_FSYNC"]) if "OPSLOOP_FSYNC" in env else cfg.server.fsync_on_commit,
        max_pending=cfg.server.max_pending,
        load_interval=cfg.server.load_interval,
        api_token=env.get("OPSLOOP_API_TOKEN"),
        retention_days=cfg.retention_days,
        time_scale=float(env.get("OPSLOOP_TIME_SCALE") or 1.0),
        role=env.get("OPSLOOP_ROLE") or "all",
        receiver_processes=_count(env, "OPSLOOP_RECEIVER_PROCESSES", cfg.server.receiver_processes),
        public_url=(env.get("OPSLOOP_PUBLIC_URL") or cfg.server.public_url or "").rstrip("/") or None,
        session_expiry=cfg.server.session_expiry,
        max_request_body=cfg.server.max_request_body,
    )
    return settings.with_(**(overrides or {}))
