"""Threshold and anomaly alerts on metrics, evaluated after the models they read are rebuilt.

An alert notifies once when its status changes to ``firing`` and once more when it recovers (``ok``);
it never repeats while the status stays the same. Notifications go through the project's outbound
channels (docs/project.md, "Outbound channels"): Slack (``channels.slack``; without a bot token, to the
outbox) or email (``channels.smtp``; without a host, to the outbox).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import outbox
from ..channels import SlackClient, SlackRefused, channels_of, smtp
from ..errors import TerminalDeliveryError
from ..narrow import opt_float, opt_number, opt_str
from .dashboards import sm_dependencies
from .engine import MetricQuery
from .periods import step, truncate
from .spec import Alert

if TYPE_CHECKING:
    from ..app import App
    from .service import MetricsService

log = logging.getLogger("opsloop.metrics.alerts")


@dataclass
class AlertState:
    name: str
    metric: str
    rule: str
    status: str
    value: float | None
    period: str | None
    message: str | None
    changed_at: float | None
    evaluated_at: float | None

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _rule(alert: Alert) -> str:
    if alert.condition is not None:
        return f"{alert.grain} value {alert.condition.strip()}"
    return f"{alert.grain} value beyond {alert.anomaly} standard deviations of the last {alert.lookback}"


def _holds(condition: str, value: float) -> bool:
    text = condition.strip()
    for op in ("<=", ">=", "==", "!=", "<", ">"):
        if text.startswith(op):
            limit = float(text[len(op):])
            return {"<=": value <= limit, ">=": value >= limit, "==": value == limit, "!=": value != limit,
                    "<": value < limit, ">": value > limit}[op]
    raise ValueError(condition)


class AlertRunner:
    def __init__(self, app: App, service: MetricsService) -> None:
        self.app = app
        self.service = service
        self._lock = asyncio.Lock()

    def alerts(self) -> dict[str, Alert]:
        return self.service.catalog.alerts

    def dependencies(self, alert: Alert) -> set[str]:
        cat = self.service.catalog
        return {d for sm in cat.semantic_models_of(alert.metric) for d in sm_dependencies(cat, sm)}

    async def evaluate_for(self, deps: set[str]) -> list[AlertState]:
        chosen = [a for a in self.alerts().values() if self.dependencies(a) & deps]
        out = []
        async with self._lock:
            for alert in chosen:
                try:
                    out.append(await asyncio.to_thread(self.evaluate, alert))
                except Exception:
                    log.exception("alert %s could not be evaluated", alert.name)
        return out

    def evaluate(self, alert: Alert) -> AlertState:
        """Compute the latest value, compare, store the status, and notify on a change."""
        today = self.service.today()
        start = step(truncate(today, alert.grain), alert.grain, -max(alert.lookback, 1))
        result = self.service.query(MetricQuery(alert.metric, alert.grain, start, today, [], list(alert.where)))
        values = [(None if row[0] is None else str(row[0]), opt_number(row[-1], "a metric value"))
                  for row in result.rows]
        period, value = values[-1] if values else (None, None)
        firing = False
        detail = ""
        if value is not None:
            if alert.condition is not None:
                firing = _holds(alert.condition, float(value))
                detail = f"{value:g} {alert.condition.strip()}"
            else:
                history = [float(v) for _, v in values[:-1] if v is not None]
                if len(history) >= 3:
                    mean = statistics.fmean(history)
                    spread = statistics.pstdev(history)
                    if spread > 0:
                        z = (float(value) - mean) / spread
                        firing = abs(z) > float(alert.anomaly or 0)
                        detail = f"{value:g} is {z:+.1f} standard deviations from the mean {mean:g}"
        status = "firing" if firing else "ok"
        label = result.label
        message = (f"Alert {alert.name}: {label} for {period} is {detail}" if firing
                   else f"Recovered {alert.name}: {label} for {period} is {value if value is not None else 'n/a'}")
        now = time.time()
        store = self.app.store
        previous = store.query("SELECT status FROM metric_alerts WHERE name = ?", (alert.name,))
        before = str(previous[0][0]) if previous else None
        changed = before != status
        if changed and (status == "firing" or before == "firing"):
            # notify first: if Slack or SMTP fails, the status is not saved and the next build retries
            self.notify(alert, message, status)
        with store.transaction() as cur:
            if previous:
                store.execute(cur, "UPDATE metric_alerts SET status = ?, value = ?, period = ?, message = ?, "
                              "evaluated_at = ?, changed_at = CASE WHEN ? = 1 THEN ? ELSE changed_at END "
                              "WHERE name = ?",
                              (status, value, period, message, now, int(changed), now, alert.name))
            else:
                store.execute(cur, "INSERT INTO metric_alerts (name, status, value, period, message, changed_at, "
                              "evaluated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                              (alert.name, status, value, period, message, now, now))
        return self.state(alert.name) or AlertState(alert.name, alert.metric, _rule(alert), status, value, period,
                                                    message, now, now)

    def notify(self, alert: Alert, message: str, status: str) -> None:
        channels = channels_of(self.app.project)
        if alert.notify.slack:
            if not channels.slack.sandbox:
                self._slack(SlackClient(channels.slack), alert.notify.slack, message)
            else:
                outbox.record(self.app.store, "slack", "chat.postMessage",
                              {"channel": alert.notify.slack, "text": message, "alert": alert.name,
                               "status": status}, target=alert.notify.slack, key=alert.name)
        if alert.notify.email:
            subject = f"[opsloop] {message}"
            if not channels.smtp.sandbox:
                from email.message import EmailMessage

                mail = EmailMessage()
                mail["From"] = channels.smtp.sender
                mail["To"] = alert.notify.email
                mail["Subject"] = subject
                mail.set_content(f"{message}\n\nMetric: {alert.metric}\nRule: {_rule(alert)}\n")
                smtp.send(channels.smtp, mail)
            else:
                outbox.record(self.app.store, "email", "send",
                              {"to": alert.notify.email, "subject": subject, "body": message, "alert": alert.name,
                               "status": status}, target=alert.notify.email, key=alert.name)

    def _slack(self, client: SlackClient, channel: str, message: str) -> None:
        try:
            client.post_message(channel, message)
        except SlackRefused as exc:
            raise TerminalDeliveryError(f"Slack refused the alert to {channel}: {exc.code} "
                                        "(check the channel name and that the bot is in it)") from None

    def state(self, name: str) -> AlertState | None:
        alert = self.alerts().get(name)
        if alert is None:
            return None
        rows = self.app.store.query(
            "SELECT status, value, period, message, changed_at, evaluated_at FROM metric_alerts WHERE name = ?",
            (name,))
        if not rows:
            return AlertState(name, alert.metric, _rule(alert), "unknown", None, None, None, None, None)
        r = rows[0]
        return AlertState(name, alert.metric, _rule(alert), str(r[0]), opt_float(r[1], "metric_alerts.value"),
                          opt_str(r[2], "metric_alerts.period"), opt_str(r[3], "metric_alerts.message"),
                          opt_float(r[4], "metric_alerts.changed_at"), opt_float(r[5], "metric_alerts.evaluated_at"))

    def states(self) -> list[AlertState]:
        return [s for name in sorted(self.alerts()) if (s := self.state(name)) is not None]
