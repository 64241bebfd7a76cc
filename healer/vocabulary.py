"""healer's words: every scenario, severity, outcome and audit event name, spelled once.

Their values are a contract (policies name scenarios; the audit log and ``--json`` output carry
outcomes and event names), so a value never changes; code says ``Outcome.HEALED``, never
``"healed"``. The groupings that decide behaviour (what counts as having acted, what ends a
ladder) live here too, so a new outcome is placed in them in one place.
"""

from __future__ import annotations

from enum import Enum


class Word(str, Enum):
    """A string enum that prints, formats and serialises as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Severity(Word):
    """Runbook severities, most severe first."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for critical, 3 for low: sorts most severe first."""
        return list(Severity).index(self)


class Scenario(Word):
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
    CRITICAL_TASK_STALLED = "critical_task_stalled"
    TASK_STUCK = "task_stuck"
    FLEET_STORM = "fleet_storm"  # too many hosts unhealthy at once; one host escalates it


class FindingKey:
    """A problem's identity across passes: its scenario and its unit (None: host-wide)."""

    __slots__ = ("scenario", "unit")

    def __init__(self, scenario: Scenario, unit: str | None) -> None:
        self.scenario, self.unit = scenario, unit

    @classmethod
    def parse(cls, text: str) -> FindingKey:
        """A key as stored (``scenario:unit``): the one place a key is read back from text."""
        scenario, _, unit = text.partition(":")
        return cls(Scenario(scenario), None if unit in {"", "-"} else unit)

    def __eq__(self, other: object) -> bool:
        """Same scenario, same unit."""
        return isinstance(other, FindingKey) and (self.scenario, self.unit) == (
            other.scenario, other.unit)

    def __hash__(self) -> int:
        """As its scenario and unit."""
        return hash((self.scenario, self.unit))

    def __str__(self) -> str:
        """As the state file and reports spell it: ``scenario:unit`` (``-`` for no unit)."""
        return f"{self.scenario.value}:{self.unit or '-'}"

    def __repr__(self) -> str:
        """FindingKey(worker_down:x.service)."""
        return f"FindingKey({self})"


class ActiveState(Word):
    """systemd's ActiveState of a unit."""

    ACTIVE = "active"
    RELOADING = "reloading"
    INACTIVE = "inactive"
    FAILED = "failed"
    ACTIVATING = "activating"
    DEACTIVATING = "deactivating"


class BrokerError(Word):
    """Why the broker did not answer: the ``error_kind`` of a broker probe."""

    REFUSED = "refused"
    AUTH = "auth"
    TIMEOUT = "timeout"
    ERROR = "error"


class TaskEventKind(Word):
    """Celery's task events that healer counts (and the same facts read from a worker's log)."""

    FAILED = "task-failed"
    RETRIED = "task-retried"
    SUCCEEDED = "task-succeeded"


class Outcome(Word):
    """How a step, a decision or an escalation ended; the ``outcome`` of reports and records."""

    # a step that ran (the executor and the pass)
    STARTED = "started"
    HEALED = "healed"
    NOT_HEALED = "not_healed"
    FAILED = "failed"
    DENIED = "denied"
    UNREACHABLE = "unreachable"
    INTERRUPTED = "interrupted"  # healer stopped mid-step (killed); found at the next start
    # the guard's verdicts
    ALLOWED = "allowed"
    REFUSED = "refused"
    PAUSED = "paused"
    BUDGET = "budget"
    RATE_LIMITED = "rate_limited"
    BACKOFF = "backoff"
    # the pass's decisions not to act
    HELD = "held"
    NO_POLICY = "no_policy"
    BREAKER_OPEN = "breaker_open"
    STORM = "storm"
    BROKER_FIRST = "broker_first"
    WATCHING = "watching"
    DRY_RUN = "dry_run"
    # escalations
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    EXPIRED = "expired"  # an escalation's notice that was never delivered in its time
    ALREADY_ESCALATED = "already_escalated"
    # the storm guard switching, the fleet's store lost and found
    ON = "on"
    OFF = "off"
    DOWN = "down"
    UP = "up"


ACTED = frozenset({Outcome.HEALED, Outcome.NOT_HEALED, Outcome.FAILED, Outcome.DENIED})
"""A step that reached systemd and may have changed something: the pass probes again."""

ESCALATIONS = frozenset({Outcome.DELIVERED, Outcome.UNDELIVERED, Outcome.EXPIRED})
"""An escalation that was sent (or tried): reported and counted."""


class Event(Word):
    """The ``event`` of an audit record."""

    INCIDENT_OPENED = "incident_opened"
    INCIDENT_RESOLVED = "incident_resolved"
    INCIDENT_DROPPED = "incident_dropped"
    DECISION = "decision"
    ACTION_STARTED = "action_started"
    ACTION_FINISHED = "action_finished"
    ESCALATION = "escalation"
    BREAKER_OPENED = "breaker_opened"
    BREAKER_CLOSED = "breaker_closed"
    STORM_GUARD = "storm_guard"
    FLEET_STORE = "fleet_store"
    PAUSED = "paused"
    RESUMED = "resumed"
    ACTION_INTERRUPTED = "action_interrupted"
    TORN_TAIL_SET_ASIDE = "torn_tail_set_aside"
    AUDIT_STARTED = "audit_started"
    AUDIT_FILE_STARTED = "audit_file_started"
    DRILL_STARTED = "drill_started"
    DRILL_ENDED = "drill_ended"


class AlertStatus(Word):
    """What a notification says of its incident."""

    TRIGGERED = "triggered"
    RESOLVED = "resolved"


class Verdict(Word):
    """What ``healer doctor`` says of one check."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"
    NOT_APPLICABLE = "not applicable"


class IncidentOutcome(Word):
    """How an incident ended, as the audit review tells it (``healer audit list``)."""

    HEALED = "healed"
    RESOLVED = "resolved"
    DROPPED = "dropped"
    HELD = "held"
    ESCALATED = "escalated"
    OPEN = "open"
