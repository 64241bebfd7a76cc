"""worker_not_consuming: workers answer ping, yet the backlog does not fall.

This is Celery's "alive but not consuming" bug family (celery#8030, #8384, #9054). Judged on samples
kept across passes: over at least ``not_consuming_after`` seconds and three samples, the
queues held messages, did not shrink, every worker was idle and the processed counters did
not move. A draining backlog or a busy worker is not this. On RabbitMQ the broker also says
how many consumers a queue has: a backlog with none is this at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding
from healer.vocabulary import Scenario, Severity

if TYPE_CHECKING:
    from healer.model import EvidenceValue, Sample, Snapshot

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


def _answering_units(snapshot: Snapshot) -> list[str]:
    celery = snapshot.celery
    if celery is None or not celery.replied:
        return []
    return list(dict.fromkeys(n.unit for n in snapshot.nodes if n.name in celery.replied))


def _finding(units: list[str], summary: str, evidence: dict[str, EvidenceValue]) -> Finding:
    return Finding(scenario=Scenario.WORKER_NOT_CONSUMING, severity=Severity.HIGH,
                   unit=units[0] if len(units) == 1 else None, summary=summary,
                   evidence=evidence)


def detect(snapshot: Snapshot) -> list[Finding]:
    """RabbitMQ: a backlog with no consumer. Any broker: a stuck run long enough, not falling."""
    units = _answering_units(snapshot)
    if not units:
        return []
    broker = snapshot.broker
    if broker is not None:
        for queue, depth in sorted(broker.queues.items()):
            if depth > 0 and broker.consumers.get(queue) == 0:
                return [_finding(units, f"answers ping but queue {queue} has no consumer "
                                 f"({depth} messages waiting)",
                                 {"queue": queue, "depth": depth, "consumers": 0})]
    run = _stuck_run(snapshot.samples)
    if len(run) < MIN_SAMPLES:
        return []
    first, last = run[0], run[-1]
    span = last.at - first.at
    if span < snapshot.thresholds.not_consuming_after or last.depth < first.depth:
        return []
    return [_finding(
        units, f"answers ping but {last.depth} queued messages have not moved for {span:.0f}s",
        {"depth_first": first.depth, "depth_last": last.depth, "span_s": round(span, 1),
         "processed": last.processed, "active": last.active, "samples": len(run)},
    )]
