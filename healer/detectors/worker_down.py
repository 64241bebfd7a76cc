"""worker_down: a worker unit failed or is not loaded, or a node of an active unit is gone.

A unit is down when it failed, is inactive after a failure, or is not loaded.

A worker stopped cleanly (inactive, Result=success), as ``systemctl stop`` leaves it, is
reported but held: restarting what an operator stopped would fight the operator.

A ``celery multi`` unit stays active when one of its nodes dies. Such a node is gone when
its pid file names no process in the unit's cgroup: at once when the file was written in the
unit's current run, else (no file yet, or one left from before) once ``startup_grace`` has
passed. A node that answers a ping is not gone, whatever its pid file says.
Severity (runbook): critical when no worker is running, high when some still are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.detectors.worker_unresponsive import up_for
from healer.model import Finding
from healer.vocabulary import Scenario, Severity

if TYPE_CHECKING:
    from healer.model import EvidenceValue, NodeState, Snapshot, UnitState


def _evidence(unit: UnitState) -> dict[str, EvidenceValue]:
    return {
        "load_state": unit.load_state, "active_state": unit.active_state,
        "sub_state": unit.sub_state, "result": unit.result,
        "exec_main_status": unit.exec_main_status, "n_restarts": unit.n_restarts,
    }


def gone(unit: UnitState, snapshot: Snapshot) -> list[NodeState]:
    """The nodes of an active unit that are proven gone (see the module's docstring)."""
    if not unit.is_active:
        return []
    replied = snapshot.celery.replied if snapshot.celery else None
    settled = up_for(unit, snapshot) >= snapshot.thresholds.startup_grace
    return [n for n in snapshot.nodes_of(unit.name) if n.gone
            and (replied is None or n.name not in replied)
            and (settled or (n.written or 0) * 1e6 > unit.inactive_enter_us)]


def _why(node: NodeState) -> str:
    if node.written is None:
        return f"no pid file {node.pid_file}"
    return f"pid {node.pid} of {node.pid_file} is not running" if node.pid else \
        f"no pid in {node.pid_file}"


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding per worker unit that is not running or has nodes gone."""
    down = [u for u in snapshot.workers if not u.is_active]
    lost = {u.name: nodes for u in snapshot.workers if (nodes := gone(u, snapshot))}
    working = [u for u in snapshot.workers if u.is_active and
               len(lost.get(u.name, ())) < max(1, len(snapshot.nodes_of(u.name)))]
    severity = Severity.HIGH if working else Severity.CRITICAL
    findings = []
    for unit in down:
        summary, hold = unit.why_down()
        findings.append(Finding(
            scenario=Scenario.WORKER_DOWN, severity=severity, unit=unit.name,
            summary=summary, evidence=_evidence(unit), hold=hold,
        ))
    for unit in (u for u in snapshot.workers if u.name in lost):
        nodes = lost[unit.name]
        findings.append(Finding(
            scenario=Scenario.WORKER_DOWN, severity=severity, unit=unit.name,
            summary="; ".join(f"node {n.name} is gone ({_why(n)})" for n in nodes)
            + f"; {unit.name} is still {unit.active_state}",
            evidence={**_evidence(unit), "node": ", ".join(n.name for n in nodes),
                      "pid_file": ", ".join(str(n.pid_file) for n in nodes),
                      "pid": ", ".join(str(n.pid) for n in nodes)},
        ))
    return findings
