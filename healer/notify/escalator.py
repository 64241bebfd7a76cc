"""Escalate an incident: notify through the webhook, audit whether it was delivered.

What the alert says and why it was not delivered are redacted (``healer.redact``): the
receiver and the audit log see no secret.

The pass decides whether an incident is escalated (once per incident) and remembers it.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

from healer.errors import NotifyError
from healer.notify.webhook import Alert
from healer.vocabulary import Event, Outcome

if TYPE_CHECKING:
    from healer.audit.log import AuditLog
    from healer.clock import Clock
    from healer.model import Finding
    from healer.redact import Redactor


class Notifier(Protocol):
    """Something that delivers an alert or raises NotifyError."""

    def send(self, alert: Alert) -> None:
        """Deliver the alert."""
        ...


class Escalator:
    """Sends a notification and records whether it was delivered."""

    def __init__(self, notifier: Notifier | None, audit: AuditLog, clock: Clock, host: str,
                 redactor: Redactor) -> None:
        self._notifier = notifier
        self._audit = audit
        self._clock = clock
        self._host = host
        self._redactor = redactor

    def escalate(self, finding: Finding, incident: str, reason: str) -> Outcome:
        """Notify about the incident; delivered or undelivered, as audited."""
        when = datetime.fromtimestamp(self._clock.time(), timezone.utc).isoformat()
        raw = Alert(incident=incident, scenario=finding.scenario.value, unit=finding.unit,
                    severity=finding.severity.value, summary=finding.summary, reason=reason,
                    host=self._host, ts=when)
        alert = Alert(**self._redactor.value(asdict(raw)))
        error = None
        if self._notifier is None:
            error = "no [escalation] webhook configured"
        else:
            try:
                self._notifier.send(alert)
            except NotifyError as exc:
                error = self._redactor.text(str(exc))
        outcome = Outcome.DELIVERED if error is None else Outcome.UNDELIVERED
        self._audit.record(
            Event.ESCALATION, incident, scenario=finding.scenario.value, unit=finding.unit,
            action="escalate", outcome=outcome, reason=reason, error=error, dry_run=False,
        )
        return outcome
