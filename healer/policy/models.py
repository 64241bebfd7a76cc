"""The policy file format, validated with pydantic (its JSON schema is exported from here)."""

from __future__ import annotations

import math
import re
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from healer.config import UnitName
from healer.vocabulary import Scenario, Severity

if TYPE_CHECKING:
    from healer.model import Finding

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> object:
    """Seconds from a number or a string such as "90s", "10m", "1h30m"; always finite."""
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION.findall(text) if len(text) <= 64 else []
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{value[:64]!r} is not a duration (e.g. 30s, 10m, 1h30m)")
        value = sum(float(n) * _SECONDS[u] for n, u in parts)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a duration must be a finite number of seconds")
    return value


MAX_DURATION = 30 * 86400.0  # every duration of a policy is at most 30 days
Duration = Annotated[float, BeforeValidator(parse_duration),
                     Field(gt=0, le=MAX_DURATION, allow_inf_nan=False)]
Backoff = Annotated[float, BeforeValidator(parse_duration),
                    Field(ge=0, le=MAX_DURATION, allow_inf_nan=False)]
Action = Literal[
    "restart_unit", "reset_failed", "daemon_reload", "restart_broker", "clear_beat_schedule",
    "escalate",
]


class Strict(BaseModel):
    """Unknown keys are errors; models are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Limit(Strict):
    """At most ``max`` attempts on one target within ``within`` seconds ("N within M")."""

    max: int = Field(default=3, ge=1, le=1000)
    within: Duration = 900.0


class Step(Strict):
    """One rung of a ladder: an action, on the finding's unit unless ``unit`` names another.

    ``verify`` is how long the result must hold to count as healed; ``limit`` caps attempts on
    one target ("N within M"); after an attempt the next waits ``backoff``, doubled each time
    up to ``backoff_max``.
    """

    action: Action
    unit: UnitName | None = None
    verify: Duration = 5.0
    limit: Limit = Limit()
    backoff: Backoff = 0.0
    backoff_max: Duration = 3600.0


class Match(Strict):
    """Which findings a rule is for: a scenario, a unit glob, optionally some severities."""

    scenario: Scenario
    unit: str = "*"
    severity: list[Severity] | None = None
    evidence: dict[str, str | int | bool] | None = None

    def matches(self, finding: Finding) -> bool:
        """Whether the finding falls under this rule."""
        return (
            finding.scenario == self.scenario
            and fnmatchcase(finding.unit or "", self.unit)
            and (self.severity is None or finding.severity in self.severity)
            and all(finding.evidence.get(k) == v for k, v in (self.evidence or {}).items())
        )


class Rule(Strict):
    """A named rule: when it matches, its ladder is tried in order.

    ``escalate_after`` notifies once when the incident has been open that long, whatever the
    ladder is doing (runbook: workers down for more than 10 minutes). A rule with no ladder only
    watches and escalates after that time (nothing automatic, e.g. a database outage).
    """

    name: str = Field(min_length=1)
    match: Match
    ladder: list[Step] = Field(default_factory=list)
    escalate_after: Backoff | None = None  # 0: at once

    @model_validator(mode="after")
    def _does_something(self) -> Rule:
        if not self.ladder and self.escalate_after is None:
            raise ValueError("a rule needs a ladder, or escalate_after to only watch")
        return self


class PolicyFile(Strict):
    """One policy file."""

    rules: list[Rule] = Field(default_factory=list)
