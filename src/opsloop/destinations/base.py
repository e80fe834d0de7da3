"""The destination contract: one module per destination, three methods.

A destination receives batches of :class:`RowOp` and answers one :class:`RowResult` per row, keeping the
destination's own error text. Whole-batch problems are raised instead:

- ``TransientDeliveryError`` (429, 5xx, timeouts): the runner waits (``retry_after``) and sends the batch again;
- ``TerminalDeliveryError`` (a 4xx that rejects the whole request): the runner splits the batch in halves
  until the bad rows are isolated, and records the error against them — unless the error says
  ``every_request`` (401/403, an untrusted certificate: not the rows' fault), when every row of the batch
  gets it at once.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from ..channels import Channels
    from ..state import StateStore

Op = Literal["upsert", "update", "insert", "delete"]


class DestinationConfig(BaseModel):
    """Base of every destination's typed config (the ``destination:`` block of ``syncs/*.yml``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: str


@dataclass
class RowOp:
    """One row to deliver. ``fields`` holds mapped destination fields (nulls already dropped by policy)."""

    key: str
    op: Op
    fields: dict[str, object]
    idempotency_key: str
    dest_id: str | None = None
    """The id the destination gave this record on an earlier delivery, when known."""
    new: bool = False
    """True when opsloop has never delivered this key before."""


@dataclass
class RowResult:
    key: str
    ok: bool
    error: str | None = None
    dest_id: str | None = None
    created: bool = False
    """The destination created the record (opsloop owns it, so a mirror may delete it later)."""
    transient: bool = False


@dataclass
class DestinationContext:
    """What a destination may use from the running app, without importing it."""

    sync: str
    root: Path
    secret: Callable[[str], str | None]
    store: StateStore | None = None
    time_scale: float = 1.0
    extra: dict[str, object] = field(default_factory=dict)
    channels: Channels | None = None
    """The project's outbound channels (:class:`opsloop.channels.Channels`); when None, resolved on first use
    by ``channels_from``, else from the environment alone (``SLACK_*``, ``SMTP_*``, ``OPSLOOP_HTTP_*``)."""
    channels_from: Callable[[], Channels] | None = None

    def outbound(self) -> Channels:
        """The outbound channels (Slack, SMTP, HTTP) this destination sends through."""
        if self.channels is None and self.channels_from is not None:
            self.channels = self.channels_from()
        if self.channels is None:
            from ..channels import resolve_channels
            from ..project.config import ChannelsConfig

            env = _Env(self.secret)
            self.channels = resolve_channels(ChannelsConfig(), env, self.root)
        return self.channels

    def require_secret(self, name: str | None, what: str) -> str:
        from ..errors import TerminalDeliveryError

        value = self.secret(name) if name else None
        if not value:
            raise TerminalDeliveryError(f"{what}: the secret {name} is not set; add {name}=... to .env",
                                        every_request=True)
        return value


class _Env(Mapping[str, str]):
    """The environment seen through a ``secret`` lookup (for channel settings without a project)."""

    def __init__(self, secret: Callable[[str], str | None]) -> None:
        self._secret = secret

    def __getitem__(self, name: str) -> str:
        value = self._secret(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class Destination(ABC):
    """Base class for destinations; subclass it, set the class flags, implement ``send``."""

    type: ClassVar[str]
    Config: ClassVar[builtins.type[DestinationConfig]]
    IDEMPOTENT: ClassVar[bool] = False
    """Sending the same row twice has no extra effect (upsert by key, or an idempotency key the API honours).
    After a crash, rows that were in flight are sent again only to idempotent destinations."""
    DELETES: ClassVar[bool] = False
    """The destination can delete records (needed by ``mode: mirror``)."""
    MAX_BATCH: ClassVar[int] = 100
    """The largest batch the API accepts in one request."""
    FIELDS: ClassVar[frozenset[str] | None] = None
    """Fields the destination declares statically; None means any field (or ask ``declared_fields``)."""
    REQUESTS_PER_SECOND: ClassVar[float | None] = None
    """Default pacing when the sync sets no rate limit (the vendor's documented limit)."""

    def __init__(self, config: BaseModel, ctx: DestinationContext) -> None:
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, not {type(config).__name__}")
        self.config = config
        """This destination's typed config (a subclass narrows the type to its ``Config``)."""
        self.ctx = ctx

    @classmethod
    def validate(cls, config: BaseModel,
                 secret: Callable[[str], str | None]) -> list[tuple[tuple[str, ...], str]]:
        """Static checks beyond the typed config: ``[(location under destination:, message)]``."""
        problems: list[tuple[tuple[str, ...], str]] = []
        for name in ("token_env", "secret_env", "password_env", "url_env"):
            env = getattr(config, name, None)
            if env and not secret(env):
                problems.append(((name,), f"the secret {env} is not set; add {env}=... to .env or the environment"))
        return problems

    def declared_fields(self) -> set[str] | None:
        """The fields a mapping may write; may ask the API (HubSpot properties, Postgres columns)."""
        return set(self.FIELDS) if self.FIELDS is not None else None

    @abstractmethod
    def send(self, batch: list[RowOp]) -> list[RowResult]:
        """Deliver ``batch``; one result per row, in any order, matched by ``key``."""

    def close(self) -> None:
        """Release connections."""
