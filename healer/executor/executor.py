"""Carry out a step through systemd (and the beat schedule's files), then verify it.

The only code that changes the world. It refuses any unit outside [units] whatever it is
asked, and every action ends in a verification: a job that is "done" is not healed.
"""

from __future__ import annotations

import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from healer.errors import ActionError, JobFailed, NotAllowed
from healer.executor.verify import Verified, settle
from healer.systemd.backend import SUCCESSFUL_JOB_RESULTS
from healer.vocabulary import ActiveState, Outcome
from healer.wait import until

if TYPE_CHECKING:
    from collections.abc import Callable

    from healer.clock import Clock
    from healer.policy.models import Step
    from healer.systemd import JobVerb, Systemd

SCHEDULE_SUFFIXES = ("", ".db", ".dat", ".bak", ".dir")


class Checks(Protocol):
    """The re-probes verification needs beyond systemd."""

    def broker_answers(self) -> bool:
        """Whether the broker answers now."""
        ...

    def silent_workers(self) -> list[str]:
        """Worker units whose node does not answer a ping now."""
        ...


@dataclass(frozen=True)
class Executor:
    """Runs steps; see ``execute``."""

    systemd: Systemd
    allowed_units: frozenset[str]
    clock: Clock
    checks: Checks | None = None
    schedule_file: Path | None = None
    workers: tuple[str, ...] = ()
    job_timeout: float = 90.0
    poll: float = 0.2

    def execute(self, step: Step, unit: str, meanwhile: Callable[[], None] = lambda: None
                ) -> Verified:
        """Run one step on one unit; raises ActionError when it cannot be carried out.

        ``meanwhile`` is called while a worker's or beat's verify window runs (not while the
        broker's does: the rest waits for the broker).
        """
        if unit not in self.allowed_units:
            raise NotAllowed(f"{unit} is not in [units]; refusing to {step.action}")
        actions: dict[str, Callable[[str, float, Callable[[], None]], Verified]] = {
            "restart_unit": self._restart,
            "reset_failed": self._reset_failed,
            "daemon_reload": self._daemon_reload,
            "restart_broker": self._restart_broker,
            "clear_beat_schedule": self._clear_beat_schedule,
        }
        if step.action not in actions:
            raise ActionError(f"{step.action} is not an executor action")
        return actions[step.action](unit, step.verify, meanwhile)

    def _job(self, verb: JobVerb, unit: str) -> None:
        result = self.systemd.job(verb, unit, self.job_timeout)
        if result not in SUCCESSFUL_JOB_RESULTS:
            raise JobFailed(f"{verb} of {unit} ended with job result {result!r}", result)

    def _restart(self, unit: str, verify: float, meanwhile: Callable[[], None]) -> Verified:
        if self.systemd.unit_state(unit).result == "start-limit-hit":
            # Only then does systemd refuse a restart; resetting otherwise would erase the
            # failure (Result) that tells a crash from an operator's stop if the restart fails.
            self.systemd.reset_failed(unit)
        self._job("restart", unit)
        return settle(self.systemd, unit, verify, self.clock, self.poll, meanwhile)

    def _reset_failed(self, unit: str, _verify: float, _meanwhile: Callable[[], None]
                      ) -> Verified:
        self.systemd.reset_failed(unit)
        state = self.systemd.unit_state(unit)
        if state.active_state == ActiveState.ACTIVE:
            return Verified(Outcome.HEALED, f"{unit} reset and active")
        return Verified(Outcome.NOT_HEALED, f"{unit} reset (now {state.active_state}); it still "
                        "needs starting", {"active_state": state.active_state})

    def _daemon_reload(self, unit: str, verify: float, meanwhile: Callable[[], None]
                       ) -> Verified:
        self.systemd.reload()
        outcome = self._restart(unit, verify, meanwhile)
        return Verified(outcome.outcome, f"daemon-reload, then {outcome.detail}", outcome.evidence)

    def _wait(self, check: Callable[[], bool], seconds: float) -> bool:
        return until(lambda: check() or None, seconds, self.clock, self.poll) is not None

    def _restart_broker(self, unit: str, verify: float, _meanwhile: Callable[[], None]
                        ) -> Verified:
        """Restart the broker, wait until it answers and running workers have reconnected.

        Workers still wrong afterwards are the pass's business: it re-probes and handles them
        under their own rules and the guard (an operator's stop or a pause still holds).
        """
        outcome = self._restart(unit, verify, lambda: None)
        if not outcome.healed or self.checks is None:
            return outcome
        checks = self.checks
        if not self._wait(checks.broker_answers, verify):
            return Verified(Outcome.NOT_HEALED, f"{unit} is active but the broker does not answer")

        def reconnecting() -> list[str]:  # running workers that do not answer yet
            return [w for w in checks.silent_workers() if w in self.workers
                    and self.systemd.unit_state(w).active_state == ActiveState.ACTIVE]

        silent = [] if self._wait(lambda: not reconnecting(), verify) else reconnecting()
        detail = f"{unit} restarted and answering; " + (
            f"{', '.join(silent)} not reconnected" if silent else "running workers reconnected")
        return Verified(Outcome.HEALED, detail, {"silent_workers": ", ".join(silent) or None})

    def _schedule_files(self) -> list[Path]:
        """The schedule file and its shelve siblings that exist; each must be a regular file."""
        found = []
        for suffix in SCHEDULE_SUFFIXES:
            path = Path(f"{self.schedule_file}{suffix}")
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ActionError(f"cannot look at {path}: {exc.strerror}") from exc
            if not stat.S_ISREG(mode):
                raise ActionError(f"{path} is not a regular file (a folder, link or device): "
                                  "refusing to move it aside; check [beat] schedule_file")
            found.append(path)
        return found

    def _move_schedule_aside(self, files: list[Path]) -> list[str]:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock.time()))
        moved: list[str] = []
        for path in files:
            if path.exists():
                backup = path.with_name(f"{path.name}.healer-{stamp}")
                try:
                    path.rename(backup)
                except OSError as exc:
                    raise ActionError(f"cannot move {path} aside: {exc}; beat started again "
                                      f"with {len(moved)} file(s) moved") from exc
                moved.append(str(backup))
        return moved

    def _clear_beat_schedule(self, unit: str, verify: float, meanwhile: Callable[[], None]
                             ) -> Verified:
        """Stop beat, move every schedule file aside to a timestamped backup, start beat."""
        if self.schedule_file is None:
            raise ActionError("clear_beat_schedule needs [beat] schedule_file in the config")
        self._schedule_files()  # refused before beat is stopped
        self._job("stop", unit)
        try:
            moved = self._move_schedule_aside(self._schedule_files())
        finally:
            # Whatever happened to the files, beat is started again: a beat left stopped by
            # healer would read as an operator's stop and be held for good.
            if self.systemd.unit_state(unit).active_state == ActiveState.FAILED:
                self.systemd.reset_failed(unit)
            self._job("start", unit)
        outcome = settle(self.systemd, unit, verify, self.clock, self.poll, meanwhile)
        return Verified(outcome.outcome,
                       f"schedule moved aside ({len(moved)} files), then {outcome.detail}",
                       {**outcome.evidence, "backups": ", ".join(moved) or None})
