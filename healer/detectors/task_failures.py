"""task_failures: tasks failing repeatedly, or one task id retried again and again.

Counts come from the worker's log within the failure window. Severity (runbook): medium for
some tasks failing, high when three or more task names fail (several task types failing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding
from healer.vocabulary import Scenario, Severity

if TYPE_CHECKING:
    from healer.model import Snapshot

MANY_TASKS = 3


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding for the worker when any task is over the threshold or looping."""
    log = snapshot.worker_log
    if log is None:
        return []
    failing = {t: n for t, n in log.failures.items() if n >= snapshot.thresholds.task_failures}
    if not failing and not log.retry_loops:
        return []
    severity = Severity.HIGH if len(failing) >= MANY_TASKS else Severity.MEDIUM
    parts = [f"{t} failed {n}x" for t, n in sorted(failing.items())]
    parts += [f"{t} retried {n}x (same id)" for t, n in sorted(log.retry_loops.items())]
    return [Finding(
        scenario=Scenario.TASK_FAILURES, severity=severity,
        unit=snapshot.workers[0].name if snapshot.workers else None,
        summary="; ".join(parts),
        evidence={**{f"failed:{t}": n for t, n in failing.items()},
                  **{f"retry_loop:{t}": n for t, n in log.retry_loops.items()}},
    )]
