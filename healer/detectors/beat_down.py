"""beat_down: the beat unit failed or is inactive after a failure.

Schedule-file trouble seen in beat's log since its last start goes in the evidence: a corrupt
file and a file locked by a second beat need different remedies (deleting the file does not
fix a lock). A beat stopped cleanly is reported and held, like a worker an operator stopped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Finding
from healer.vocabulary import Scenario, Severity

if TYPE_CHECKING:
    from healer.model import Snapshot


def detect(snapshot: Snapshot) -> list[Finding]:
    """One finding when beat is not running."""
    if (beat := snapshot.beat) is None or beat.is_active:
        return []
    log = snapshot.beat_log
    started = beat.active_enter_us / 1e6
    schedule = None
    if log and log.schedule_error and (log.schedule_error_at or 0) >= started - 1:
        schedule = log.schedule_error
    summary, hold = beat.why_down()
    if schedule:
        summary += f"; schedule file {schedule}"
    return [Finding(
        scenario=Scenario.BEAT_DOWN, severity=Severity.HIGH, unit=beat.name, summary=summary,
        evidence={"active_state": beat.active_state, "result": beat.result,
                  "exec_main_status": beat.exec_main_status, "schedule_file": schedule},
        hold=hold,
    )]
