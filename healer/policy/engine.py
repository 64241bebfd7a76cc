"""Choose the remediation for a finding: the first rule that matches, in file order."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from healer.model import Finding
    from healer.policy.models import Rule


class PolicyEngine:
    """Rules in order; ``rule_for`` picks the first one matching a finding."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    def rule_for(self, finding: Finding) -> Rule | None:
        """The first matching rule, or None when no policy covers the finding."""
        return next((rule for rule in self.rules if rule.match.matches(finding)), None)
