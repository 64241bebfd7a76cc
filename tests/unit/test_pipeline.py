"""Whole passes over FakeSystemd and ManualClock, with a real audit log and state store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from msgspec.structs import replace

from healer import compose
from healer.audit import review
from healer.audit.log import AuditLog
from healer.config import UnitsConfig
from healer.controls import Controls
from healer.errors import BusUnavailable, SystemdError
from healer.policy.loader import load_policies
from healer.policy.models import Limit
from healer.testing import FakeSystemd
from healer.vocabulary import FindingKey, Scenario
from tests.unit.harness import BROKER, W1, W2, W3, Harness, crashed, restart_rule, svc

if TYPE_CHECKING:
    from healer.model import UnitState

SHIPPED = Path(__file__).resolve().parents[2] / "policies"
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
ACTION_FIELDS = {"scenario", "unit", "action", "outcome", "dry_run"}


def two_workers(fake: FakeSystemd, root: Path, **kw: Any) -> Harness:  # noqa: ANN401
    """The harness with two workers and the broker in [units]."""
    return Harness(fake, root, units=UnitsConfig(workers=[W1, W2], broker=BROKER), **kw)


def healthy_world() -> FakeSystemd:
    """Both workers and the broker running."""
    return FakeSystemd(svc(W1), svc(W2), svc(BROKER))


def test_healthy_world_does_nothing(tmp_path: Path) -> None:
    """With every unit running, the pass is healthy, calls nothing and audits nothing."""
    harness = two_workers(healthy_world(), tmp_path)
    report = harness.run()
    assert report.healthy
    assert report.findings == ()
    assert harness.fake.calls == []
    assert harness.audit() == []


def test_failed_worker_is_restarted_and_audited(tmp_path: Path) -> None:
    """A failed worker is restarted (no reset needed) and verified; the audit tells it in order."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "failed", "signal", exec_main_status=9)
    harness = two_workers(fake, tmp_path)

    report = harness.run()

    assert fake.calls == [("restart", W1)]
    assert report.healthy
    assert [(a.unit, a.action, a.outcome) for a in report.actions] == [
        (W1, "restart_unit", "healed")
    ]
    records = harness.audit()
    assert [r["event"] for r in records] == [
        "incident_opened", "action_started", "action_finished", "incident_resolved"
    ]
    for record in records:
        assert {"ts", "event", "incident"} <= record.keys()
        assert record["incident"] == "inc-1"
        assert record["ts"].endswith("Z")
    opened, started, finished, resolved = records
    assert opened["scenario"] == "worker_down"
    assert opened["unit"] == W1
    assert opened["severity"] == "high"
    for action in (started, finished):
        assert action.keys() >= ACTION_FIELDS
        assert (action["scenario"], action["unit"], action["action"], action["dry_run"]) == (
            "worker_down", W1, "restart_unit", False)
    assert started["outcome"] == "started"
    assert finished["outcome"] == "healed"
    assert resolved["unit"] == W1
    state = harness.store.load()
    assert state.incidents == {}
    assert len(state.actions[f"restart_unit:{W1}"]) == 1


def test_intent_is_durable_before_the_job_runs(tmp_path: Path) -> None:
    """action_started and the rate-limit attempt are on disk before the restart job is queued."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "failed", "signal")
    harness = two_workers(fake, tmp_path)
    seen: list[tuple[list[str], int]] = []

    def look(state: UnitState) -> UnitState:
        attempts = harness.store.load().actions.get(f"restart_unit:{W1}", [])
        seen.append((harness.events(), len(attempts)))
        return state

    fake.outcomes[W1] = look
    harness.run()
    assert seen == [(["incident_opened", "action_started"], 1)]


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    """A dry run calls nothing, is not healthy, writes a dry_run decision and no state file."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "failed", "signal")
    harness = two_workers(fake, tmp_path)

    report = harness.run(dry_run=True)

    assert fake.calls == []
    assert not report.healthy
    assert report.dry_run
    assert [(a.outcome, a.dry_run) for a in report.actions] == [("dry_run", True)]
    decisions = [r for r in harness.audit() if r["event"] == "decision"]
    assert len(decisions) == 1
    assert decisions[0].keys() >= ACTION_FIELDS
    assert decisions[0]["dry_run"] is True
    assert decisions[0]["outcome"] == "dry_run"
    assert decisions[0]["unit"] == W1
    assert decisions[0]["action"] == "restart_unit"
    assert decisions[0]["incident"] is None  # no incident exists: a dry run opens none
    assert not harness.store.path.exists()
    assert fake.units[W1].active_state == "failed"


def test_operator_stop_is_held_and_decided_once(tmp_path: Path) -> None:
    """A cleanly stopped worker is held, untouched; a second identical pass adds no record."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "inactive", "success")
    harness = two_workers(fake, tmp_path)

    first = harness.run()
    harness.clock.advance(30)
    second = harness.run()

    assert fake.calls == []
    for report in (first, second):
        assert not report.healthy
        assert [a.outcome for a in report.actions] == ["held"]
    assert harness.events() == ["incident_opened", "decision"]
    decision = harness.audit()[1]
    assert decision["outcome"] == "held"
    assert decision["dry_run"] is False
    assert decision.keys() >= ACTION_FIELDS


def test_rate_limit_spans_pipelines_sharing_state(tmp_path: Path) -> None:
    """With max=2 per window, a third crash is not restarted: rate_limited, then escalated."""
    fake = healthy_world()
    harness = two_workers(fake, tmp_path, rules=[restart_rule(Limit(max=2, within=600))])
    reports = []
    for _ in range(3):
        fake.units[W1] = svc(W1, "failed", "signal")
        reports.append(harness.run())
        harness.clock.advance(60)

    assert harness.restarts() == 2
    assert [r.healthy for r in reports] == [True, True, False]
    assert [a.outcome for a in reports[2].actions] == ["rate_limited", "delivered"]
    assert "limit of 2" in reports[2].actions[0].detail
    decision, breaker, escalation = harness.audit()[-3:]  # delivered once the steps are done
    assert (decision["event"], decision["outcome"], decision["unit"]) == (
        "decision", "rate_limited", W1)
    assert (escalation["event"], escalation["outcome"]) == ("escalation", "delivered")
    assert breaker["event"] == "breaker_opened"
    assert len(harness.sent()) == 1


def test_step_on_unit_outside_allowlist_is_refused(tmp_path: Path) -> None:
    """A policy step naming a unit outside [units] is refused and nothing is called."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "failed", "signal")
    harness = two_workers(fake, tmp_path, rules=[restart_rule(unit_name="postgresql.service")])

    report = harness.run()

    assert fake.calls == []
    assert not report.healthy
    assert [(a.unit, a.outcome) for a in report.actions] == [("postgresql.service", "refused")]
    decision = harness.audit()[-1]
    assert (decision["event"], decision["outcome"]) == ("decision", "refused")


def test_finding_without_policy_is_decided_no_policy(tmp_path: Path) -> None:
    """With no rule for the finding nothing is called and the decision is no_policy."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "failed", "signal")
    harness = two_workers(fake, tmp_path, rules=[])

    report = harness.run()

    assert fake.calls == []
    assert not report.healthy
    assert [a.outcome for a in report.actions] == ["no_policy"]


def test_failed_job_is_failed(tmp_path: Path) -> None:
    """A restart job ending "failed" is outcome failed, the job result as error; unhealthy."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "failed", "signal")
    fake.job_results[W1] = "failed"
    # FakeSystemd applies a job's state change whatever job_results says; a real failed restart
    # leaves the unit failed, so say so.
    fake.outcomes[W1] = crashed
    harness = two_workers(fake, tmp_path)

    report = harness.run()

    assert harness.restarts() == 1
    assert not report.healthy
    assert [a.outcome for a in report.actions] == ["failed", "delivered"]
    finished = next(r for r in harness.audit() if r["event"] == "action_finished")
    assert (finished["outcome"], finished["error"]) == ("failed", "failed")
    assert "failed" in finished["detail"]


def test_crash_after_restart_is_not_healed(tmp_path: Path) -> None:
    """A unit that fails again right after its restart is not_healed and the incident stays open."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "failed", "signal")
    fake.outcomes[W1] = crashed
    harness = two_workers(fake, tmp_path)

    report = harness.run()

    assert not report.healthy
    assert [a.outcome for a in report.actions] == ["not_healed", "delivered"]
    assert [f.unit for f in report.remaining] == [W1]
    finished = next(r for r in harness.audit() if r["event"] == "action_finished")
    assert finished["outcome"] == "not_healed"
    assert finished["evidence"]["active_state"] == "failed"
    assert FindingKey(Scenario.WORKER_DOWN, W1) in harness.store.load().incidents


def test_access_denied_is_failed_with_dbus_name(tmp_path: Path) -> None:
    """A restart polkit denies is outcome denied, the D-Bus error name kept; escalated at once."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "failed", "signal")
    fake.errors[("restart", W1)] = SystemdError(
        f"restart {W1}: {ACCESS_DENIED}: denied", dbus_name=ACCESS_DENIED)
    harness = two_workers(fake, tmp_path)

    report = harness.run()

    assert not report.healthy
    assert [a.outcome for a in report.actions] == ["denied", "delivered"]
    events = harness.events()
    assert events[:3] == ["incident_opened", "action_started", "action_finished"]
    finished = harness.audit()[2]
    assert finished["outcome"] == "denied"
    assert finished["error"] == ACCESS_DENIED
    assert finished["dry_run"] is False


def test_bus_lost_before_an_action_stops_the_ladder_without_holding(tmp_path: Path) -> None:
    """No bus at action time: outcome unreachable, audited, no next step, no breaker, no page."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "failed", "signal")
    fake.errors[("restart", W1)] = BusUnavailable("cannot reach systemd on D-Bus at x: gone")
    harness = two_workers(fake, tmp_path)

    report = harness.run()

    assert not report.healthy
    assert [(a.action, a.outcome) for a in report.actions] == [("restart_unit", "unreachable")]
    assert fake.calls == [("restart", W1)]
    finished = harness.audit()[2]
    assert (finished["event"], finished["outcome"]) == ("action_finished", "unreachable")
    assert finished["error"] == "BusUnavailable"
    assert "escalation" not in harness.events()
    assert harness.store.load().breakers == {}


def test_start_limit_hit_is_reset_before_restart(tmp_path: Path) -> None:
    """A unit that hit its start limit is reset-failed first, since systemd refuses it otherwise."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "failed", "start-limit-hit")

    two_workers(fake, tmp_path).run()

    assert fake.calls == [("reset-failed", W1), ("restart", W1)]


def test_denied_restart_leaves_a_failure_not_an_operator_stop(tmp_path: Path) -> None:
    """A denied restart leaves a failure, not a stop: held by the breaker, healed after resume."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "failed", "signal")
    fake.errors[("restart", W1)] = SystemdError("denied", dbus_name=ACCESS_DENIED)
    harness = two_workers(fake, tmp_path)
    harness.run()
    assert fake.units[W1].active_state == "failed"
    del fake.errors[("restart", W1)]
    held = harness.run()
    assert [a.outcome for a in held.actions] == ["breaker_open"]

    Controls(harness.store, AuditLog(harness.audit_path, harness.clock), harness.clock).resume(None)
    report = harness.run()

    assert report.healthy
    assert fake.calls == [("restart", W1), ("restart", W1)]


def test_shipped_policy_climbs_the_runbook_ladder(tmp_path: Path) -> None:
    """Shipped worker_down policy: restart, then daemon-reload + restart, then one escalation."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "failed", "signal")
    fake.outcomes[W1] = crashed
    harness = two_workers(fake, tmp_path, rules=load_policies(SHIPPED))

    report = harness.run()

    assert [(a.action, a.outcome) for a in report.actions] == [
        ("restart_unit", "not_healed"), ("daemon_reload", "not_healed"),
        ("escalate", "delivered")]
    assert fake.calls == [("restart", W1), ("daemon-reload", ""), ("restart", W1)]
    assert len(harness.sent()) == 1
    again = harness.run()
    assert [a.outcome for a in again.actions] == ["breaker_open"]
    assert len(fake.calls) == 3


def test_denial_stops_the_ladder_instead_of_trying_every_step(tmp_path: Path) -> None:
    """A denial stops the ladder: one escalation, then the breaker holds; no retry loop."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "failed", "signal")
    name = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
    fake.errors[("restart", W1)] = SystemdError("no rule", dbus_name=name)
    harness = two_workers(fake, tmp_path, rules=load_policies(SHIPPED))

    report = harness.run()

    assert [(a.action, a.outcome) for a in report.actions] == [
        ("restart_unit", "denied"), ("escalate", "delivered")]
    assert fake.calls == [("restart", W1)]
    assert [a.outcome for a in harness.run().actions] == ["breaker_open"]
    assert fake.calls == [("restart", W1)]


def test_diagnose_names_the_remedy_the_policy_would_choose(tmp_path: Path) -> None:
    """Diagnose gives each finding the shipped ladder compactly, or why nothing would be done."""
    fake = healthy_world()
    fake.units[W1] = svc(W1, "failed", "signal")
    fake.units[W2] = svc(W2, "inactive", "success")
    diagnosis = two_workers(fake, tmp_path, rules=load_policies(SHIPPED)).pipeline().diagnose()
    assert diagnosis.remedies == {
        FindingKey(Scenario.WORKER_DOWN, W1): f"restart_unit > daemon_reload > escalate on "
                                              f"{W1} (rule all-workers-down)",
        FindingKey(Scenario.WORKER_DOWN, W2): "none: stopped by an operator: left stopped",
    }
    assert fake.calls == []


def test_incident_of_a_unit_dropped_from_units_is_dropped_not_resolved(tmp_path: Path) -> None:
    """A unit taken out of [units] closes its open incident as dropped; review says so too."""
    fake = FakeSystemd(svc(W1), svc(W2), svc(W3, "inactive"), svc(BROKER))
    assert not Harness(fake, tmp_path).run().healthy  # W3 stopped: held, incident open
    later = two_workers(fake, tmp_path)
    assert later.run().healthy
    assert later.audit("incident_resolved") == []
    [dropped] = later.audit("incident_dropped")
    assert (dropped["unit"], dropped["reason"]) == (W3, "no longer in [units]: not watched")
    assert [i.outcome for i in review.incidents(later.audit())] == ["dropped"]


def test_a_pass_names_what_it_cannot_watch_and_why(tmp_path: Path) -> None:
    """No worker log or events, no beat, no database: each scenario unwatched, with its reason."""
    fake = FakeSystemd(svc(W1, stdout="journal", stderr="null"), svc(W2), svc(BROKER))
    harness = two_workers(fake, tmp_path)
    report = harness.run()
    assert report.healthy
    assert report.unwatched == {
        "task_failures": f"no worker log found for {W1} ({W1} sends its output to null), and "
                         f"task events are off; no worker log found for {W2} ({W2} sends its "
                         "output to nowhere healer knows), and task events are off",
        "beat_down": "no beat unit in [units]", "beat_stalled": "no beat unit in [units]",
        "database_unreachable": "no [database] host and port set",
        "critical_task_stalled": "no [tasks] critical named"}
    assert harness.pipeline().diagnose().unwatched == report.unwatched


def test_a_worker_without_a_node_is_not_watched_for_silence(tmp_path: Path) -> None:
    """A unit whose ExecStart names no node and that [celery] nodes leaves out: unwatched."""
    harness = Harness(healthy_world(), tmp_path, units=UnitsConfig(workers=[W1], broker=BROKER))
    discovered = replace(harness.config, celery=replace(harness.config.celery, nodes=None))
    diagnosis = compose.pipeline(discovered, harness.world(), harness.rules).diagnose()
    assert diagnosis.unwatched["worker_unresponsive"] == (
        f"no Celery node found in the ExecStart of {W1}; set [celery] nodes")
    short = replace(harness.config, celery=replace(harness.config.celery, nodes=[]))
    unwatched = compose.pipeline(short, harness.world(), harness.rules).diagnose().unwatched
    assert unwatched["worker_unresponsive"] == (
        f"[celery] nodes names none for {W1} (one per worker unit, in order)")
