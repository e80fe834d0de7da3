"""Settings resolved in this order: environment > ``.env`` > ``opsloop.yml`` > defaults."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypedDict, Unpack

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


AUTO_RECEIVERS_MAX = 4
"""The most receiver processes ``auto`` starts: past that the main process (the event log's one writer)
is the bottleneck, not the receivers (docs/webhooks.md, "Throughput")."""


def auto_receivers(cores: int) -> int:
    """What ``server.receiver_processes: auto`` starts on ``cores`` usable cores: one per core beyond the
    main process's, none on one core (a receiver there only takes CPU from the main process)."""
    return max(0, min(cores - 1, AUTO_RECEIVERS_MAX))


def _cgroup_cpu_limit(root: Path) -> float | None:
    """The CPUs a cgroup quota allows (a container's ``--cpus``), or None without one."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # cgroup v2: "max 100000" or "150000 100000"
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may run on: its CPU affinity, bounded by a cgroup CPU quota (whole CPUs)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cores = min(cores, math.floor(limit))
    return max(1, cores)


def _receivers(env: Mapping[str, str], default: int | Literal["auto"]) -> int | Literal["auto"]:
    text = env.get("OPSLOOP_RECEIVER_PROCESSES")
    if text and text.strip().lower() == "auto":
        return "auto"
    if text and not text.strip().isdigit():
        raise OpsloopError(f"OPSLOOP_RECEIVER_PROCESSES={text!r} is not a whole number; set it to auto, 0, 1, 2 ...")
    return int(text) if text else default


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
    """Seconds between attempts to take over a leader-only job (dispatcher, loader, scheduler)."""
    receiver_processes: int | Literal["auto"] = "auto"
    """Extra processes that take webhooks (``server.receiver_processes``); 0 answers them in-process;
    ``receivers()`` says how many ``auto`` means here."""
    session_expiry: float = 12 * 3600.0
    """Seconds a login session lasts (``server.session_expiry``)."""
    max_request_body: int = 1_000_000
    """Bytes a non-webhook request body may hold (``server.max_request_body``)."""

    def has_role(self, role: str) -> bool:
        """Whether this process runs ``role``'s work (``all`` runs everything)."""
        return self.role == "all" or self.role == role

    def receivers(self, cores: int | None = None) -> int:
        """How many receiver processes ``opsloop up`` starts: the number set, or for ``auto`` one per usable
        core beyond the first (``auto_receivers``); ``auto`` starts none in a process whose role is not
        ``all`` (past one machine, run more ``--role receiver`` processes instead)."""
        if self.receiver_processes != "auto":
            return self.receiver_processes
        if self.role != "all":
            return 0
        return auto_receivers(usable_cores() if cores is None else cores)

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
        receiver_processes=_receivers(env, cfg.server.receiver_processes),
        public_url=(env.get("OPSLOOP_PUBLIC_URL") or cfg.server.public_url or "").rstrip("/") or None,
        session_expiry=cfg.server.session_expiry,
        max_request_body=cfg.server.max_request_body,
    )
    return settings.with_(**(overrides or {}))
