"""The data that flows through the pipeline: Snapshot in, Findings out. All frozen."""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from healer.vocabulary import (
    ActiveState,
    BrokerError,
    FindingKey,
    Outcome,
    Scenario,
    Severity,
    TaskEventKind,
)

EvidenceValue = str | int | float | bool | None


class Frozen(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base for immutable pipeline data."""


class UnitState(Frozen, frozen=True):
    """What systemd says about one unit (org.freedesktop.systemd1.Unit and .Service)."""

    name: str
    load_state: str
    active_state: str
    sub_state: str
    unit_id: str | None = None  # systemd's own name, when ``name`` is an alias of it
    result: str = "success"
    n_restarts: int = 0
    main_pid: int = 0
    exec_main_status: int = 0
    active_enter_us: int = 0
    inactive_enter_us: int = 0
    argv: tuple[str, ...] = ()
    memory_bytes: int | None = None
    cpu_nsec: int | None = None
    # what discovery reads: the environment ExecStart is expanded with, where it runs, where
    # its output goes, the files that define it and its cgroup
    environment: tuple[str, ...] = ()
    environment_files: tuple[tuple[str, bool], ...] = ()  # path, and whether it may be missing
    working_directory: str = ""
    stdout: str = ""  # StandardOutput: journal, append, file, null, ...
    stderr: str = ""  # StandardError; inherit: as stdout
    unit_files: tuple[str, ...] = ()  # FragmentPath, then DropInPaths
    control_group: str = ""
    # how the unit is run, for ``healer doctor``: Restart=, KillMode=, TimeoutStopSec= and
    # MemoryMax= (None: infinity), WatchdogSec= (µs), User= ("": the manager's own)
    restart: str = ""
    kill_mode: str = ""
    timeout_stop_us: int | None = None
    memory_max: int | None = None
    watchdog_us: int = 0
    user: str = ""

    @property
    def is_active(self) -> bool:
        """Active or on its way there (a restart in progress counts)."""
        return self.active_state in {ActiveState.ACTIVE, ActiveState.ACTIVATING,
                                     ActiveState.RELOADING}

    @property
    def failed(self) -> bool:
        """Failed, or inactive after a failure (Result kept the first failure)."""
        return self.active_state == ActiveState.FAILED or (
            self.active_state == ActiveState.INACTIVE and self.result != "success"
        )

    def why_down(self) -> tuple[str, str | None]:
        """For a unit that is not running: a summary, and why it must be held (or None).

        A unit that is not loaded needs its file or [units] fixed; one still deactivating is
        judged once it is down; one stopped cleanly (inactive, Result=success) was stopped as
        by an operator and is left stopped.
        """
        if self.load_state != "loaded":
            return (f"unit {self.load_state}",
                    f"{self.name} is {self.load_state}: fix the unit file or [units]")
        status = f"Result={self.result}, status {self.exec_main_status}"
        if self.active_state == ActiveState.DEACTIVATING:
            # Going down (its processes are being stopped): a crash and an operator's stop
            # look alike until systemd has recorded how it ended.
            return (f"deactivating ({status})",
                    "still stopping: judged once it is down")
        if self.failed:
            return f"{self.active_state} ({status})", None
        return ("stopped cleanly (Result=success), as by an operator",
                "stopped by an operator: left stopped")


class BrokerState(Frozen, frozen=True):
    """Whether the broker answered, what kind of error it was, and its queue depths."""

    url: str
    reachable: bool
    error_kind: BrokerError | None = None
    error: str | None = None
    latency_ms: float | None = None
    queues: dict[str, int] = {}
    consumers: dict[str, int] = {}


class Endpoint(Frozen, frozen=True):
    """A TCP endpoint (the application's database) and whether it accepted a connection."""

    address: str
    reachable: bool
    error: str | None = None


class ActiveTask(Frozen, frozen=True):
    """A task a node said it is running (``inspect active``): since when, in wall time."""

    node: str
    id: str
    name: str
    started: float
    pid: int | None = None


class CeleryState(Frozen, frozen=True):
    """What the workers said. ``replied`` is None when nobody could be asked (broker down).

    ``tasks`` are the tasks the nodes that replied are running (None: not asked this look).
    ``processed`` and ``active`` (summed over nodes) are read only while there is a backlog.
    """

    replied: tuple[str, ...] | None
    tasks: tuple[ActiveTask, ...] | None = None
    processed: int | None = None
    active: int | None = None


class Sample(Frozen, frozen=True):
    """One backlog sample, kept across passes to see whether a queue drains."""

    at: float
    depth: int
    processed: int | None
    active: int | None


class UnitUsage(Frozen, frozen=True):
    """Memory and CPU time of one unit: from its cgroup, or summed over its process tree."""

    unit: str
    bytes: int
    source: str
    cpu_seconds: float = 0.0
    main_pid: int = 0


class CpuSample(Frozen, frozen=True):
    """CPU seconds a unit had used at a time; kept across passes to judge sustained load."""

    at: float
    cpu_seconds: float
    main_pid: int


class WorkerLog(Frozen, frozen=True):
    """What the worker's log said within the failure window."""

    failures: dict[str, int] = {}
    retry_loops: dict[str, int] = {}
    lost: int = 0


class BeatLog(Frozen, frozen=True):
    """What beat's log said: last dispatch, shortest period seen, schedule-file trouble."""

    last_dispatch: float | None = None
    shortest_period: float | None = None
    schedule_error: str | None = None
    schedule_error_at: float | None = None


class LogCursor(Frozen, frozen=True):
    """How far a log file has been read; a new inode or a shorter file means it was rotated."""

    inode: int
    offset: int


class TaskEvent(NamedTuple):
    """A task failed or was retried, from the worker's log or from Celery's task events."""

    kind: TaskEventKind
    at: float
    task: str
    task_id: str


class WorkerSignals(Frozen, frozen=True):
    """What Celery's events said of the workers, by node.

    ``heard``: when each node last sent an event (heartbeat, online, any task event);
    ``busy``: how many tasks its task events show started and not finished.
    """

    heard: dict[str, float] = {}
    busy: dict[str, int] = {}


class NodeState(Frozen, frozen=True):
    """One Celery node a worker unit runs, and what its pid says of it.

    A node of ``celery worker`` is the unit's main process (``pid_file`` None); a node of
    ``celery multi`` has its pid in its pid file (``pid`` 0: no file, or no pid in it;
    ``written``: the file's mtime). ``process`` is the pid's /proc state letter (``T``
    stopped, ...), None when no such process runs in the unit's cgroup (a zombie has exited).
    """

    name: str
    unit: str
    pid: int = 0
    pid_file: str | None = None
    written: float | None = None
    process: str | None = None

    @property
    def gone(self) -> bool:
        """A node of a pid file whose process does not run."""
        return self.pid_file is not None and self.process is None


class Observed(Frozen, frozen=True):
    """What a look at the world sees at once; which probes could not look, and why.

    ``nodes`` are the Celery nodes expected of the worker units, discovered from them or
    configured; ``signals`` is None without an event listener; ``unwatched`` names each
    scenario the look could not watch, and why (no log found, say).
    """

    taken_at: float
    workers: tuple[UnitState, ...]
    beat: UnitState | None = None
    broker_unit: UnitState | None = None
    broker: BrokerState | None = None
    celery: CeleryState | None = None
    usage: tuple[UnitUsage, ...] = ()
    database: Endpoint | None = None
    nodes: tuple[NodeState, ...] = ()
    signals: WorkerSignals | None = None
    probe_errors: dict[str, str] = {}
    unwatched: dict[str, str] = {}

    @property
    def units(self) -> tuple[UnitState, ...]:
        """Every unit read: the workers, beat and the broker's."""
        return tuple(u for u in (*self.workers, self.beat, self.broker_unit) if u is not None)

    def nodes_of(self, unit: str) -> list[NodeState]:
        """The nodes a worker unit runs."""
        return [n for n in self.nodes if n.unit == unit]


class Readings(Observed, frozen=True):
    """What one look at the world saw, before any history is folded in: the probes' output.

    Log lines are the new ones since the cursors the look was given; ``log_cursors`` and
    ``journal_cursors`` say how far they reach now. ``task_events`` is None without a listener.
    """

    worker_lines: tuple[str, ...] | None = None
    node_lines: dict[str, tuple[str, ...]] = {}  # the worker lines of each node, where known
    beat_lines: tuple[str, ...] | None = None
    task_events: tuple[TaskEvent, ...] | None = None
    log_cursors: dict[str, LogCursor] = {}
    journal_cursors: dict[str, str] = {}


class Thresholds(Frozen, frozen=True):
    """The thresholds detectors judge by, carried in the snapshot so detectors stay pure."""

    queue_backlog: int = 100
    memory_bytes: int = 1024 * 2**20
    task_failures: int = 3
    retry_loop: int = 3
    not_consuming_after: float = 60
    startup_grace: float = 30
    silence_window: float = 15
    silence_probes: int = 3
    cpu_percent: float = 90
    cpu_sustained: float = 120
    beat_max_silence: float | None = None
    task_window: float = 600
    critical_tasks: tuple[str, ...] = ()
    stalled_after: float = 1800
    task_time_limit: float = 3600
    task_limits: dict[str, float] = {}  # by task name; else task_time_limit

    def limit_of(self, task: str) -> float:
        """How long a task of this name may run."""
        return self.task_limits.get(task, self.task_time_limit)

    @property
    def task_limit_range(self) -> tuple[float, float]:
        """The shortest and the longest time any task may run."""
        limits = [self.task_time_limit, *self.task_limits.values()]
        return min(limits), max(limits)


class Silence(Frozen, frozen=True):
    """How long a worker's node has been silent, over how many looks, in its current run.

    A run is the unit's (its ActiveEnterTimestamp) with one process (``pid``). ``last_life``
    is its last sign of life (a ping answered, an event heard) or, when later, the start of
    its run; ``answered`` whether it showed life at all since that start.
    """

    started_us: int
    last_life: float
    pid: int = 0
    looks: int = 0
    answered: bool = False


class Snapshot(Observed, frozen=True):
    """What a look saw, with the history that spans passes; detectors read only this."""

    silence: dict[str, Silence] = {}  # by node
    running: dict[str, float] = {}  # since when each node logged a task received, not ended
    samples: tuple[Sample, ...] = ()
    cpu: dict[str, tuple[CpuSample, ...]] = {}
    worker_log: WorkerLog | None = None
    beat_log: BeatLog | None = None
    last_success: dict[str, float] = {}  # each critical task's last success (or watch start)
    thresholds: Thresholds = msgspec.field(default_factory=Thresholds)


class Finding(Frozen, frozen=True):
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
    def key(self) -> FindingKey:
        """Identity of the problem across passes: scenario and unit."""
        return FindingKey(self.scenario, self.unit)


class ActionReport(Frozen, frozen=True):
    """What one step did, or why it did not run, for the finding with key ``finding``."""

    finding: FindingKey
    scenario: Scenario
    unit: str | None
    action: str | None
    outcome: Outcome
    detail: str
    dry_run: bool = False
    tier: int | None = None  # an escalation's: the tier it went to (0: the first)

    @classmethod
    def about(
        cls, finding: Finding, unit: str | None, action: str | None, outcome: Outcome, detail: str,
        dry_run: bool = False,
    ) -> ActionReport:
        """A report on what was done (or not) about ``finding``."""
        return cls(finding=finding.key, scenario=finding.scenario, unit=unit, action=action,
                   outcome=outcome, detail=detail, dry_run=dry_run)


class FleetReport(Frozen, frozen=True):
    """The fleet as the pass last saw it: the store reached or not, its live and sick hosts."""

    name: str
    reachable: bool
    hosts: int = 0
    unhealthy: int = 0
    budget_per_hour: int = 0  # the fleet's, or the local fallback while the store is lost


class PassReport(Frozen, frozen=True):
    """One pass: what was found, what was done, and what is still wrong at the end.

    As the pass ended: what is paused (``*``: everything), whether the storm guard holds, the
    notifications waiting in the outbox, each queue's depth and whether each expected node
    answered (none when the workers could not be asked).
    """

    findings: tuple[Finding, ...]
    actions: tuple[ActionReport, ...]
    remaining: tuple[Finding, ...]
    probe_errors: dict[str, str] = {}
    unwatched: dict[str, str] = {}
    breakers: tuple[FindingKey, ...] = ()
    dry_run: bool = False
    paused: tuple[str, ...] = ()
    storm: bool = False
    outbox: int = 0
    queues: dict[str, int] = {}
    nodes_up: dict[str, bool] = {}
    fleet: FleetReport | None = None  # None without [fleet]

    @property
    def healthy(self) -> bool:
        """Nothing is wrong at the end of the pass, and every probe could look."""
        return not self.remaining and not self.probe_errors


class Diagnosis(Frozen, frozen=True):
    """What diagnose saw: findings, each with the remedy policy would choose, and blind spots."""

    findings: tuple[Finding, ...]
    remedies: dict[FindingKey, str]
    probe_errors: dict[str, str] = {}
    unwatched: dict[str, str] = {}
