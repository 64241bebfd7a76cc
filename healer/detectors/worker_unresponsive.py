"""worker_unresponsive: the unit is active but its node does not answer a ping.

Only judged when the workers could be asked (the broker answered): no reply while the broker
is down says nothing about the worker. A unit that started less than ``startup_grace`` ago is
still booting. A SIGSTOPped or wedged worker is active to systemd and silent to ping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding
from healer.vocabulary import ActiveState, Scenario, Severity

if TYPE_CHECKING:
    from healer.model import Snapshot, UnitState


def up_for(unit: UnitState, snapshot: Snapshot) -> float:
    """Seconds the unit has been active at the time of the snapshot."""
    return snapshot.taken_at - unit.active_enter_us / 1e6


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding per active worker whose node stayed silent."""
    celery = snapshot.celery
    if celery is None or celery.replied is None:
        return []
    silent = [
        u for u in snapshot.workers
        if u.active_state == ActiveState.ACTIVE and u.name in celery.nodes
        and celery.nodes[u.name] not in celery.replied
        and up_for(u, snapshot) >= snapshot.thresholds.startup_grace
    ]
    down = [u for u in snapshot.workers if not u.is_active]
    none_working = len(silent) + len(down) == len(snapshot.workers)
    severity = Severity.CRITICAL if none_working else Severity.HIGH
    return [
        Finding(
            scenario=Scenario.WORKER_UNRESPONSIVE, severity=severity, unit=u.name,
            summary=f"active (pid {u.main_pid}) but {celery.nodes[u.name]} does not answer ping",
            evidence={"node": celery.nodes[u.name], "main_pid": u.main_pid,
                      "active_for_s": round(up_for(u, snapshot), 1),
                      "replied": ", ".join(celery.replied) or None},
        )
        for u in silent
    ]
