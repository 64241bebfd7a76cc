"""``healer drill``: one runbook fault injected on purpose on this host, then watched until healed.

Only on units in [units], only with ``--yes``, and only while nothing is unhealthy or paused.
The agent heals it when one runs (``healer.service`` active); otherwise the drill runs passes
itself. Detection and healing are read from the audit log (the incident opened for the
drilled scenario, then resolved), so they are timed the same either way. When no heal comes
within the timeout, the drill puts back what it changed and says so. The audit log records
the drill's start and end (``drill_started``, ``drill_ended``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from healer.doctor import AGENT
from healer.errors import ActionError, ConfigError, HealerError
from healer.guard.guard import active_pause
from healer.probes.prober import expected_nodes
from healer.vocabulary import ActiveState, Event, Outcome, Scenario

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from healer.clock import Clock
    from healer.config import Config
    from healer.pipeline import Pipeline
    from healer.probes.celery import ControlProbe
    from healer.systemd.backend import Systemd

# each drill: the kind of unit it acts on, and the scenario its fault must be found as
DRILLS: dict[str, tuple[str, Scenario]] = {
    "worker-kill": ("worker", Scenario.WORKER_DOWN),
    "worker-stop": ("worker", Scenario.WORKER_UNRESPONSIVE),
    "broker-stop": ("broker", Scenario.BROKER_UNREACHABLE),
    "beat-corrupt-schedule": ("beat", Scenario.BEAT_DOWN),
    "queue-consumer-cancel": ("worker", Scenario.WORKER_NOT_CONSUMING),
}
EXIT_HEALED, EXIT_NOT_HEALED, EXIT_REFUSED = 0, 1, 2
TRUNCATED = b"\x80\x04"  # a pickle cut short: unpickled, EOFError, which beat does not repair
POLL = 1.0
DBM_SUFFIXES = ("", ".db", ".dat", ".dir", ".bak")  # the files a shelve may keep


class Refused(ConfigError):
    """The drill will not start: not asked with --yes, a unit not in [units], a host unwell."""


def _moment(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


@dataclass
class Drill:
    """One drill on the real host: inject, watch, and put back what was changed if need be."""

    config: Config
    systemd: Systemd
    control: ControlProbe
    pipeline: Pipeline
    clock: Clock
    say: Callable[[str], None]
    _undo: list[Callable[[], None]] = field(default_factory=list)  # puts the fault back
    _done: list[Callable[[], None]] = field(default_factory=list)  # tidies up after a heal

    def target(self, name: str, unit: str | None) -> str:
        """The unit the drill acts on: ``--unit``, or the one of its kind in [units]."""
        kind, _ = DRILLS[name]
        units = self.config.units
        allowed = {"worker": list(units.workers), "broker": [units.broker] if units.broker
                   else [], "beat": [units.beat] if units.beat else []}[kind]
        chosen = unit or next(iter(allowed), None)
        if chosen is None or chosen not in allowed:
            raise Refused(f"{name} acts on a {kind} unit of [units]"
                          + (f"; {chosen} is not one" if chosen else "; there is none"))
        if kind == "beat" and self.config.beat.schedule_file is None:
            raise Refused(f"{name} needs [beat] schedule_file")
        return chosen

    def check_healthy(self) -> None:
        """Refuse while anything is unhealthy or paused: the drill's fault must be the only one."""
        diagnosis = self.pipeline.diagnose()
        wrong = [f"{f.scenario.value} {f.unit or ''}".strip() for f in diagnosis.findings]
        wrong += [f"{probe}: {error}" for probe, error in diagnosis.probe_errors.items()]
        if wrong:
            raise Refused(f"not while the host is unhealthy: {'; '.join(wrong)}")
        state = self.pipeline.store.load()
        paused = [k for k in state.pauses if active_pause(state, k, self.clock.time())]
        if paused:
            raise Refused(f"not while healer is paused ({', '.join(paused)}): resume first")

    def inject(self, name: str, unit: str) -> None:
        """The fault, with how to put it back."""
        if name in {"worker-kill", "worker-stop"}:
            pid = self.systemd.unit_state(unit).main_pid
            if not pid:
                raise Refused(f"{unit} has no main process")
            if name == "worker-stop":
                os.kill(pid, signal.SIGSTOP)
                self._undo.append(lambda: os.kill(pid, signal.SIGCONT))
            else:
                os.kill(pid, signal.SIGKILL)
                self._undo.append(lambda: self._start(unit))
        elif name == "broker-stop":
            self.systemd.job("stop", unit, 30.0)
            self._undo.append(lambda: self._start(unit))
        elif name == "beat-corrupt-schedule":
            self._corrupt(unit)
        else:
            node, queue = self._consumer(unit)
            self.control.command("cancel_consumer", {"queue": queue}, [node])
            self._undo.append(lambda: self._add_consumer(node, queue))

    def _put_back(self) -> None:
        """Undo what the drill changed, last change first."""
        while self._undo:
            self._undo.pop()()

    def _start(self, unit: str) -> None:
        if self.systemd.unit_state(unit).active_state != ActiveState.ACTIVE:
            self.systemd.job("start", unit, 30.0)

    def _add_consumer(self, node: str, queue: str) -> None:
        self.control.command("add_consumer", {"queue": queue}, [node])

    def _consumer(self, unit: str) -> tuple[str, str]:
        """The node the worker unit runs, and the first queue of [celery]."""
        found = expected_nodes((self.systemd.unit_state(unit),), self.config)
        if not found:
            raise Refused(f"no Celery node found for {unit}; set [celery] nodes")
        return found[0][0], self.config.celery.queues[0]

    def _corrupt(self, beat: str) -> None:
        """Beat stopped, its schedule copied aside, a truncated entries value, beat started."""
        import dbm  # noqa: PLC0415

        schedule = self.config.beat.schedule_file
        assert schedule is not None
        self.systemd.job("stop", beat, 30.0)
        files = [p for suffix in DBM_SUFFIXES
                 if (p := schedule.with_name(schedule.name + suffix)).is_file()]
        backups = {p: p.with_name(p.name + ".drill") for p in files}
        for original, copy in backups.items():
            shutil.copy2(original, copy)

        def restore() -> None:
            self.systemd.job("stop", beat, 30.0)
            for original, copy in backups.items():
                copy.replace(original)
            self._start(beat)

        self._undo.append(restore)
        self._done.extend(partial(copy.unlink, missing_ok=True) for copy in backups.values())
        with dbm.open(str(schedule), "c") as shelf:
            shelf[b"entries"] = TRUNCATED
        self.systemd.job("start", beat, 30.0)

    def watch(self, name: str, unit: str, started: float, timeout: float, offset: int
              ) -> tuple[float | None, float | None]:
        """Seconds to detect and to heal, from the audit log (None: not within ``timeout``)."""
        _, scenario = DRILLS[name]
        agent = self.systemd.unit_state(AGENT).active_state == ActiveState.ACTIVE
        self.say(f"the agent ({AGENT}) runs: watching it heal" if agent else
                 "no agent runs: the drill runs the passes")
        detected = healed = None
        incident = None
        while self.clock.time() - started < timeout and healed is None:
            if not agent:
                try:
                    self.pipeline.run_once()
                except HealerError as exc:  # one pass that could not run; the next may
                    self.say(f"a pass failed: {exc}")
            for record in _records(self.config.paths.audit_log, offset):
                if record.get("event") == Event.INCIDENT_OPENED and incident is None and \
                        record.get("scenario") == scenario and record.get("unit") in {unit, None}:
                    incident, detected = record["incident"], _moment(record["ts"]) - started
                elif record.get("event") == Event.INCIDENT_RESOLVED and incident and \
                        record.get("incident") == incident:
                    healed = _moment(record["ts"]) - started
            if healed is None:
                self.clock.sleep(POLL)
        return detected, healed

    def run(self, name: str, unit: str | None, timeout: float) -> int:
        """The whole drill; its exit code."""
        target = self.target(name, unit)
        self.check_healthy()
        log = self.config.paths.audit_log
        offset = log.stat().st_size if log.exists() else 0
        started = self.clock.time()
        self.pipeline.audit.record(Event.DRILL_STARTED, None, drill=name, unit=target,
                                   timeout_s=timeout)
        self.say(f"healer drill {name} on {target}: injecting the fault")
        try:
            self.inject(name, target)
            detected, healed = self.watch(name, target, started, timeout, offset)
        except BaseException as exc:  # a failure or ^C midway: what was changed goes back first
            self._put_back()
            if isinstance(exc, Exception) and not isinstance(exc, HealerError):  # kill, kombu
                raise ActionError(f"drill {name} on {target}: {type(exc).__name__}: {exc}"
                                  ) from exc
            raise
        restored = healed is None
        if restored:
            self._put_back()
        else:
            for tidy in self._done:
                tidy()
        self.pipeline.audit.record(Event.DRILL_ENDED, None, drill=name, unit=target,
                                   outcome=Outcome.NOT_HEALED if restored else Outcome.HEALED,
                                   detect_s=_round(detected), heal_s=_round(healed),
                                   restored=restored)
        seen = f"detected after {detected:.1f}s" if detected is not None else "never detected"
        if restored:
            self.say(f"healer drill {name}: NOT HEALED within {timeout:g}s ({seen}); what the "
                     "drill changed is put back")
            return EXIT_NOT_HEALED
        self.say(f"healer drill {name}: healed; {seen}, healed after {healed:.1f}s")
        return EXIT_HEALED


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _records(log: Path, offset: int) -> list[dict[str, Any]]:
    """The audit records written since ``offset`` (a torn last line is left for later)."""
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            lines = handle.read().split(b"\n")[:-1]
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]
