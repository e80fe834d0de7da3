"""The outbound channels' settings: ``channels:`` of ``opsloop.yml`` first, environment variables for
every key left out, then defaults. Secrets (tokens, passwords) only ever come from the environment."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict, TypeVar, Unpack, overload

from ..errors import OpsloopError
from ..project.config import ChannelsConfig

if TYPE_CHECKING:
    from ..project import Project

Security = Literal["starttls", "tls", "none"]
SLACK_API_URL = "https://slack.com/api/"


class ChannelConfigError(OpsloopError):
    """A channel setting (in ``opsloop.yml`` or an environment variable) has a value that cannot work;
    ``channel`` names the channel (``slack``, ``smtp``, ``http``)."""

    channel: str = ""


@dataclass(frozen=True)
class SlackSettings:
    """How to reach the Slack Web API. ``token`` is None in the sandbox (messages go to the outbox)."""

    token_env: str = "SLACK_BOT_TOKEN"  # noqa: S105 (the name of an environment variable)
    token: str | None = field(default=None, repr=False)
    api_url: str = SLACK_API_URL
    timeout: float = 15.0
    ca_file: Path | None = None
    pace: float = 1.0
    """Messages per second per channel for workflow posts (0: no pacing)."""

    @property
    def sandbox(self) -> bool:
        return not self.token


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server. ``host`` None is the sandbox (messages go to the outbox)."""

    host: str | None = None
    port: int = 587
    security: Security = "starttls"
    username_env: str = "SMTP_USERNAME"
    password_env: str = "SMTP_PASSWORD"  # noqa: S105 (the name of an environment variable)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "opsloop@localhost"
    timeout: float = 30.0
    ca_file: Path | None = None

    @property
    def sandbox(self) -> bool:
        return not self.host


@dataclass(frozen=True)
class HttpSettings:
    """Outbound HTTP: per-request timeout, CAs to trust, and in-call retries of 429/502/503/504."""

    timeout: float = 30.0
    ca_file: Path | None = None
    retries: int = 2
    """Extra attempts after a 429/502/503/504 (or a refused connection) before the caller sees the error."""
    max_retry_delay: float = 30.0
    """A ``Retry-After`` longer than this is not waited for in the call; the error carries it instead."""


@dataclass(frozen=True)
class Channels:
    """The three outbound channels of one project, resolved."""

    slack: SlackSettings = field(default_factory=SlackSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    http: HttpSettings = field(default_factory=HttpSettings)


def _number(env: Mapping[str, str], name: str) -> float | None:
    text = (env.get(name) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ChannelConfigError(f"{name}={text!r} is not a number; set it to e.g. 30") from None
    if value < 0:
        raise ChannelConfigError(f"{name}={text!r} is negative; set it to 0 or more")
    return value


def _port(env: Mapping[str, str], name: str) -> int | None:
    text = (env.get(name) or "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ChannelConfigError(f"{name}={text!r} is not a TCP port; set it to a number from 1 to 65535 "
                                 "(or channels.smtp.port in opsloop.yml)")
    return int(text)


def _security(text: str | None) -> Security | None:
    if not text:
        return None
    value = text.strip().lower()
    if value in ("starttls", "none"):
        return "starttls" if value == "starttls" else "none"
    if value in ("tls", "ssl"):
        return "tls"
    raise ChannelConfigError(f"SMTP_TLS={text!r} is not one of starttls, tls (or ssl), none "
                             "(or set channels.smtp.security in opsloop.yml)")


def ca_path(root: Path, value: str | None) -> Path | None:
    """A CA bundle path relative to the project folder; it must exist."""
    if not value:
        return None
    path = Path(value)
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise ChannelConfigError(f"the CA file {value} does not exist (looked at {path}); give a PEM file "
                                 "relative to the project folder")
    return path


T = TypeVar("T")


def _first(*values: T | None) -> T | None:
    """The first value that is set (not None, not empty text)."""
    return next((v for v in values if v is not None and v != ""), None)


def _pick(*values: T | None, default: T) -> T:
    """The first value that is set, else ``default``."""
    found = _first(*values)
    return default if found is None else found


def resolve_channels(config: ChannelsConfig, env: Mapping[str, str], root: Path) -> Channels:
    """The channels for a project: each key from ``opsloop.yml``, else its environment variable, else the
    default. Raises :class:`ChannelConfigError` naming the variable or key for a value that cannot work."""
    def built(name: str, build: Callable[[ChannelsConfig, Mapping[str, str], Path], T]) -> T:
        try:
            return build(config, env, root)
        except ChannelConfigError as exc:
            exc.channel = name
            raise

    return Channels(slack=built("slack", _slack), smtp=built("smtp", _smtp), http=built("http", _http))


def _slack(config: ChannelsConfig, env: Mapping[str, str], root: Path) -> SlackSettings:
    s = config.slack
    token_env = s.token_env or "SLACK_BOT_TOKEN"
    api_url = _pick(s.api_url, env.get("SLACK_API_URL"), default=SLACK_API_URL)
    return SlackSettings(
        token_env=token_env, token=env.get(token_env) or None,
        api_url=api_url if api_url.endswith("/") else api_url + "/",
        timeout=float(_pick(s.timeout, _number(env, "SLACK_TIMEOUT"), default=15.0)),
        ca_file=ca_path(root, _first(s.ca_file, env.get("SLACK_CA_FILE"))),
        pace=float(_pick(s.pace, _number(env, "SLACK_PACE"), default=1.0)),
    )


def _smtp(config: ChannelsConfig, env: Mapping[str, str], root: Path) -> SmtpSettings:
    m = config.smtp
    # OPSLOOP_SMTP_* was the metric alerts' plain-SMTP configuration; it still works when SMTP_HOST is unset
    legacy = not m.host and not env.get("SMTP_HOST") and bool(env.get("OPSLOOP_SMTP_HOST"))
    security: Security = m.security or _security(env.get("SMTP_TLS")) or ("none" if legacy else "starttls")
    default_port = {"starttls": 587, "tls": 465, "none": 25}[security]
    username_env = m.username_env or "SMTP_USERNAME"
    password_env = m.password_env or "SMTP_PASSWORD"
    return SmtpSettings(
        host=_first(m.host, env.get("SMTP_HOST"), env.get("OPSLOOP_SMTP_HOST")),
        port=int(_pick(m.port, _port(env, "SMTP_PORT"), _port(env, "OPSLOOP_SMTP_PORT") if legacy else None,
                       default=default_port)),
        security=security, username_env=username_env, password_env=password_env,
        username=env.get(username_env) or None, password=env.get(password_env) or None,
        sender=str(_pick(m.from_, env.get("SMTP_FROM"), env.get("OPSLOOP_SMTP_FROM"), default="opsloop@localhost")),
        timeout=float(_pick(m.timeout, _number(env, "SMTP_TIMEOUT"), default=30.0)),
        ca_file=ca_path(root, _first(m.ca_file, env.get("SMTP_CA_FILE"))),
    )


def _http(config: ChannelsConfig, env: Mapping[str, str], root: Path) -> HttpSettings:
    h = config.http
    return HttpSettings(
        timeout=float(_pick(h.timeout, _number(env, "OPSLOOP_HTTP_TIMEOUT"), default=30.0)),
        ca_file=ca_path(root, _first(h.ca_file, env.get("OPSLOOP_HTTP_CA_FILE"))),
        retries=int(_pick(h.retries, _number(env, "OPSLOOP_HTTP_RETRIES"), default=2)),
        max_retry_delay=float(_pick(h.max_retry_delay, _number(env, "OPSLOOP_HTTP_MAX_RETRY_DELAY"), default=30.0)),
    )


def channels_of(project: Project) -> Channels:
    """The resolved channels of a loaded :class:`~opsloop.project.Project`."""
    return resolve_channels(project.config.channels, project.env, project.root)


S = TypeVar("S", SlackSettings, SmtpSettings, HttpSettings)


class SlackOverrides(TypedDict, total=False):
    token_env: str | None
    token: str | None
    api_url: str | None
    timeout: float | None
    ca_file: Path | None
    pace: float | None


class SmtpOverrides(TypedDict, total=False):
    host: str | None
    port: int | None
    security: Security | None
    username_env: str | None
    password_env: str | None
    username: str | None
    password: str | None
    sender: str | None
    timeout: float | None
    ca_file: Path | None


class HttpOverrides(TypedDict, total=False):
    timeout: float | None
    ca_file: Path | None
    retries: int | None
    max_retry_delay: float | None


@overload
def with_overrides(settings: SlackSettings, **changes: Unpack[SlackOverrides]) -> SlackSettings: ...


@overload
def with_overrides(settings: SmtpSettings, **changes: Unpack[SmtpOverrides]) -> SmtpSettings: ...


@overload
def with_overrides(settings: HttpSettings, **changes: Unpack[HttpOverrides]) -> HttpSettings: ...


def with_overrides(settings: S, **changes: object) -> S:
    """A copy of channel settings with the given keys replaced (None values keep the channel's)."""
    unknown = set(changes) - {f.name for f in fields(settings)}
    if unknown:
        raise TypeError(f"{type(settings).__name__} has no {', '.join(sorted(unknown))}")
    copied = copy.copy(settings)
    for name, value in changes.items():
        if value is not None:
            object.__setattr__(copied, name, value)  # a new frozen copy, not shared yet (as replace() sets it)
    return copied
