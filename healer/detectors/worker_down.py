"""worker_down: a worker unit failed, or is inactive after a failure, or is not loaded.

A worker stopped cleanly (inactive, Result=success), as ``systemctl stop`` leaves it, is
reported but held: restarting what an operator stopped would fight the operator.
Severity (runbook): critical when no worker is running, high when some still are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding
from healer.vocabulary import Scenario, Severity

if TYPE_CHECKING:
    from healer.model import EvidenceValue, Snapshot, UnitState


def _evidence(unit: UnitState) -> dict[str, EvidenceValue]:
    return {
        "load_state": unit.load_state, "active_state": unit.active_state,
        "sub_state": unit.sub_state, "result": unit.result,
        "exec_main_status": unit.exec_main_status, "n_restarts": unit.n_restarts,
    }


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding per worker unit that is not running."""
    down = [u for u in snapshot.workers if not u.is_active]
    severity = Severity.CRITICAL if len(down) == len(snapshot.workers) else Severity.HIGH
    findings = []
    for unit in down:
        summary, hold = unit.why_down()
        findings.append(Finding(
            scenario=Scenario.WORKER_DOWN, severity=severity, unit=unit.name,
            summary=summary, evidence=_evidence(unit), hold=hold,
        ))
    return findings
