"""POST an escalation to a webhook: generic JSON, Slack, PagerDuty Events v2 or Alertmanager.

Each attempt is one POST straight to the configured host (no proxy), whole within ``timeout``:
at the deadline its socket is shut, however slowly the receiver drips its answer. Only a lost
connection, 429 and 5xx are retried (tenacity, exponential wait, ``sleep`` passed in); any other
answer is final, and a redirect is never followed (it would turn the POST into a GET). Errors
name the webhook as ``redact.url`` shows it, by scheme and host: its path and query may hold a
token. The caller redacts the alert and audits the escalation, delivered or not.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from healer import redact
from healer.errors import NotifyError
from healer.vocabulary import AlertStatus

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_ANSWER = 64 * 1024  # bytes of the receiver's answer read; the status is what counts


class _Retry(Exception):
    """An attempt worth repeating: no connection, no whole answer in time, 429 or 5xx."""


def _cut(connection: http.client.HTTPConnection, fired: threading.Event) -> None:
    """The attempt's deadline: shut its socket, which ends any read in progress."""
    fired.set()
    if connection.sock is not None:
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_RDWR)


_PAGERDUTY_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}


TRIGGERED, RESOLVED = AlertStatus.TRIGGERED.value, AlertStatus.RESOLVED.value


@dataclass(frozen=True)
class Alert:
    """What an escalation says: ``status`` triggered, or resolved; to which ``tier``."""

    incident: str
    scenario: str
    unit: str | None
    severity: str
    summary: str
    reason: str
    host: str
    ts: str
    started: str = ""  # when the incident opened
    status: str = TRIGGERED
    tier: int = 0


ALERTMANAGER = "alertmanager"
ALERTS_API = "/api/v2/alerts"
ALERTNAME = "HealerIncident"


def _alertmanager(alert: Alert) -> list[dict[str, Any]]:
    """Alertmanager's alert: its labels name it (the same on every re-send and on the resolve).

    A firing alert has no ``endsAt``: Alertmanager holds it for its ``resolve_timeout`` after
    the last re-send; a resolve ends it now.
    """
    labels = {"alertname": ALERTNAME, "scenario": alert.scenario, "unit": alert.unit or "",
              "host": alert.host, "severity": alert.severity}
    return [{"labels": labels, "startsAt": alert.started or alert.ts,
             "annotations": {"summary": alert.summary, "reason": alert.reason,
                             "incident": alert.incident},
             **({"endsAt": alert.ts} if alert.status == RESOLVED else {})}]


def payload(alert: Alert, fmt: str, routing_key: str | None) -> Any:  # noqa: ANN401 - JSON
    """The request body in the configured shape; a resolve in each shape's own form.

    PagerDuty resolves with the trigger's ``dedup_key`` (the incident id), Slack gets a
    follow-up message, Alertmanager an ``endsAt``, generic JSON says ``"status": "resolved"``.
    """
    if fmt == ALERTMANAGER:
        return _alertmanager(alert)
    if fmt == "pagerduty":
        return _pagerduty(alert, routing_key)
    if fmt == "slack":
        return _slack(alert)
    return {"source": "healer", **asdict(alert)}


def _title(alert: Alert) -> str:
    return (f"[healer] {alert.scenario} on {alert.unit or alert.host} ({alert.severity}): "
            f"{alert.reason}")


def _slack(alert: Alert) -> dict[str, Any]:
    """A message; a resolve is a follow-up one."""
    if alert.status == RESOLVED:
        return {"text": f"[healer] resolved: {alert.scenario} on {alert.unit or alert.host}: "
                        f"{alert.reason} (incident {alert.incident})"}
    return {"text": f"{_title(alert)}\n{alert.summary} (incident {alert.incident})"}


def _pagerduty(alert: Alert, routing_key: str | None) -> dict[str, Any]:
    """An Events v2 trigger, or the resolve of the same ``dedup_key`` (the incident id)."""
    if alert.status == RESOLVED:
        return {"routing_key": routing_key or "", "event_action": "resolve",
                "dedup_key": alert.incident}
    return {
        "routing_key": routing_key or "",
        "event_action": "trigger",
        "dedup_key": alert.incident,
        "payload": {
            "summary": _title(alert)[:1024], "source": alert.host,
            "severity": _PAGERDUTY_SEVERITY.get(alert.severity, "error"),
            "component": alert.unit, "class": alert.scenario, "custom_details": asdict(alert),
        },
    }


def _path(path: str, fmt: str) -> str:
    """Where to POST: the URL's path; for Alertmanager its alerts API, under the URL's path."""
    if fmt == ALERTMANAGER and not path.endswith(ALERTS_API):
        return path.rstrip("/") + ALERTS_API
    return path or "/"


@dataclass(frozen=True)
class Webhook:
    """One webhook endpoint."""

    url: str = field(repr=False)  # its path may hold a token
    fmt: str
    routing_key: str | None = field(repr=False)
    timeout: float
    attempts: int
    sleep: Callable[[float], None]

    def _status(self, body: bytes) -> int:
        """POST once and return the answer's status; _Retry when there was no whole answer."""
        parts = urlsplit(self.url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" \
            else http.client.HTTPConnection
        try:
            connection = kind(parts.hostname or "", parts.port, timeout=self.timeout)
        except ValueError as exc:  # a port the URL pattern let through but no socket takes
            raise NotifyError(f"webhook {redact.url(self.url)}: {exc}") from exc
        fired = threading.Event()
        deadline = threading.Timer(self.timeout, _cut, (connection, fired))
        deadline.start()
        try:
            connection.request("POST", urlunsplit(("", "", _path(parts.path, self.fmt),
                                                   parts.query, "")),
                               body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read(MAX_ANSWER)
        except (OSError, http.client.HTTPException) as exc:
            raise _Retry(f"no whole answer within {self.timeout:g}s ({exc or type(exc)})"
                         ) from exc
        finally:
            deadline.cancel()
            connection.close()
        if fired.is_set():  # what was read by then may look whole, but it was cut
            raise _Retry(f"no whole answer within {self.timeout:g}s")
        return response.status

    def _post(self, body: bytes) -> None:
        status = self._status(body)
        if 200 <= status < 300:
            return
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}")
        if 300 <= status < 400:
            raise NotifyError(f"webhook {redact.url(self.url)}: HTTP {status}, a redirect: not "
                              "followed for a POST; point the webhook at the final address")
        raise NotifyError(f"webhook {redact.url(self.url)}: HTTP {status}: refused, not retried")

    def send(self, alert: Alert) -> None:
        """Deliver the alert, retrying; raises NotifyError when it was not delivered."""
        body = json.dumps(payload(alert, self.fmt, self.routing_key)).encode()
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.5, max=10),
            retry=retry_if_exception_type(_Retry),
            sleep=self.sleep, reraise=True,
        )
        try:
            retrying(self._post, body)
        except _Retry as exc:
            raise NotifyError(f"webhook {redact.url(self.url)}: {exc} after {self.attempts} "
                              "attempts") from exc


@dataclass(frozen=True)
class Tiers:
    """The webhook of each tier, in order: an alert goes to the one of its ``tier``."""

    webhooks: tuple[Webhook, ...]

    def send(self, alert: Alert) -> None:
        """Deliver the alert to its tier's webhook; raises NotifyError when it was not."""
        if not 0 <= alert.tier < len(self.webhooks):
            raise NotifyError(f"no escalation tier {alert.tier + 1} in the config")
        self.webhooks[alert.tier].send(alert)
