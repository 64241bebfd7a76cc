"""critical_task_stalled: a task named in ``[tasks] critical`` has not succeeded for too long.

Runbook, Escalation: "critical tasks not processing for more than 30 minutes". The last
success of each task name comes from the worker log or Celery's task events; a task never
seen to succeed counts from when healer began to read them. High: it escalates at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding
from healer.vocabulary import Scenario, Severity

if TYPE_CHECKING:
    from healer.model import Snapshot


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding naming every critical task without a success for ``stalled_after``."""
    limit = snapshot.thresholds.stalled_after
    stalled = {task: snapshot.taken_at - last for task, last in sorted(
        snapshot.last_success.items()) if snapshot.taken_at - last >= limit}
    if not stalled:
        return []
    return [Finding(
        scenario=Scenario.CRITICAL_TASK_STALLED, severity=Severity.HIGH, unit=None,
        summary="; ".join(f"{task}: no success for {age:.0f}s (allowed {limit:g}s)"
                          for task, age in stalled.items()),
        evidence={f"silent_s:{task}": round(age, 1) for task, age in stalled.items()},
    )]
