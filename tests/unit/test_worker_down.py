"""The worker_down detector, on snapshots built directly."""

from __future__ import annotations

import pytest

from healer.detectors import worker_down
from healer.model import Snapshot, UnitState
from healer.testing import unit
from healer.vocabulary import FindingKey, Scenario, Severity

W1 = "celery-w1.service"
W2 = "celery-w2.service"


def snapshot(*workers: UnitState) -> Snapshot:
    """A snapshot holding only these worker units."""
    return Snapshot(taken_at=1_700_000_000.0, workers=workers)


def test_failed_unit_is_worker_down() -> None:
    """A failed worker (Result=signal) yields one worker_down finding on that unit, not held."""
    findings = worker_down.detect(snapshot(unit(W1, "failed", "signal", exec_main_status=9)))
    assert len(findings) == 1
    finding = findings[0]
    assert finding.scenario is Scenario.WORKER_DOWN
    assert finding.unit == W1
    assert finding.hold is None
    assert finding.evidence["result"] == "signal"
    assert finding.evidence["exec_main_status"] == 9
    assert finding.key == FindingKey(Scenario.WORKER_DOWN, W1)
    assert str(finding.key) == f"worker_down:{W1}"


def test_all_workers_down_is_critical() -> None:
    """When every worker is down, each finding is critical."""
    findings = worker_down.detect(
        snapshot(unit(W1, "failed", "signal"), unit(W2, "failed", "exit-code"))
    )
    assert [f.unit for f in findings] == [W1, W2]
    assert {f.severity for f in findings} == {Severity.CRITICAL}


def test_some_workers_down_is_high() -> None:
    """When some workers still run, the finding for the dead one is high."""
    findings = worker_down.detect(snapshot(unit(W1, "failed", "signal"), unit(W2)))
    assert [(f.unit, f.severity) for f in findings] == [(W1, Severity.HIGH)]


def test_clean_stop_is_held() -> None:
    """Inactive with Result=success (an operator's stop) is reported but held."""
    findings = worker_down.detect(snapshot(unit(W1, "inactive", "success")))
    assert len(findings) == 1
    assert findings[0].scenario is Scenario.WORKER_DOWN
    assert findings[0].hold is not None
    assert "operator" in findings[0].hold


@pytest.mark.parametrize("result", ["success", "signal"])
def test_deactivating_unit_is_held_until_down(result: str) -> None:
    """A worker still deactivating is held as stopping, not taken for an operator's stop."""
    findings = worker_down.detect(snapshot(unit(W1, "deactivating", result)))
    assert len(findings) == 1
    assert findings[0].hold == "still stopping: judged once it is down"
    assert "operator" not in findings[0].summary


@pytest.mark.parametrize("result", ["exit-code", "signal", "oom-kill", "start-limit-hit"])
def test_inactive_after_failure_is_not_held(result: str) -> None:
    """Inactive with a failing Result counts as failed and is not held."""
    findings = worker_down.detect(snapshot(unit(W1, "inactive", result)))
    assert len(findings) == 1
    assert findings[0].hold is None
    assert result in findings[0].summary


def test_not_found_unit_is_held() -> None:
    """A unit systemd does not know is reported and held (the unit file or [units] is wrong)."""
    missing = UnitState(name=W1, load_state="not-found", active_state="inactive",
                        sub_state="dead")
    findings = worker_down.detect(snapshot(missing))
    assert len(findings) == 1
    assert findings[0].hold is not None
    assert W1 in findings[0].hold
    assert findings[0].evidence["load_state"] == "not-found"


@pytest.mark.parametrize("active", ["active", "activating", "reloading"])
def test_running_unit_has_no_finding(active: str) -> None:
    """Active, activating and reloading workers are not down."""
    assert worker_down.detect(snapshot(unit(W1, active), unit(W2))) == []
