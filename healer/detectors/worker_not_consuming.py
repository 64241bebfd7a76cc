"""worker_not_consuming: workers answer ping, yet the backlog does not fall.

This is Celery's "alive but not consuming" bug family (DESIGN.md). Judged on samples
kept across passes: over at least ``not_consuming_after`` seconds and three samples, the
queues held messages, did not shrink, every worker was idle and the processed counters did
not move. A draining backlog or a busy worker is not this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding, Scenario, Severity

if TYPE_CHECKING:
    from healer.model import Sample, Snapshot

MIN_SAMPLES = 3


def _stuck_run(samples: tuple[Sample, ...]) -> list[Sample]:
    """The latest samples, back from the newest, while idle with flat counters and a backlog."""
    if not samples or samples[-1].processed is None:
        return []
    last = samples[-1]
    run: list[Sample] = []
    for sample in reversed(samples):
        if sample.processed != last.processed or sample.active != 0 or sample.depth <= 0:
            break
        run.insert(0, sample)
    return run


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding when the stuck run is long enough and the backlog did not fall."""
    run = _stuck_run(snapshot.samples)
    if len(run) < MIN_SAMPLES:
        return []
    first, last = run[0], run[-1]
    span = last.at - first.at
    if span < snapshot.limits.not_consuming_after or last.depth < first.depth:
        return []
    replied = snapshot.celery.replied if snapshot.celery else None
    nodes = snapshot.celery.nodes if snapshot.celery else {}
    units = [u for u, n in nodes.items() if replied and n in replied]
    return [Finding(
        scenario=Scenario.WORKER_NOT_CONSUMING, severity=Severity.HIGH,
        unit=units[0] if len(units) == 1 else None,
        summary=f"answers ping but {last.depth} queued messages have not moved for {span:.0f}s",
        evidence={"depth_first": first.depth, "depth_last": last.depth, "span_s": round(span, 1),
                  "processed": last.processed, "active": last.active, "samples": len(run)},
    )]
