"""The policy file format, validated as it is read (its JSON schema is exported from here)."""

from __future__ import annotations

import math
import re
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from msgspec import Meta

from healer import codec
from healer.config import UnitName
from healer.vocabulary import Scenario, Severity

if TYPE_CHECKING:
    from healer.model import Finding

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as "90s", "10m", "1h30m"; always finite."""
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION.findall(text) if len(text) <= 64 else []
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{value[:64]!r} is not a duration (e.g. 30s, 10m, 1h30m)")
        value = sum(float(n) * _SECONDS[u] for n, u in parts)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a duration (seconds, or a string such as 10m), "
                        f"got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError("a duration must be a finite number of seconds")
    return float(value)


MAX_DURATION = 30 * 86400.0  # every duration of a policy is at most 30 days


def _duration(value: object) -> float:
    """A duration: more than 0 s, at most 30 days."""
    seconds = parse_duration(value)
    if not 0 < seconds <= MAX_DURATION:
        raise ValueError(f"must be greater than 0 and at most {MAX_DURATION:g} seconds")
    return seconds


def _backoff(value: object) -> float:
    """A duration that may be 0 s: at most 30 days."""
    seconds = parse_duration(value)
    if not 0 <= seconds <= MAX_DURATION:
        raise ValueError(f"must be at least 0 and at most {MAX_DURATION:g} seconds")
    return seconds


def _seconds(least: str) -> dict[str, object]:
    """The JSON schema of a duration: seconds, or a string such as 90s, 10m, 1h30m."""
    return {"anyOf": [{"type": "number", least: 0, "maximum": MAX_DURATION},
                      {"type": "string", "pattern": f"^({_DURATION.pattern})+$"}]}


if TYPE_CHECKING:  # as the code sees them; read by the parse functions above
    Duration = float
    Backoff = float
else:
    Duration = codec.parsed(float, "Duration", _duration, _seconds("exclusiveMinimum"))
    Backoff = codec.parsed(float, "Backoff", _backoff, _seconds("minimum"))
Action = Literal[
    "restart_unit", "reset_failed", "daemon_reload", "restart_broker", "clear_beat_schedule",
    "escalate",
]


class Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Unknown keys are errors; models are frozen."""


class Limit(Strict, frozen=True):
    """At most ``max`` attempts on one target within ``within`` seconds ("N within M")."""

    max: Annotated[int, Meta(ge=1, le=1000)] = 3
    within: Duration = 900.0


class Step(Strict, frozen=True):
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


class Match(Strict, frozen=True):
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


class Rule(Strict, frozen=True):
    """A named rule: when it matches, its ladder is tried in order.

    ``escalate_after`` notifies once when the incident has been open that long, whatever the
    ladder is doing (runbook: workers down for more than 10 minutes). A rule with no ladder only
    watches and escalates after that time (nothing automatic, e.g. a database outage).
    """

    name: Annotated[str, Meta(min_length=1)]
    match: Match
    ladder: list[Step] = []
    escalate_after: Backoff | None = None  # 0: at once

    def __post_init__(self) -> None:
        """A rule acts, or at least watches."""
        if not self.ladder and self.escalate_after is None:
            raise ValueError("a rule needs a ladder, or escalate_after to only watch")


class PolicyFile(Strict, frozen=True):
    """One policy file."""

    rules: list[Rule] = []
