"""memory_pressure: a worker over its memory limit, or killed for memory.

High when the kernel or systemd killed for memory (Result=oom-kill, a pool process lost to
SIGKILL / WorkerLostError in the log); medium when a worker's memory is over the limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding, Scenario, Severity

if TYPE_CHECKING:
    from healer.model import EvidenceValue, Snapshot

MIB = 2**20


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding per worker unit with memory trouble."""
    limit = snapshot.limits.memory_bytes
    used = {m.unit: m for m in snapshot.memory}
    lost = snapshot.worker_log.lost if snapshot.worker_log else 0
    findings = []
    for unit in snapshot.workers:
        memory = used.get(unit.name)
        over = memory is not None and memory.bytes > limit
        killed = unit.result == "oom-kill" or lost > 0
        if not over and not killed:
            continue
        evidence: dict[str, EvidenceValue] = {
            "limit_mib": round(limit / MIB), "result": unit.result, "lost_processes": lost}
        parts = []
        if memory is not None:
            evidence |= {"used_mib": round(memory.bytes / MIB), "source": memory.source}
        if over and memory is not None:
            parts.append(f"{memory.bytes / MIB:.0f} MiB over the {limit / MIB:.0f} MiB limit")
        if unit.result == "oom-kill":
            parts.append("killed by the OOM killer")
        if lost:
            parts.append(f"{lost} pool process(es) lost to SIGKILL")
        findings.append(Finding(
            scenario=Scenario.MEMORY_PRESSURE,
            severity=Severity.HIGH if killed else Severity.MEDIUM,
            unit=unit.name, summary="; ".join(parts), evidence=evidence,
        ))
    return findings
