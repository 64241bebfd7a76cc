"""task_stuck: a task runs longer than its limit while its worker still answers pings.

celery#2668, celery#4185: a task hung in a pool process holds its slot for good. The start
comes from ``inspect active`` (converted to wall time), asked only when a task may have
passed its limit since the last asking (``healer.history``: ``tasks_due``). The limit is
``[task_limits]`` for its name, else ``[thresholds] task_time_limit`` (the runbook's 3600 s).
One finding per unit, naming its tasks; the remedy restarts the worker, never purges a queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding
from healer.vocabulary import Scenario, Severity

if TYPE_CHECKING:
    from healer.model import ActiveTask, Snapshot


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding per worker unit running a task past its limit."""
    celery = snapshot.celery
    if celery is None or not celery.tasks:
        return []
    unit_of = {n.name: n.unit for n in snapshot.nodes}
    limit_of = snapshot.thresholds.limit_of
    stuck: dict[str, list[ActiveTask]] = {}
    for task in celery.tasks:
        if task.node in unit_of and snapshot.taken_at - task.started > limit_of(task.name):
            stuck.setdefault(unit_of[task.node], []).append(task)
    return [Finding(
        scenario=Scenario.TASK_STUCK, severity=Severity.HIGH, unit=unit,
        summary="; ".join(f"{t.name}[{t.id}] running for {snapshot.taken_at - t.started:.0f}s "
                          f"on {t.node} (limit {limit_of(t.name):g}s)" for t in tasks),
        evidence={"task": ", ".join(t.name for t in tasks),
                  "task_id": ", ".join(t.id for t in tasks),
                  "node": ", ".join(dict.fromkeys(t.node for t in tasks)),
                  "running_s": round(max(snapshot.taken_at - t.started for t in tasks), 1),
                  "limit_s": min(limit_of(t.name) for t in tasks)},
    ) for unit, tasks in stuck.items()]
