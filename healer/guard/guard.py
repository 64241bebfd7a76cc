"""Decide whether a step may act on a unit now, and whether a pass is a storm.

A step is admitted only if, in this order: its unit is in [units]; nothing is paused for it;
the hourly budget of actions has room; the step's "N within M" limit has room; and its backoff
since the last attempt has passed. Breakers hold one problem (a finding's key) and are checked
by the pass before any step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from healer.guard import ratelimit

if TYPE_CHECKING:
    from healer.config import GuardConfig
    from healer.model import Finding
    from healer.policy.models import Step
    from healer.state import State

GLOBAL = "*"


@dataclass(frozen=True)
class Verdict:
    """``outcome``: allowed, or refused, paused, budget, rate_limited, backoff."""

    outcome: str
    reason: str = ""

    @property
    def allowed(self) -> bool:
        """Whether the step may run."""
        return self.outcome == "allowed"


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

    def admit(self, step: Step, unit: str | None, state: State, now: float) -> Verdict:
        """The first rule that forbids the step, or allowed."""
        if unit is None or unit not in self.allowed_units:
            return Verdict("refused", f"{unit} is not in [units]; healer acts only on "
                                      f"{', '.join(sorted(self.allowed_units))}")
        checks = (self._paused, self._budget, self._limit, self._backoff)
        for check in checks:
            if (verdict := check(step, unit, state, now)) is not None:
                return verdict
        return Verdict("allowed")

    def _paused(self, _step: Step, unit: str, state: State, now: float) -> Verdict | None:
        paused = active_pause(state, unit, now)
        return Verdict("paused", paused) if paused else None

    def _budget(self, _step: Step, _unit: str, state: State, now: float) -> Verdict | None:
        spent = len(ratelimit.spent(state, now))
        if spent < self._config.budget_per_hour:
            return None
        return Verdict("budget", f"{spent} actions in the last hour reach the budget of "
                                 f"{self._config.budget_per_hour}")

    def _limit(self, step: Step, unit: str, state: State, now: float) -> Verdict | None:
        reason = ratelimit.exceeded(state, step.action, unit, step.limit, now)
        return Verdict("rate_limited", reason) if reason else None

    def _backoff(self, step: Step, unit: str, state: State, now: float) -> Verdict | None:
        times = ratelimit.recent(state, step.action, unit, step.limit.within, now)
        if not times or not step.backoff:
            return None
        wait = min(step.backoff * 2 ** (len(times) - 1), step.backoff_max)
        if now >= times[-1] + wait:
            return None
        return Verdict("backoff", f"backing off {wait:g}s after attempt {len(times)} of "
                                  f"{step.action} on {unit}; {times[-1] + wait - now:.0f}s left")

    def open_breaker(self, state: State, target: str, now: float) -> str | None:
        """Why the target's breaker holds it, or None (a breaker past its cool-down closes)."""
        breaker = state.breakers.get(target)
        if breaker is None:
            return None
        if now - breaker.opened >= self._config.breaker_cooldown:
            del state.breakers[target]
            return None
        left = breaker.opened + self._config.breaker_cooldown - now
        return (f"breaker open since incident {breaker.incident} ({breaker.reason}); "
                f"held until `healer resume` or {left:.0f}s of cool-down")

    def storm(self, findings: list[Finding]) -> str | None:
        """Why this pass is a storm (too much unhealthy at once), or None."""
        managed = self.allowed_units
        sick = {f.unit for f in findings if f.unit in managed and f.hold is None}
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
