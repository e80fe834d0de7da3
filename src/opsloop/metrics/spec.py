"""Typed configuration for ``metrics/*.yml`` and ``dashboards/*.yml``.

The metric files follow a MetricFlow-compatible subset (``semantic_models:`` and ``metrics:``), so dbt
users recognise them; ``highlights:`` and ``alerts:`` are opsloop's additions.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

GRAINS = ("day", "week", "month", "quarter", "year")
Grain = Literal["day", "week", "month", "quarter", "year"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a valid name: use letters, digits and _ (not starting with a digit)")
    return value


Name = Annotated[str, AfterValidator(_check_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Entity(_Strict):
    name: Name
    type: Literal["primary", "unique", "foreign", "natural"] = "primary"
    expr: str | None = None


class TypeParams(_Strict):
    time_granularity: Grain = "day"


class Dimension(_Strict):
    name: Name
    type: Literal["categorical", "time"] = "categorical"
    expr: str | None = None
    label: str | None = None
    type_params: TypeParams | None = None


class AggParams(_Strict):
    percentile: float = 0.5

    @field_validator("percentile")
    @classmethod
    def _range(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError("percentile must be between 0 and 1, e.g. 0.9")
        return value


Agg = Literal["sum", "count", "count_distinct", "avg", "min", "max", "median", "percentile", "sum_boolean"]


class Measure(_Strict):
    name: Name
    agg: Agg
    expr: str | None = None
    filter: str | None = None
    """A SQL condition over the semantic model's columns; rows that fail it are not aggregated."""
    agg_time_dimension: str | None = None
    agg_params: AggParams | None = None
    label: str | None = None
    description: str | None = None


class Defaults(_Strict):
    agg_time_dimension: str | None = None


class SemanticModel(_Strict):
    name: Name
    model: str | None = None
    """``ref('customers')`` (a model built by opsloop's model engine) or a relation ``schema.table``."""
    relation: str | None = None
    """An explicit warehouse relation, ``schema.table``; wins over ``model``."""
    filter: str | None = None
    """A SQL condition applied to every row first (e.g. ``name = 'purchase.completed'`` over raw.events)."""
    description: str | None = None
    defaults: Defaults | None = None
    entities: list[Entity] = Field(default_factory=list)
    dimensions: list[Dimension] = Field(default_factory=list)
    measures: list[Measure] = Field(default_factory=list)

    @model_validator(mode="after")
    def _source(self) -> SemanticModel:
        if not self.model and not self.relation:
            raise ValueError("a semantic model needs model: ref('name') or relation: schema.table")
        return self


class MetricInput(_Strict):
    name: Name
    alias: str | None = None
    filter: str | None = None
    offset_window: str | None = None
    """Shift this input back by a calendar amount, e.g. ``1 month`` (period-over-period)."""


class MetricTypeParams(_Strict):
    measure: str | dict[str, object] | None = None
    numerator: str | MetricInput | None = None
    denominator: str | MetricInput | None = None
    expr: str | None = None
    metrics: list[str | MetricInput] | None = None
    window: str | None = None
    """Cumulative over a trailing window, e.g. ``7 days`` (default: all time)."""
    grain_to_date: Grain | None = None
    """Cumulative that restarts every grain, e.g. ``month`` for month-to-date."""


class Metric(_Strict):
    name: Name
    type: Literal["simple", "ratio", "cumulative", "derived"] = "simple"
    label: str | None = None
    description: str | None = None
    type_params: MetricTypeParams = Field(default_factory=MetricTypeParams)
    filter: str | None = None
    format: Literal["number", "percent", "currency", "days"] = "number"

    @model_validator(mode="after")
    def _params(self) -> Metric:
        p = self.type_params
        if self.type in ("simple", "cumulative") and not p.measure:
            raise ValueError(f"a {self.type} metric needs type_params.measure")
        if self.type == "ratio" and not (p.numerator and p.denominator):
            raise ValueError("a ratio metric needs type_params.numerator and type_params.denominator")
        if self.type == "derived" and not (p.expr and p.metrics):
            raise ValueError("a derived metric needs type_params.expr and type_params.metrics")
        if p.window and p.grain_to_date:
            raise ValueError("a cumulative metric takes window or grain_to_date, not both")
        return self

    @property
    def measure_name(self) -> str:
        m = self.type_params.measure
        if isinstance(m, dict):
            return str(m.get("name"))
        return str(m)


class Highlight(_Strict):
    """A business event drawn as a marker on every time-series chart of the same entity."""

    name: Name
    label: str
    entity: str
    event: str | None = None
    """An event name in the event log (``raw.events``), e.g. ``purchase.completed``."""
    subject: str | None = None
    """For ``event``: the dotted payload path naming the subject (``customer.name``)."""
    semantic_model: str | None = None
    """Or: rows of a semantic model, one marker per row."""
    time_dimension: str | None = None
    subject_dimension: str | None = None
    filter: str | None = None
    color: str | None = None

    @model_validator(mode="after")
    def _source(self) -> Highlight:
        if bool(self.event) == bool(self.semantic_model):
            raise ValueError("a highlight takes either event: NAME or semantic_model: NAME")
        if self.semantic_model and not self.time_dimension:
            raise ValueError("a highlight over a semantic model needs time_dimension")
        return self


class Notify(_Strict):
    slack: str | None = None
    """A Slack channel, e.g. ``#alerts`` (sent with SLACK_BOT_TOKEN, or recorded in the outbox)."""
    email: str | None = None


class Alert(_Strict):
    name: Name
    metric: str
    grain: Grain = "day"
    condition: str | None = None
    """A threshold, e.g. ``< 5`` or ``> 2``, checked against the latest period's value."""
    anomaly: float | None = None
    """Or: fire when the latest value is more than this many standard deviations from the lookback mean."""
    lookback: int = 28
    where: list[str] = Field(default_factory=list)
    notify: Notify = Field(default_factory=Notify)
    description: str | None = None

    @model_validator(mode="after")
    def _rule(self) -> Alert:
        if (self.condition is None) == (self.anomaly is None):
            raise ValueError("an alert takes either condition: '< 5' or anomaly: 3 (standard deviations)")
        if self.condition is not None and not re.match(r"^\s*(<=|>=|<|>|==|!=)\s*-?\d+(\.\d+)?\s*$", self.condition):
            raise ValueError(f"condition {self.condition!r} should look like '< 5', '>= 2.5' or '!= 0'")
        return self


class MetricsFile(_Strict):
    semantic_models: list[SemanticModel] = Field(default_factory=list)
    metrics: list[Metric] = Field(default_factory=list)
    highlights: list[Highlight] = Field(default_factory=list)
    alerts: list[Alert] = Field(default_factory=list)


# -- dashboards ------------------------------------------------------------------------------------


class Tile(_Strict):
    type: Literal["kpi", "timeseries", "table", "funnel", "cohort"]
    title: str | None = None
    metric: str | None = None
    metrics: list[str] = Field(default_factory=list)
    """For ``funnel`` (the steps, in order) and for a ``table`` of several metrics."""
    grain: Grain | None = None
    since: str | None = None
    """The tile's own time range (``30d``, ``2026-01-01``); the dashboard's range filter overrides it."""
    by: list[str] = Field(default_factory=list)
    where: list[str] = Field(default_factory=list)
    chart: Literal["line", "bar", "area"] = "line"
    compare: Literal["previous_period", "none"] = "previous_period"
    period: Grain = "month"
    """For ``kpi``: the value of the current period (``month``: this month so far) against the previous one."""
    percentile: bool = False
    """For ``table``: add each row's percentile among the rows (``PERCENT_RANK``)."""
    limit: int = 100
    refresh: str | None = None
    """Refresh on a schedule too (``5m``), besides on rebuilds of the models the tile reads."""
    highlights: bool | list[str] = True
    """For ``timeseries``: which highlights to draw as annotations at the time each event happened: a list
    of highlight names (``[customer_churned]``), ``true`` for every highlight of the metric's entities,
    ``false`` for none."""
    # cohort
    entity: str | None = None
    signup: str | None = None
    """For ``cohort``: ``semantic_model.time_dimension`` when each entity joined."""
    activity: str | None = None
    """For ``cohort``: ``semantic_model.time_dimension`` of each entity's activity."""
    periods: int = 8
    width: Literal[1, 2, 3] = 1

    @model_validator(mode="after")
    def _needs(self) -> Tile:
        if self.type in ("kpi", "timeseries", "table") and not (self.metric or self.metrics):
            raise ValueError(f"a {self.type} tile needs metric: NAME")
        if self.type == "funnel" and len(self.metrics) < 2:
            raise ValueError("a funnel tile needs metrics: [step1, step2, ...] (two or more)")
        if self.type == "cohort" and not (self.entity and self.signup and self.activity):
            raise ValueError("a cohort tile needs entity, signup (model.time_dim) and activity (model.time_dim)")
        if self.type == "cohort" and (self.grain or "week") not in ("week", "month", "day"):
            raise ValueError("a cohort tile's grain is day, week or month")
        return self


class DashboardFilters(_Strict):
    time_range: str | None = "90d"
    """The default range of the time-range filter (``30d``, ``12w``, ``2026-01-01``)."""
    dimensions: list[str] = Field(default_factory=list)
    """Dimensions offered as filters; they apply to every tile whose metric has them."""


class Dashboard(_Strict):
    name: str = ""
    title: str | None = None
    description: str | None = None
    filters: DashboardFilters = Field(default_factory=DashboardFilters)
    tiles: list[Tile] = Field(default_factory=list)
