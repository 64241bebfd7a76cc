"""Escalate an incident once: notify through the webhook, audit whether it was delivered."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

from healer.errors import NotifyError
from healer.notify.webhook import Alert

if TYPE_CHECKING:
    from healer.audit.log import AuditLog
    from healer.clock import Clock
    from healer.model import Finding
    from healer.state import Incident


ALREADY_ESCALATED = "already_escalated"


class Notifier(Protocol):
    """Something that delivers an alert or raises NotifyError."""

    def send(self, alert: Alert) -> None:
        """Deliver the alert."""
        ...


class Escalator:
    """One notification per incident, recorded whether or not it was delivered."""

    def __init__(self, notifier: Notifier | None, audit: AuditLog, clock: Clock, host: str
                 ) -> None:
        self._notifier = notifier
        self._audit = audit
        self._clock = clock
        self._host = host

    def escalate(self, finding: Finding, incident: Incident, reason: str) -> str:
        """Notify about the incident unless it was already; the outcome for the report."""
        if incident.escalated:
            return ALREADY_ESCALATED
        incident.escalated = True
        when = datetime.fromtimestamp(self._clock.time(), timezone.utc).isoformat()
        alert = Alert(incident=incident.id, scenario=finding.scenario.value, unit=finding.unit,
                      severity=finding.severity.value, summary=finding.summary, reason=reason,
                      host=self._host, ts=when)
        error = None
        if self._notifier is None:
            error = "no [escalation] webhook configured"
        else:
            try:
                self._notifier.send(alert)
            except NotifyError as exc:
                error = str(exc)
        self._audit.record(
            "escalation", incident.id, scenario=finding.scenario.value, unit=finding.unit,
            action="escalate", outcome="delivered" if error is None else "undelivered",
            reason=reason, error=error, dry_run=False,
        )
        return "escalated" if error is None else "escalation_undelivered"
