"""beat_stalled: beat is running but has not sent a due task for too long.

Too long is ``[beat] max_silence`` when set, else twice the shortest period seen in its log
plus ten seconds. Not judged while the broker is down (that explains it) or without a log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.detectors.worker_unresponsive import up_for
from healer.model import Finding
from healer.vocabulary import ActiveState, Scenario, Severity

if TYPE_CHECKING:
    from healer.model import Snapshot

SLACK = 10.0


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding when beat has been silent longer than its allowance."""
    beat, log = snapshot.beat, snapshot.beat_log
    if beat is None or log is None or beat.active_state != ActiveState.ACTIVE:
        return []
    if snapshot.broker is not None and not snapshot.broker.reachable:
        return []
    allowance = snapshot.thresholds.beat_max_silence
    if allowance is None and log.shortest_period is not None:
        allowance = 2 * log.shortest_period + SLACK
    if allowance is None or up_for(beat, snapshot) < allowance:
        return []
    silent = snapshot.taken_at - max(log.last_dispatch or 0, beat.active_enter_us / 1e6)
    if silent < allowance:
        return []
    return [Finding(
        scenario=Scenario.BEAT_STALLED, severity=Severity.MEDIUM, unit=beat.name,
        summary=f"no due task sent for {silent:.0f}s (allowed {allowance:.0f}s)",
        evidence={"silent_s": round(silent, 1), "allowance_s": round(allowance, 1),
                  "shortest_period_s": log.shortest_period, "main_pid": beat.main_pid},
    )]
