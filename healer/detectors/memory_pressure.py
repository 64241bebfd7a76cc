"""memory_pressure: a worker over its memory limit, killed for memory, or pinned on CPU.

Runbook scenario 5 (memory/resource issues). High when the kernel or systemd killed for memory
(Result=oom-kill, a pool process lost to SIGKILL / WorkerLostError in the log); medium when a
worker's memory is over the limit or its CPU stayed above ``cpu_percent`` (of one core) on
average over the last ``cpu_sustained`` seconds. A worker that is not running is judged only
when the OOM killer stopped it: pool processes lost while an operator stopped it are no
reason to start it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding
from healer.vocabulary import Scenario, Severity

if TYPE_CHECKING:
    from healer.model import CpuSample, EvidenceValue, Snapshot, Thresholds

MIB = 2**20


def sustained_cpu(samples: tuple[CpuSample, ...], now: float, thresholds: Thresholds
                  ) -> float | None:
    """Average CPU percent over the last ``cpu_sustained`` seconds; None if not sampled so long."""
    old = [s for s in samples if now - s.at >= thresholds.cpu_sustained]
    if not old or len(samples) < 2:
        return None
    first, last = old[-1], samples[-1]
    if last.at <= first.at:
        return None
    return 100 * (last.cpu_seconds - first.cpu_seconds) / (last.at - first.at)


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding per worker unit with memory or CPU trouble."""
    thresholds = snapshot.thresholds
    used = {m.unit: m for m in snapshot.usage}
    lost = snapshot.worker_log.lost if snapshot.worker_log else 0
    findings = []
    for unit in snapshot.workers:
        if not unit.is_active and unit.result != "oom-kill":
            continue  # down for another reason (an operator's stop, say): worker_down's alone
        memory = used.get(unit.name)
        cpu = sustained_cpu(snapshot.cpu.get(unit.name, ()), snapshot.taken_at, thresholds)
        killed = unit.result == "oom-kill" or lost > 0
        parts = []
        evidence: dict[str, EvidenceValue] = {
            "limit_mib": round(thresholds.memory_bytes / MIB), "result": unit.result,
            "lost_processes": lost}
        if memory is not None:
            evidence |= {"used_mib": round(memory.bytes / MIB), "source": memory.source}
            if memory.bytes > thresholds.memory_bytes:
                parts.append(f"{memory.bytes / MIB:.0f} MiB over the "
                             f"{thresholds.memory_bytes / MIB:.0f} MiB limit")
        if cpu is not None and cpu >= thresholds.cpu_percent:
            evidence["cpu_percent"] = round(cpu, 1)
            parts.append(f"CPU {cpu:.0f}% for {thresholds.cpu_sustained:g}s")
        if unit.result == "oom-kill":
            parts.append("killed by the OOM killer")
        if lost:
            parts.append(f"{lost} pool process(es) lost to SIGKILL")
        if parts:
            findings.append(Finding(
                scenario=Scenario.MEMORY_PRESSURE,
                severity=Severity.HIGH if killed else Severity.MEDIUM,
                unit=unit.name, summary="; ".join(parts), evidence=evidence,
            ))
    return findings
