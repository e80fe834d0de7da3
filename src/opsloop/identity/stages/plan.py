"""What every stage of one build reads: the configuration and the layout of the staged source columns."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import IdentityConfig


@dataclass
class Plan:
    cfg: IdentityConfig
    fields: list[str]
    """The golden record's fields, in order."""
    rule_types: list[str] = field(default_factory=list)
    """Identifier types some merge rule uses."""
    selects: list[str] = field(default_factory=list)
    """Per source, the SELECT of its records with ``node``, ``node_key``, ``row_hash`` and the mapped columns."""
    id_cols: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    """Per identifier type, the (source number, column alias) pairs that hold it."""
    f_cols: list[tuple[int, str, str]] = field(default_factory=list)
    """(source number, field, column alias) of every mapped field."""
    field_norm: dict[str, str] = field(default_factory=dict)
    """Fields normalised like an identifier type (``fields: {phone: {normalize: phone}}``)."""
    direct: bool = False
    """A first build: identifiers and field values go straight into the empty identity tables."""
    systems: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per system whose records changed: ``{"changed": n, "deleted": m}`` (stage 1)."""

    @classmethod
    def of(cls, cfg: IdentityConfig, fields: list[str]) -> Plan:
        return cls(cfg, fields, sorted({t for r in cfg.merge_rules for t in cfg.rule_types(r)}))
