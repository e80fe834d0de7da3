"""The data behind each dashboard tile, as JSON the page draws (the page never sees SQL)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlglot import exp

from ..errors import WarehouseError
from ..narrow import opt_number
from .catalog import Catalog
from .compiler import MetricQueryError, column_expr, compile_rows, placeholder
from .engine import MetricEngine, MetricQuery
from .periods import as_date, as_datetime, parse_since, periods_apart, periods_between, step, truncate
from .spec import Dashboard, Highlight, SemanticModel, Tile

RAW_EVENTS = "raw.events"


@dataclass
class BoardFilters:
    """What the viewer chose: a time range (``30d`` or a date) and ``dimension=value`` filters."""

    since: str | None = None
    where: list[str] = field(default_factory=list)


def tile_title(catalog: Catalog, tile: Tile) -> str:
    if tile.title:
        return tile.title
    if tile.metric and tile.metric in catalog.metrics:
        metric = catalog.metrics[tile.metric]
        return metric.label or metric.name.replace("_", " ").capitalize()
    if tile.type == "funnel":
        return "Funnel"
    return tile.type.capitalize()


def tile_dependencies(catalog: Catalog, tile: Tile) -> set[str]:
    """Names of models (``model:``) and relations the tile reads; a build of any refreshes the tile."""
    models: list[SemanticModel] = []
    for name in [*([tile.metric] if tile.metric else []), *tile.metrics]:
        models.extend(catalog.semantic_models_of(name))
    if tile.type == "cohort":
        for ref in (tile.signup, tile.activity):
            sm = catalog.semantic_models.get(str(ref).partition(".")[0])
            if sm:
                models.append(sm)
    deps = {dep for sm in models for dep in sm_dependencies(catalog, sm)}
    if tile.type == "timeseries" and tile.highlights and tile.metric:
        for h in highlights_for(catalog, tile.metric, tile.highlights):
            if h.event:
                deps.add(f"event:{h.event}")
            elif h.semantic_model in catalog.semantic_models:
                deps |= sm_dependencies(catalog, catalog.semantic_models[h.semantic_model])
    return deps


def sm_dependencies(catalog: Catalog, sm: SemanticModel) -> set[str]:
    out = set()
    if sm.relation:
        out.add(sm.relation)
    name = catalog.model_name(sm)
    if name:
        out.add(name)
    return out


def highlights_for(catalog: Catalog, metric_name: str, chosen: bool | list[str] = True) -> list[Highlight]:
    """The highlights a tile draws: those it names (in its order), or with ``True`` every highlight of the
    metric's entities."""
    if chosen is False:
        return []
    if isinstance(chosen, list):
        return [catalog.highlights[n] for n in chosen if n in catalog.highlights]
    entities = catalog.entities_of(metric_name)
    return [h for h in catalog.highlights.values() if h.entity in entities]


class TileRenderer:
    """Computes tiles with one ``MetricEngine``; ``today`` is injectable for tests."""

    def __init__(self, engine: MetricEngine) -> None:
        self.engine = engine
        self.catalog = engine.catalog

    def render(self, board: Dashboard, index: int, filters: BoardFilters) -> dict[str, object]:
        tile = board.tiles[index]
        base: dict[str, object] = {"id": index, "type": tile.type, "title": tile_title(self.catalog, tile),
                                "refreshed_at": time.time()}
        try:
            base.update(self._render(board, tile, filters))
        except MetricQueryError as exc:
            base["error"] = str(exc)
        except Exception as exc:  # a warehouse error shows in the tile, not as a broken page
            base["error"] = f"{type(exc).__name__}: {exc}"
        return base

    def _where(self, metric: str, tile: Tile, filters: BoardFilters) -> list[str]:
        allowed = self.engine.allowed_dimensions(metric)
        out = list(tile.where)
        for item in filters.where:
            name = item.split("=")[0].split("!")[0].split("<")[0].split(">")[0].strip().split("__")[-1]
            if name in allowed:
                out.append(item)
        return out

    def _since(self, board: Dashboard, tile: Tile, filters: BoardFilters) -> str | None:
        return filters.since or tile.since or board.filters.time_range

    def _render(self, board: Dashboard, tile: Tile, filters: BoardFilters) -> dict[str, object]:
        if tile.type == "kpi":
            return self._kpi(tile, filters)
        if tile.type == "timeseries":
            return self._timeseries(board, tile, filters)
        if tile.type == "table":
            return self._table(board, tile, filters)
        if tile.type == "funnel":
            return self._funnel(board, tile, filters)
        return self._cohort(board, tile, filters)

    def _total(self, metric: str, since: date | None, until: date, where: list[str]) -> float | None:
        result = self.engine.query(MetricQuery(metric, None, since, until, [], where))
        return opt_number(result.rows[0][-1], "a metric value") if result.rows else None

    def _kpi(self, tile: Tile, filters: BoardFilters) -> dict[str, object]:
        metric = str(tile.metric)
        where = self._where(metric, tile, filters)
        today = self.engine.today()
        start = truncate(today, tile.period)
        value = self._total(metric, start, today, where)
        out: dict[str, object] = {"metric": metric, "value": value, "format": self.catalog.metrics[metric].format,
                               "period": tile.period, "since": start.isoformat(), "until": today.isoformat()}
        if tile.compare == "previous_period":
            prev_start = step(start, tile.period, -1)
            prev_until = min(step(today, tile.period, -1) if tile.period in ("day", "week")
                             else _same_day(prev_start, today), step(start, "day", -1))
            previous = self._total(metric, prev_start, prev_until, where)
            out["previous"] = previous
            out["change"] = (value - previous) / abs(previous) if value is not None and previous else None
        return out

    def _timeseries(self, board: Dashboard, tile: Tile, filters: BoardFilters) -> dict[str, object]:
        metric = str(tile.metric)
        grain = tile.grain or "day"
        since = self._since(board, tile, filters)
        q = MetricQuery.from_params(metric, grain, since, None, tile.by, self._where(metric, tile, filters))
        result = self.engine.query(q)
        series: dict[str, dict[str, list[object]]] = {}
        for row in result.rows:
            name = " / ".join(str(v) for v in row[1:-1]) if tile.by else result.label
            s = series.setdefault(name, {"x": [], "y": []})
            s["x"].append(row[0])
            s["y"].append(row[-1])
        markers: list[dict[str, object]] = []
        if tile.highlights:
            totals: dict[str, float] = {}
            for row in result.rows:
                bucket = str(row[0])
                totals[bucket] = totals.get(bucket, 0.0) + (opt_number(row[-1], "a metric value") or 0.0)
            for h in highlights_for(self.catalog, metric, tile.highlights):
                for when, subject in self.highlight_points(h, q.since):
                    day = as_date(when)
                    if day is None:
                        continue
                    period = truncate(day, grain).isoformat()
                    at = when.isoformat() if isinstance(when, (datetime, date)) else str(when)
                    # an annotation at the time it happened (x), not a point on the series; ``period`` and
                    # ``y`` say which bar or point it falls in, for a reader of the JSON
                    markers.append({"x": at, "at": at, "period": period, "y": totals.get(period, 0.0),
                                    "highlight": h.name, "label": h.label,
                                    "subject": "" if subject is None else str(subject), "color": h.color})
        return {"metric": metric, "grain": grain, "chart": tile.chart, "format": result.format,
                "series": [{"name": k, **v} for k, v in series.items()], "markers": markers}

    def highlight_points(self, h: Highlight, since: date | None) -> list[tuple[object, object]]:
        wh = self.engine.warehouse
        if h.semantic_model:
            sm = self.catalog.semantic_models[h.semantic_model]
            cols = {"t": str(h.time_dimension)}
            if h.subject_dimension:
                cols["subject"] = h.subject_dimension
            sql, params = compile_rows(sm, self.engine.resolve(sm), cols, str(h.time_dimension), since, None,
                                       h.filter, wh.dialect, limit=500)
            rows = self.engine.rows(sql, params, *_deps(self.catalog, sm, self.engine.resolve(sm)))
            return [(as_datetime(r[0]), r[1] if len(r) > 1 else None) for r in rows]
        event_params: list[object] = []
        select = (exp.select("received_at", "payload").from_(exp.to_table(RAW_EVENTS))
                  .where(exp.EQ(this=exp.column("name"), expression=placeholder(wh.dialect, event_params, h.event))))
        if since is not None:
            select = select.where(exp.GTE(this=exp.column("received_at"),
                                          expression=placeholder(wh.dialect, event_params, since)))
        sql = select.order_by("received_at").limit(500).sql(dialect=wh.dialect)
        try:
            found = self.engine.rows(sql, event_params, {f"event:{h.event}", RAW_EVENTS})
        except WarehouseError:  # raw.events appears when the server first starts
            return []
        out = []
        for received_at, payload in found:
            data = json.loads(payload) if isinstance(payload, str) else payload
            out.append((received_at, _dotted(data, h.subject) if h.subject else None))
        return out

    def _table(self, board: Dashboard, tile: Tile, filters: BoardFilters) -> dict[str, object]:
        metric = str(tile.metric)
        q = MetricQuery.from_params(metric, tile.grain, self._since(board, tile, filters), None, tile.by,
                                    self._where(metric, tile, filters), tile.percentile)
        result = self.engine.query(q)
        rows = sorted(result.rows, key=lambda r: (r[-1] is None, r[-1] if r[-1] is not None else 0))
        return {"metric": metric, "format": result.format, "columns": result.columns, "rows": rows[: tile.limit]}

    def _funnel(self, board: Dashboard, tile: Tile, filters: BoardFilters) -> dict[str, object]:
        since = parse_since(self._since(board, tile, filters))
        today = self.engine.today()
        steps = []
        for name in tile.metrics:
            metric = self.catalog.metrics[name]
            value = self._total(name, since, today, self._where(name, tile, filters))
            steps.append({"metric": name, "label": metric.label or name, "value": value})
        return {"steps": steps}

    def _cohort(self, board: Dashboard, tile: Tile, filters: BoardFilters) -> dict[str, object]:
        grain = tile.grain or "week"
        wh = self.engine.warehouse
        since = parse_since(self._since(board, tile, filters))
        if since is not None:  # whole cohorts: a range that starts mid-week keeps that week's every signup
            since = truncate(since, grain)
        s_name, _, s_dim = str(tile.signup).partition(".")
        a_name, _, a_dim = str(tile.activity).partition(".")
        s_sm, a_sm = self.catalog.semantic_models[s_name], self.catalog.semantic_models[a_name]
        entity = str(tile.entity)
        sql, params = compile_rows(s_sm, self.engine.resolve(s_sm), {"id": entity, "t": s_dim}, s_dim, since, None,
                                   dialect=wh.dialect, limit=1_000_000)
        joined: dict[object, date] = {}
        for ident, when in self.engine.rows(sql, params, *_deps(self.catalog, s_sm, self.engine.resolve(s_sm))):
            day = as_date(when)
            if day is not None and (ident not in joined or day < joined[ident]):
                joined[ident] = day
        sql, params = compile_rows(a_sm, self.engine.resolve(a_sm), {"id": entity, "t": a_dim}, a_dim, since, None,
                                   dialect=wh.dialect, limit=5_000_000)
        active: dict[tuple[date, int], set[object]] = {}
        for ident, when in self.engine.rows(sql, params, *_deps(self.catalog, a_sm, self.engine.resolve(a_sm))):
            day = as_date(when)
            if ident not in joined or day is None:
                continue
            cohort = truncate(joined[ident], grain)
            k = periods_apart(cohort, truncate(day, grain), grain)
            if 0 <= k < tile.periods:
                active.setdefault((cohort, k), set()).add(ident)
        sizes: dict[date, int] = {}
        for day in joined.values():
            sizes[truncate(day, grain)] = sizes.get(truncate(day, grain), 0) + 1
        today = truncate(self.engine.today(), grain)
        rows = []
        for cohort in sorted(sizes):
            cells: list[dict[str, object] | None] = []
            for k in range(tile.periods):
                if step(cohort, grain, k) > today:
                    cells.append(None)
                    continue
                count = len(active.get((cohort, k), ()))
                cells.append({"count": count, "rate": round(count / sizes[cohort], 4)})
            rows.append({"cohort": cohort.isoformat(), "size": sizes[cohort], "cells": cells})
        return {"grain": grain, "periods": list(range(tile.periods)), "rows": rows,
                "spine": [p.isoformat() for p in periods_between(min(sizes), today, grain)] if sizes else []}


def _deps(catalog: Catalog, sm: SemanticModel, relation: str) -> tuple[set[str], bool]:
    """What a query over ``sm`` depends on, and whether its freshness is known (so it may be cached)."""
    return {relation, *sm_dependencies(catalog, sm)}, bool(sm.model) or relation == RAW_EVENTS


def _same_day(month_start: date, today: date) -> date:
    """The same day of the month as ``today`` inside the month starting ``month_start`` (clamped)."""
    from .periods import add_months

    months = (today.year - month_start.year) * 12 + today.month - month_start.month
    return add_months(today, -months)


def _dotted(data: object, path: str) -> object:
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


__all__ = ["BoardFilters", "TileRenderer", "column_expr", "tile_dependencies"]
