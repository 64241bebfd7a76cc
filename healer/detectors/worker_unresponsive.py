"""worker_unresponsive: the unit is active but a node of it does not answer a ping.

Only judged when the workers could be asked (the broker answered): no reply while the broker
is down says nothing about the worker. Proof is acted on at once: the main process is stopped
(state ``T``, a SIGSTOP). A zombie is not stuck but exited: worker_down's once systemd reaps it.
Silence alone is not proof: a solo pool busy in a task answers neither ping nor heartbeat.
It must last ``silence_window`` seconds since the node's last sign of life (a ping answered,
an event heard) over at least ``silence_probes`` looks, and is held while the worker is busy:
a task its log shows received and not ended (for no longer than any task may run: past the
longest limit it is stuck, not busy), or task events show started and not finished (a solo
pool's task events come only after the task).
A unit that started less than ``startup_grace`` ago is still booting, until its node has
answered once. A node whose process is gone is worker_down's. One finding per unit names
its stuck nodes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding
from healer.probes.process import STOPPED
from healer.vocabulary import ActiveState, Scenario, Severity

if TYPE_CHECKING:
    from healer.model import EvidenceValue, NodeState, Snapshot, UnitState


def up_for(unit: UnitState, snapshot: Snapshot) -> float:
    """Seconds the unit has been active at the time of the snapshot."""
    return snapshot.taken_at - unit.active_enter_us / 1e6


def _why(unit: UnitState, node: NodeState, snapshot: Snapshot
         ) -> dict[str, EvidenceValue] | None:
    """The evidence that this silent node is stuck, or None while it may be booting or busy."""
    if node.process in STOPPED:
        return {"process_state": node.process}
    track = snapshot.silence.get(node.name)
    limits = snapshot.thresholds
    if track is None or (not track.answered and up_for(unit, snapshot) < limits.startup_grace):
        return None
    longest = limits.task_limit_range[1]
    since = snapshot.running.get(node.name)
    busy = (since is not None and snapshot.taken_at - since <= longest) or (
        snapshot.signals.busy.get(node.name, 0) if snapshot.signals else 0)
    silent_for = snapshot.taken_at - track.last_life
    if busy or silent_for < limits.silence_window or track.looks < limits.silence_probes:
        return None
    return {"silent_for_s": round(silent_for, 1), "silent_looks": track.looks}


def _finding(unit: UnitState, stuck: list[tuple[NodeState, dict[str, EvidenceValue]]],
             replied: tuple[str, ...], severity: Severity, snapshot: Snapshot) -> Finding:
    names = ", ".join(node.name for node, _ in stuck)
    stopped = any("process_state" in why for _, why in stuck)
    pids = ", ".join(str(node.pid) for node, _ in stuck)
    return Finding(
        scenario=Scenario.WORKER_UNRESPONSIVE, severity=severity, unit=unit.name,
        summary=f"active (pid {pids}) but {names} does not answer ping"
                + (" (process stopped)" if stopped else ""),
        evidence={"node": names, "main_pid": unit.main_pid,
                  **({"pid": pids} if stuck[0][0].pid_file else {}),
                  "active_for_s": round(up_for(unit, snapshot), 1),
                  "replied": ", ".join(replied) or None,
                  **{k: v for _, why in stuck for k, v in why.items()}},
    )


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding per active worker with a node proven stuck or silent too long."""
    celery = snapshot.celery
    if celery is None or celery.replied is None:
        return []
    replied = celery.replied
    stuck = {
        u.name: found for u in snapshot.workers if u.active_state == ActiveState.ACTIVE
        and (found := [(n, why) for n in snapshot.nodes_of(u.name)
                       if n.name not in replied and not n.gone
                       and (why := _why(u, n, snapshot)) is not None])
    }
    down = [u for u in snapshot.workers if not u.is_active]
    whole = [u for u, found in stuck.items() if len(found) == len(snapshot.nodes_of(u))]
    none_working = len(whole) + len(down) == len(snapshot.workers)
    severity = Severity.CRITICAL if none_working else Severity.HIGH
    return [_finding(u, stuck[u.name], replied, severity, snapshot)
            for u in snapshot.workers if u.name in stuck]
