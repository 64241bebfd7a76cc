"""Decide whether a step may act on a unit now."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from healer.guard import ratelimit

if TYPE_CHECKING:
    from healer.policy.models import Step
    from healer.state import State


@dataclass(frozen=True)
class Verdict:
    """``outcome`` is "allowed", or why not: "refused" (allowlist) or "rate_limited"."""

    outcome: str
    reason: str = ""

    @property
    def allowed(self) -> bool:
        """Whether the step may run."""
        return self.outcome == "allowed"


class Guard:
    """The allowlist from [units] and the policy's rate limits."""

    def __init__(self, allowed_units: frozenset[str]) -> None:
        self.allowed_units = allowed_units

    def admit(self, step: Step, unit: str | None, state: State, now: float) -> Verdict:
        """Check the allowlist first, then the step's limit."""
        if unit is None or unit not in self.allowed_units:
            return Verdict("refused", f"{unit} is not in [units]; healer acts only on "
                                      f"{', '.join(sorted(self.allowed_units))}")
        reason = ratelimit.exceeded(state, step.action, unit, step.limit, now)
        return Verdict("rate_limited", reason) if reason else Verdict("allowed")
