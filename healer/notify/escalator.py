"""Escalate an incident: queue its notifications, deliver them, audit every try.

A notification is a ``Notice`` in the state's outbox from the moment the pass decides it until
it is delivered or expires, so none is lost to a receiver that is down or to a kill. Its key
(incident, tier, triggered or resolved) makes it once per incident and tier; PagerDuty's
``dedup_key`` (the incident id) makes a repeated delivery the same incident. A failed try
waits ``retry_after`` seconds, doubling up to ``BACKOFF_MAX``, across passes and restarts.

What the alert says and why it was not delivered are redacted (``healer.redact``): the
receiver and the audit log see no secret.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

from msgspec.structs import replace

from healer.errors import NotifyError
from healer.notify.webhook import RESOLVED, TRIGGERED, Alert
from healer.state import Notice
from healer.vocabulary import Event, FindingKey, Outcome, Scenario

if TYPE_CHECKING:
    from healer.audit.log import AuditLog
    from healer.clock import Clock
    from healer.redact import Redactor
    from healer.state import Incident

BACKOFF_MAX = 900.0


class Notifier(Protocol):
    """Something that delivers an alert (to its tier) or raises NotifyError."""

    def send(self, alert: Alert) -> None:
        """Deliver the alert."""
        ...


class Escalator:
    """Makes notices, and tries to deliver them, recording each try in the audit log."""

    def __init__(self, notifier: Notifier | None, audit: AuditLog, clock: Clock, host: str,
                 redactor: Redactor, expire_after: float = 86400.0, retry_after: float = 30.0
                 ) -> None:
        self._notifier = notifier
        self._audit = audit
        self._clock = clock
        self._host = host
        self._redactor = redactor
        self._expire_after = expire_after
        self._retry_after = retry_after

    def trigger(self, key: FindingKey, incident: Incident, summary: str, reason: str, tier: int
                ) -> Notice:
        """The notice that escalates an incident to one tier (again, for a tier that re-sends)."""
        return self._notice(key, incident, summary, reason, tier, TRIGGERED)

    def resolve(self, key: FindingKey, incident: Incident, reason: str, tier: int) -> Notice:
        """The notice that tells a tier the incident it was sent is over."""
        return self._notice(key, incident, reason, reason, tier, RESOLVED)

    def _notice(self, key: FindingKey, incident: Incident, summary: str, reason: str, tier: int,
                status: str) -> Notice:
        now = self._clock.time()
        raw = Alert(incident=incident.id, scenario=key.scenario.value, unit=key.unit,
                    severity=incident.severity, summary=summary, reason=reason, host=self._host,
                    ts=_iso(now), started=_iso(incident.opened), status=status, tier=tier)
        return Notice(key=f"{incident.id}/{tier}/{status}",
                      alert=self._redactor.value(asdict(raw)), queued=now, next_at=now)

    def deliver(self, notice: Notice) -> tuple[Outcome, Notice | None]:
        """Try once; the outcome as audited, and the notice to keep (None: done with it).

        Undelivered, it is kept with its next try later; past ``expire_after`` it expires.
        """
        alert = Alert(**notice.alert)  # type: ignore[arg-type]
        error = None
        if self._notifier is None:
            error = "no [escalation] webhook configured"
        else:
            try:
                self._notifier.send(alert)
            except NotifyError as exc:
                error = self._redactor.text(str(exc))
        now = self._clock.time()
        kept = None
        if error is None:
            outcome = Outcome.DELIVERED
        elif self._notifier is None:  # nowhere to try again
            outcome = Outcome.UNDELIVERED
        elif now - notice.queued >= self._expire_after:
            outcome = Outcome.EXPIRED
        else:
            outcome = Outcome.UNDELIVERED
            kept = replace(notice, attempts=notice.attempts + 1, next_at=now + min(
                self._retry_after * 2 ** notice.attempts, BACKOFF_MAX))
        self._audit.record(
            Event.ESCALATION, alert.incident, scenario=alert.scenario, unit=alert.unit,
            action="resolve" if alert.status == RESOLVED else "escalate", outcome=outcome,
            reason=alert.reason, error=error, tier=alert.tier + 1, attempt=notice.attempts + 1,
            **({"retry_at": round(kept.next_at, 3)} if kept else {}), dry_run=False,
        )
        return outcome, kept


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()


def key_of(notice: Notice) -> FindingKey:
    """The finding a notice is about."""
    unit = notice.alert["unit"]
    return FindingKey(Scenario(str(notice.alert["scenario"])), None if unit is None else str(unit))
