"""Decide whether a step may act on a unit now, and whether a pass is a storm.

A step is admitted only if, in this order: its unit is in [units]; nothing is paused for it;
the hourly budget of actions has room; the step's "N within M" limit has room; and its backoff
since the last attempt has passed. Breakers hold one problem (a finding's key) and are checked
by the pass before any step. The guard only reads the state: its verdicts are values, and the
pass applies them (a breaker whose cool-down passed is closed by the pass, not here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from healer.guard import ratelimit
from healer.vocabulary import Outcome

if TYPE_CHECKING:
    from collections.abc import Iterable

    from healer.config import GuardConfig
    from healer.model import Finding
    from healer.policy.models import Step
    from healer.state import State
    from healer.vocabulary import FindingKey

GLOBAL = "*"


@dataclass(frozen=True)
class Ruling:
    """The guard's answer: allowed, or why not (refused, paused, budget, ...).

    ``close_breaker`` when a breaker's cool-down has passed: the pass closes it.
    """

    outcome: Outcome
    reason: str = ""
    close_breaker: bool = False

    @property
    def allowed(self) -> bool:
        """Whether the step may run."""
        return self.outcome == Outcome.ALLOWED


ALLOWED = Ruling(Outcome.ALLOWED)


def active_pause(state: State, unit: str | None, now: float) -> str | None:
    """Why acting on the unit is paused now, or None."""
    for key in (GLOBAL, unit):
        pause = state.pauses.get(key or "")
        if pause is not None and (pause.until is None or now < pause.until):
            until = "until resumed" if pause.until is None else f"for {pause.until - now:.0f}s more"
            scope = "everything" if key == GLOBAL else key
            return f"paused ({scope}, {until}): {pause.reason}"
    return None


class Guard:
    """The allowlist from [units] and every limit on acting."""

    def __init__(self, allowed_units: frozenset[str], config: GuardConfig) -> None:
        self.allowed_units = allowed_units
        self._config = config

    def admit(self, step: Step, unit: str | None, state: State, now: float) -> Ruling:
        """The first rule that forbids the step, or allowed."""
        if unit is None or unit not in self.allowed_units:
            return Ruling(Outcome.REFUSED, f"{unit} is not in [units]; healer acts only on "
                                      f"{', '.join(sorted(self.allowed_units))}")
        checks = (self._paused, self._budget, self._limit, self._backoff)
        for check in checks:
            if (verdict := check(step, unit, state, now)) is not None:
                return verdict
        return ALLOWED

    def _paused(self, _step: Step, unit: str, state: State, now: float) -> Ruling | None:
        paused = active_pause(state, unit, now)
        return Ruling(Outcome.PAUSED, paused) if paused else None

    def _budget(self, _step: Step, _unit: str, state: State, now: float) -> Ruling | None:
        spent = len(ratelimit.spent(state, now))
        if spent < self._config.budget_per_hour:
            return None
        return Ruling(Outcome.BUDGET, f"{spent} actions in the last hour reach the budget of "
                                 f"{self._config.budget_per_hour}")

    def _limit(self, step: Step, unit: str, state: State, now: float) -> Ruling | None:
        reason = ratelimit.exceeded(state, step.action, unit, step.limit, now)
        return Ruling(Outcome.RATE_LIMITED, reason) if reason else None

    def _backoff(self, step: Step, unit: str, state: State, now: float) -> Ruling | None:
        times = ratelimit.recent(state, step.action, unit, step.limit.within, now)
        if not times or not step.backoff:
            return None
        wait = min(step.backoff * 2 ** (len(times) - 1), step.backoff_max)
        if now >= times[-1] + wait:
            return None
        return Ruling(Outcome.BACKOFF, f"backing off {wait:g}s after attempt {len(times)} of "
                                  f"{step.action} on {unit}; {times[-1] + wait - now:.0f}s left")

    def breaker(self, state: State, key: FindingKey, now: float) -> Ruling:
        """Whether the problem's breaker holds it; past its cool-down the pass closes it."""
        breaker = state.breakers.get(key)
        if breaker is None:
            return ALLOWED
        if now - breaker.opened >= self._config.breaker_cooldown:
            return Ruling(Outcome.ALLOWED, "cool-down passed", close_breaker=True)
        left = breaker.opened + self._config.breaker_cooldown - now
        return Ruling(Outcome.BREAKER_OPEN,
                      f"breaker open since incident {breaker.incident} ({breaker.reason}); "
                      f"held until `healer resume` or {left:.0f}s of cool-down")

    def sick(self, findings: list[Finding], acting: Iterable[str] = ()) -> set[str]:
        """The managed units found unhealthy (and not held), and those a step is verifying on."""
        managed = self.allowed_units
        return {f.unit for f in findings if f.unit in managed and f.hold is None} | \
            managed.intersection(acting)

    def storm(self, findings: list[Finding], acting: Iterable[str] = ()) -> str | None:
        """Why this pass is a storm (too much unhealthy at once), or None.

        ``acting``: the units whose steps are verifying now; they count as unhealthy.
        """
        managed = self.allowed_units
        sick = self.sick(findings, acting)
        if len(sick) < self._config.storm_min_units:  # two units down on a small host is not
            return None                               # a storm
        share = len(sick) / len(managed) if managed else 0.0
        if share > self._config.storm_share:
            return (f"{len(sick)} of {len(managed)} managed units unhealthy at once "
                    f"({share:.0%} > {self._config.storm_share:.0%})")
        if len(sick) > self._config.storm_max_units:
            return (f"this pass would act on {len(sick)} units "
                    f"(more than {self._config.storm_max_units})")
        return None
