"""Detectors: pure functions from a Snapshot to Findings, one module per scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.detectors import worker_down

if TYPE_CHECKING:
    from collections.abc import Callable

    from healer.model import Finding, Snapshot

DETECTORS: tuple[Callable[[Snapshot], list[Finding]], ...] = (worker_down.detect,)


def detect(snapshot: Snapshot) -> list[Finding]:
    """Every detector's findings, most severe first."""
    findings = [f for detector in DETECTORS for f in detector(snapshot)]
    return sorted(findings, key=lambda f: f.severity.rank)
