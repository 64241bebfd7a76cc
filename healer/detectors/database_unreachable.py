"""database_unreachable: the application's database does not accept a connection (high)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding
from healer.vocabulary import Scenario, Severity

if TYPE_CHECKING:
    from healer.model import Snapshot


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding when the configured database endpoint is unreachable."""
    db = snapshot.database
    if db is None or db.reachable:
        return []
    return [Finding(
        scenario=Scenario.DATABASE_UNREACHABLE, severity=Severity.HIGH, unit=None,
        summary=f"{db.address}: {db.error}", evidence={"address": db.address, "error": db.error},
    )]
