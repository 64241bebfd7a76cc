"""queue_backlog: a queue deeper than the threshold (runbook: 100).

Low (minor delays); medium at ten times the threshold. Depth counts every priority key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding
from healer.vocabulary import Scenario, Severity

if TYPE_CHECKING:
    from healer.model import Snapshot

SEVERE = 10


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding per queue over the threshold."""
    if snapshot.broker is None:
        return []
    limit = snapshot.thresholds.queue_backlog
    return [
        Finding(
            scenario=Scenario.QUEUE_BACKLOG,
            severity=Severity.MEDIUM if depth >= SEVERE * limit else Severity.LOW,
            unit=None, summary=f"queue {queue} holds {depth} messages (threshold {limit})",
            evidence={"queue": queue, "depth": depth, "threshold": limit},
        )
        for queue, depth in sorted(snapshot.broker.queues.items())
        if depth > limit
    ]
