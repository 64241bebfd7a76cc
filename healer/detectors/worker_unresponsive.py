"""worker_unresponsive: the unit is active but its node does not answer a ping.

Only judged when the workers could be asked (the broker answered): no reply while the broker
is down says nothing about the worker. Proof is acted on at once: the main process is stopped
(state ``T``, a SIGSTOP) or a zombie. Silence alone is not proof: a solo pool busy in a task
answers neither ping nor heartbeat. It must last ``silence_window`` seconds since the node's
last sign of life (a ping answered, an event heard) over at least ``silence_probes`` looks,
and is held while the worker is busy: a task its log shows received and not ended, or task
events show started and not finished (a solo pool's task events come only after the task).
A unit that started less than ``startup_grace`` ago is still booting, until its node has
answered once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding
from healer.probes.process import STOPPED
from healer.vocabulary import ActiveState, Scenario, Severity

if TYPE_CHECKING:
    from healer.model import EvidenceValue, Snapshot, UnitState


def up_for(unit: UnitState, snapshot: Snapshot) -> float:
    """Seconds the unit has been active at the time of the snapshot."""
    return snapshot.taken_at - unit.active_enter_us / 1e6


def _why(unit: UnitState, node: str, snapshot: Snapshot) -> dict[str, EvidenceValue] | None:
    """The evidence that this silent worker is stuck, or None while it may be booting or busy."""
    process = snapshot.processes.get(unit.name)
    if process in STOPPED:
        return {"process_state": process}
    track = snapshot.silence.get(unit.name)
    limits = snapshot.thresholds
    if track is None or (not track.answered and up_for(unit, snapshot) < limits.startup_grace):
        return None
    busy = snapshot.running.get(unit.name, 0) or (
        snapshot.signals.busy.get(node, 0) if snapshot.signals else 0)
    silent_for = snapshot.taken_at - track.last_life
    if busy or silent_for < limits.silence_window or track.looks < limits.silence_probes:
        return None
    return {"silent_for_s": round(silent_for, 1), "silent_looks": track.looks}


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding per active worker whose node is proven stuck or stayed silent too long."""
    celery = snapshot.celery
    if celery is None or celery.replied is None:
        return []
    stuck = {
        u.name: (u, why) for u in snapshot.workers
        if u.active_state == ActiveState.ACTIVE and u.name in celery.nodes
        and celery.nodes[u.name] not in celery.replied
        and (why := _why(u, celery.nodes[u.name], snapshot)) is not None
    }
    down = [u for u in snapshot.workers if not u.is_active]
    none_working = len(stuck) + len(down) == len(snapshot.workers)
    severity = Severity.CRITICAL if none_working else Severity.HIGH
    return [
        Finding(
            scenario=Scenario.WORKER_UNRESPONSIVE, severity=severity, unit=u.name,
            summary=f"active (pid {u.main_pid}) but {celery.nodes[u.name]} does not answer ping"
                    + (" (process stopped)" if "process_state" in why else ""),
            evidence={"node": celery.nodes[u.name], "main_pid": u.main_pid,
                      "active_for_s": round(up_for(u, snapshot), 1),
                      "replied": ", ".join(celery.replied) or None, **why},
        )
        for u, why in stuck.values()
    ]
