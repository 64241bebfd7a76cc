"""Carry out a step through systemd, refusing any unit outside [units], then verify it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.errors import JobFailed, NotAllowed
from healer.executor.verify import Outcome, settle
from healer.systemd.backend import SUCCESSFUL_JOB_RESULTS

if TYPE_CHECKING:
    from healer.clock import Clock
    from healer.policy.models import Step
    from healer.systemd import Systemd


class Executor:
    """The only code that changes the world."""

    def __init__(
        self,
        systemd: Systemd,
        allowed_units: frozenset[str],
        clock: Clock,
        job_timeout: float = 90.0,
        poll: float = 0.2,
    ) -> None:
        self._systemd = systemd
        self._allowed = allowed_units
        self._clock = clock
        self._job_timeout = job_timeout
        self._poll = poll

    def execute(self, step: Step, unit: str) -> Outcome:
        """Run one step on one unit; raises ActionError when it cannot be carried out."""
        if unit not in self._allowed:
            raise NotAllowed(f"{unit} is not in [units]; refusing to {step.action}")
        if self._systemd.unit_state(unit).result == "start-limit-hit":
            # Only then does systemd refuse a restart; resetting otherwise would erase the
            # failure (Result) that tells a crash from an operator's stop if the restart fails.
            self._systemd.reset_failed(unit)
        result = self._systemd.job("restart", unit, self._job_timeout)
        if result not in SUCCESSFUL_JOB_RESULTS:
            raise JobFailed(f"restart of {unit} ended with job result {result!r}", result)
        return settle(self._systemd, unit, step.verify, self._clock, self._poll)
