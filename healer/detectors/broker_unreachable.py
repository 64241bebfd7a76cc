"""broker_unreachable: the broker did not answer PING in time (critical: nothing moves)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding
from healer.vocabulary import Scenario, Severity

if TYPE_CHECKING:
    from healer.model import Snapshot


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding, on the broker's unit, with the kind of error as evidence."""
    broker = snapshot.broker
    if broker is None or broker.reachable:
        return []
    unit = snapshot.broker_unit
    return [Finding(
        scenario=Scenario.BROKER_UNREACHABLE, severity=Severity.CRITICAL,
        unit=unit.name if unit else None,
        summary=f"{broker.url}: {broker.error_kind}",
        evidence={"url": broker.url, "error_kind": broker.error_kind, "error": broker.error,
                  "unit_state": unit.active_state if unit else None},
    )]
