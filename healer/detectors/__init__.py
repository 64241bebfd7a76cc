"""Detectors: pure functions from a Snapshot to Findings, one module per scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.detectors import (
    beat_down,
    beat_stalled,
    broker_unreachable,
    critical_task_stalled,
    database_unreachable,
    memory_pressure,
    queue_backlog,
    task_failures,
    task_stuck,
    worker_down,
    worker_not_consuming,
    worker_unresponsive,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from healer.model import Finding, Snapshot

DETECTORS: tuple[Callable[[Snapshot], list[Finding]], ...] = (
    broker_unreachable.detect,
    worker_down.detect,
    worker_unresponsive.detect,
    worker_not_consuming.detect,
    task_stuck.detect,
    memory_pressure.detect,
    task_failures.detect,
    critical_task_stalled.detect,
    queue_backlog.detect,
    beat_down.detect,
    beat_stalled.detect,
    database_unreachable.detect,
)


def detect(snapshot: Snapshot) -> list[Finding]:
    """Every detector's findings, most severe first."""
    findings = [f for detector in DETECTORS for f in detector(snapshot)]
    return sorted(findings, key=lambda f: f.severity.rank)
