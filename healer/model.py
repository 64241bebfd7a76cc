"""The data that flows through the pipeline: Snapshot in, Findings out. All frozen."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict

EvidenceValue = str | int | float | bool | None


class Frozen(BaseModel):
    """Base for immutable pipeline data."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Severity(str, Enum):
    """Runbook severities, most severe first."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for critical, 3 for low: sorts most severe first."""
        return list(Severity).index(self)


class Scenario(str, Enum):
    """Stable scenario ids; policies refer to them."""

    WORKER_DOWN = "worker_down"
    WORKER_UNRESPONSIVE = "worker_unresponsive"
    WORKER_NOT_CONSUMING = "worker_not_consuming"
    BROKER_UNREACHABLE = "broker_unreachable"
    TASK_FAILURES = "task_failures"
    BEAT_DOWN = "beat_down"
    BEAT_STALLED = "beat_stalled"
    MEMORY_PRESSURE = "memory_pressure"
    QUEUE_BACKLOG = "queue_backlog"
    DATABASE_UNREACHABLE = "database_unreachable"


class UnitState(Frozen):
    """What systemd says about one unit (org.freedesktop.systemd1.Unit and .Service)."""

    name: str
    load_state: str
    active_state: str
    sub_state: str
    result: str = "success"
    n_restarts: int = 0
    main_pid: int = 0
    exec_main_status: int = 0
    active_enter_us: int = 0
    inactive_enter_us: int = 0

    @property
    def is_active(self) -> bool:
        """Active or on its way there (a restart in progress counts)."""
        return self.active_state in {"active", "activating", "reloading"}

    @property
    def failed(self) -> bool:
        """Failed, or inactive after a failure (Result kept the first failure)."""
        return self.active_state == "failed" or (
            self.active_state == "inactive" and self.result != "success"
        )


class BrokerState(Frozen):
    """Whether the broker answered, and if not, what kind of error it was."""

    url: str
    reachable: bool
    error_kind: str | None = None
    error: str | None = None
    latency_ms: float | None = None


class Snapshot(Frozen):
    """Everything the probes saw in one pass; detectors read only this."""

    taken_at: float
    workers: tuple[UnitState, ...]
    beat: UnitState | None = None
    broker_unit: UnitState | None = None
    broker: BrokerState | None = None


class Finding(Frozen):
    """One classified problem: what, how bad, where, and the evidence for it.

    ``hold`` is set when the situation must be reported but not acted on (an operator stopped
    the unit, say); it says why.
    """

    scenario: Scenario
    severity: Severity
    unit: str | None
    summary: str
    evidence: dict[str, EvidenceValue]
    hold: str | None = None

    @property
    def key(self) -> str:
        """Identity of the problem across passes: scenario and unit."""
        return f"{self.scenario.value}:{self.unit or '-'}"


class ActionReport(Frozen):
    """What one step did, or why it did not run, for the finding with key ``finding``."""

    finding: str
    scenario: Scenario
    unit: str | None
    action: str | None
    outcome: str
    detail: str
    dry_run: bool = False

    @classmethod
    def about(
        cls, finding: Finding, unit: str | None, action: str | None, outcome: str, detail: str,
        dry_run: bool = False,
    ) -> ActionReport:
        """A report on what was done (or not) about ``finding``."""
        return cls(finding=finding.key, scenario=finding.scenario, unit=unit, action=action,
                   outcome=outcome, detail=detail, dry_run=dry_run)


class PassReport(Frozen):
    """One pass: what was found, what was done, and what is still wrong at the end."""

    findings: tuple[Finding, ...]
    actions: tuple[ActionReport, ...]
    remaining: tuple[Finding, ...]
    dry_run: bool = False

    @property
    def healthy(self) -> bool:
        """Nothing is wrong at the end of the pass."""
        return not self.remaining
