"""The state that spans passes, in one JSON file written atomically (temp, fsync, rename).

Who changes it: the pass (``healer.pipeline``: incidents, breakers, attempts, the storm flag,
the steps in flight, the outbox of notifications),
the fold of each look at the world into history (``healer.history``), and the operator's
pause and resume (``healer.controls``). Nothing else writes it.

A kill at any moment leaves either the old or the new file, never a torn one. One exclusive
lock per pass keeps two healers (the agent and an operator's run-once) from acting at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import TYPE_CHECKING

import msgspec
from msgspec import field

from healer import codec, safefile
from healer.errors import StateError
from healer.model import BeatLog, CpuSample, LogCursor, Sample, Silence
from healer.vocabulary import FindingKey, Outcome

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from healer.guard.ratelimit import Attempt


class Stored(msgspec.Struct, kw_only=True):
    """Base of what the state file holds; a key a newer healer added is ignored."""


class Incident(Stored):
    """An open problem: scenario on a unit, since when, under which id."""

    id: str
    opened: float
    severity: str = "high"  # as first found: an alert keeps the labels it fired with
    last_decision: Outcome | None = None
    escalated: bool = False
    escalated_at: float | None = None  # when its first tier was queued
    tiers: list[int] = field(default_factory=list)  # the tiers notified (queued), in order
    sent: dict[int, float] = {}  # when each tier's alert was last queued (re-sent ones too)


class Notice(Stored):
    """A notification waiting in the outbox until it is delivered or expires.

    ``key`` (incident, tier, triggered or resolved) makes it once per incident and tier;
    ``alert`` is the Alert's fields, already redacted.
    """

    key: str
    alert: dict[str, str | int | None]
    queued: float
    next_at: float
    attempts: int = 0


class Breaker(Stored):
    """An open circuit breaker: healer escalated and holds this target until reset or cool-down."""

    opened: float
    incident: str
    reason: str


class InFlight(Stored):
    """A step healer started and has not yet recorded the end of (found open after a kill)."""

    incident: str
    scenario: str
    unit: str
    action: str
    rule: str
    started: float


class Pause(Stored):
    """An operator's pause, of everything ("*") or of one unit, until a time or until resumed."""

    since: float
    until: float | None
    reason: str


class State(Stored):
    """Everything healer remembers between passes."""

    version: int = 1
    actions: dict[str, list[float]] = field(default_factory=dict)
    incidents: dict[FindingKey, Incident] = field(default_factory=dict)
    logs: dict[str, LogCursor] = field(default_factory=dict)
    journal_cursors: dict[str, str] = field(default_factory=dict)
    failures: list[tuple[float, str]] = field(default_factory=list)
    lost: list[float] = field(default_factory=list)
    retries: dict[str, tuple[str, int]] = field(default_factory=dict)
    succeeded: dict[str, float] = field(default_factory=dict)  # critical task: last success
    tasks_due: float = 0.0  # when a running task may first pass its limit: ask again then
    tasks_since: float | None = None  # since when task outcomes are read at all
    beat: BeatLog = BeatLog()
    samples: list[Sample] = field(default_factory=list)
    cpu: dict[str, list[CpuSample]] = field(default_factory=dict)
    silence: dict[str, Silence] = field(default_factory=dict)  # by node
    running: dict[str, dict[str, float]] = field(default_factory=dict)  # node: task id: since
    breakers: dict[FindingKey, Breaker] = field(default_factory=dict)
    pauses: dict[str, Pause] = field(default_factory=dict)
    storm: str | None = None
    fleet_down: float | None = None  # since when the fleet's store could not be reached
    spent: list[float] = field(default_factory=list)
    in_flight: dict[str, InFlight] = field(default_factory=dict)  # by action id
    outbox: list[Notice] = field(default_factory=list)  # notifications not yet delivered

    @property
    def acting(self) -> set[str]:
        """The units a step is in flight on."""
        return {step.unit for step in self.in_flight.values()}

    def record_attempt(self, attempt: Attempt) -> None:
        """Count one attempt of a step, in its "N within M" window and in the budget's."""
        self.actions[attempt.key], self.spent = attempt.times, attempt.spent


MAX_STATE = 64 * 2**20  # far above what the windows kept in it can hold


class StateStore:
    """Load and save ``State`` in ``state_dir/state.json``; ``locked()`` serialises passes."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / "state.json"

    def _ensure_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as exc:
            raise StateError(f"cannot create state dir {self.dir}: {exc}") from exc

    @contextlib.contextmanager
    def locked(self, wait: bool = True) -> Iterator[bool]:
        """Hold the state dir's lock for a pass; yields whether it is held.

        With ``wait`` it waits while another healer holds it; without, it yields False at once
        (a read-only look, as diagnose takes while a pass is running).
        """
        self._ensure_dir()
        try:
            fd = safefile.open_for_writing(self.dir / "lock", append=True)
        except OSError as exc:
            raise StateError(f"cannot open the lock {self.dir / 'lock'}: {exc.strerror}"
                             ) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            except OSError as exc:
                raise StateError(f"cannot take the lock in {self.dir}: {exc}") from exc
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def load(self) -> State:
        """The saved state, or a fresh one when there is none yet."""
        try:
            return codec.decode(safefile.read_capped(self.path, MAX_STATE, follow=False), State)
        except FileNotFoundError:
            return State()
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read the state: {exc.strerror}") from exc
        except ValueError as exc:
            first = str(exc).splitlines()[0]
            raise StateError(f"{self.path}: unreadable state ({first}); move it aside to reset"
                             ) from exc

    def save(self, state: State) -> None:
        """Write atomically: temp file, fsync, rename over, fsync the folder (no link followed)."""
        self._ensure_dir()
        data = codec.encode(state)
        try:
            safefile.replace(self.path, data)
        except OSError as exc:
            raise StateError(f"cannot write {self.path}: {exc.strerror}") from exc
