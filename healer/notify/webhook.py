"""POST an escalation to a webhook: generic JSON, Slack-compatible, or PagerDuty Events v2.

Delivery is retried with tenacity (exponential wait, ``sleep`` passed in); the caller audits the
escalation whether or not it was delivered.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from healer.errors import NotifyError

if TYPE_CHECKING:
    from collections.abc import Callable

_PAGERDUTY_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}


@dataclass(frozen=True)
class Alert:
    """What an escalation says."""

    incident: str
    scenario: str
    unit: str | None
    severity: str
    summary: str
    reason: str
    host: str
    ts: str


def payload(alert: Alert, fmt: str, routing_key: str | None) -> dict[str, Any]:
    """The request body in the configured shape."""
    title = (f"[healer] {alert.scenario} on {alert.unit or alert.host} ({alert.severity}): "
             f"{alert.reason}")
    if fmt == "slack":
        return {"text": f"{title}\n{alert.summary} (incident {alert.incident})"}
    if fmt == "pagerduty":
        return {
            "routing_key": routing_key or "",
            "event_action": "trigger",
            "dedup_key": alert.incident,
            "payload": {
                "summary": title[:1024], "source": alert.host,
                "severity": _PAGERDUTY_SEVERITY.get(alert.severity, "error"),
                "component": alert.unit, "class": alert.scenario, "custom_details": asdict(alert),
            },
        }
    return {"source": "healer", **asdict(alert)}


@dataclass(frozen=True)
class Webhook:
    """One webhook endpoint."""

    url: str = field(repr=False)  # its path may hold a token
    fmt: str
    routing_key: str | None = field(repr=False)
    timeout: float
    attempts: int
    sleep: Callable[[float], None]

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(  # noqa: S310 - the operator's configured URL
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            response.read()

    def send(self, alert: Alert) -> None:
        """Deliver the alert, retrying; raises NotifyError when every attempt failed."""
        body = json.dumps(payload(alert, self.fmt, self.routing_key)).encode()
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.5, max=10),
            retry=retry_if_exception_type(OSError),  # URLError and timeouts are OSErrors
            sleep=self.sleep, reraise=True,
        )
        try:
            retrying(self._post, body)
        except (OSError, ValueError) as exc:
            raise NotifyError(f"webhook {self.url}: {exc} after {self.attempts} attempts") \
                from exc
