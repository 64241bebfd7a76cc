"""The guard and the pass's ordering rules, over whole passes.

Storm, broker first, pause, budget, backoff, escalate_after, a ladder skipping a rate-limited
step, breaker cool-down, undelivered escalation. FakeSystemd and ManualClock stand in for
the world; the audit log and state store are real.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.config import GuardConfig
from healer.policy.models import Limit, Match, Rule, Step
from healer.state import Breaker, State
from healer.testing import FakeCelery, FakeSystemd, RecordingNotifier
from healer.vocabulary import FindingKey, Scenario
from tests.unit.harness import (
    BROKER,
    W1,
    W2,
    W3,
    Harness,
    broker_down,
    broker_rule,
    crashed,
    outcomes,
    restart_rule,
    svc,
    world,
)

if TYPE_CHECKING:
    from pathlib import Path

    from healer.model import BrokerState
    from healer.notify.webhook import Alert

# -- storm and broker first ------------------------------------------------------------------


def test_storm_holds_every_worker_and_escalates_each_once(tmp_path: Path) -> None:
    """3 of 4 managed units failed: a storm; nothing restarted, one storm record, one alert each."""
    harness = Harness(world(W1, W2, W3), tmp_path, guard=GuardConfig(storm_share=0.5))

    first = harness.run()

    assert harness.fake.calls == []
    assert sorted(outcomes(first)) == [(W1, "delivered"), (W1, "storm"), (W2, "delivered"),
                                       (W2, "storm"), (W3, "delivered"), (W3, "storm")]
    assert all("storm guard" in a.detail for a in first.actions)
    storm = harness.audit("storm_guard")
    assert len(storm) == 1
    assert (storm[0]["outcome"], storm[0]["incident"]) == ("on", None)
    assert "3 of 4" in storm[0]["reason"]
    assert sorted(harness.sent()) == [W1, W2, W3]
    assert len(harness.audit("escalation")) == 3
    decisions = harness.audit("decision")
    assert sorted(d["unit"] for d in decisions if d["outcome"] == "storm") == [W1, W2, W3]

    records = len(harness.audit())
    harness.clock.advance(30)
    second = harness.run()

    assert harness.fake.calls == []
    assert [a.outcome for a in second.actions] == ["storm"] * 3
    assert len(harness.audit()) == records
    assert len(harness.sent()) == 3


def test_storm_ends_with_an_off_record(tmp_path: Path) -> None:
    """When the storm is over, one storm_guard "off" record is written and incidents resolve."""
    harness = Harness(world(W1, W2, W3), tmp_path)
    harness.run()
    for name in (W1, W2, W3):
        harness.fake.units[name] = svc(name)

    report = harness.run()

    assert report.healthy
    assert [r["outcome"] for r in harness.audit("storm_guard")] == ["on", "off"]
    assert len(harness.audit("incident_resolved")) == 3
    assert harness.store.load().storm is None


def test_unreachable_broker_is_acted_on_first(tmp_path: Path) -> None:
    """The broker is restarted first; once it answers, the worker is judged afresh and healed."""
    fake = world(W1)
    harness = Harness(fake, tmp_path, rules=[broker_rule(), restart_rule()],
                      broker=broker_down(fake))

    report = harness.run()

    assert fake.calls == [("restart", BROKER), ("restart", W1)]
    assert outcomes(report) == [(BROKER, "healed"), (W1, "healed")]
    assert report.remaining == ()
    assert [a.action for a in report.actions] == ["restart_broker", "restart_unit"]
    assert harness.sent() == []


def test_a_healed_broker_alone_is_looked_at_once_more_not_twice(tmp_path: Path) -> None:
    """Broker healed, nothing else wrong: the pass ends on the look taken after the broker."""
    fake = world()
    broker = broker_down(fake)
    harness = Harness(fake, tmp_path, rules=[broker_rule()], broker=broker)

    report = harness.run()

    assert outcomes(report) == [(BROKER, "healed")]
    assert report.healthy
    assert broker.checks == 3  # the first look, the restart's verification, the look after


def test_pass_after_broker_first_has_nothing_left(tmp_path: Path) -> None:
    """Broker and worker healed in one pass (broker first): the next pass does nothing."""
    fake = world(W1)
    harness = Harness(fake, tmp_path, rules=[broker_rule(), restart_rule()],
                      broker=broker_down(fake))
    harness.run()
    harness.clock.advance(30)

    report = harness.run()

    assert report.healthy
    assert outcomes(report) == []
    assert harness.fake.calls == [("restart", BROKER), ("restart", W1)]


def test_storm_with_broker_down_fixes_the_broker_then_holds_the_rest(tmp_path: Path) -> None:
    """Broker and all workers down: broker restarted; the dead workers stay a storm, escalated."""
    fake = world(W1, W2, W3)
    harness = Harness(fake, tmp_path, rules=[broker_rule(), restart_rule()],
                      broker=broker_down(fake))

    report = harness.run()

    assert harness.fake.calls == [("restart", BROKER)]
    assert outcomes(report)[0] == (BROKER, "healed")
    assert sorted(o for o in outcomes(report)[1:] if o[1] == "storm") == [
        (W1, "storm"), (W2, "storm"), (W3, "storm")]
    assert len(harness.audit("escalation")) == 3


def test_broker_restart_leaves_an_operator_stopped_worker_stopped(tmp_path: Path) -> None:
    """A worker an operator stopped is not started by the broker's restart (wired as the CLI)."""
    fake = world()
    fake.units[W1] = svc(W1, "inactive", "success")
    harness = Harness(fake, tmp_path, rules=[broker_rule(), restart_rule()],
                      broker=broker_down(fake), celery=FakeCelery(W1))

    harness.run()

    assert fake.units[W1].active_state == "inactive"
    assert fake.calls == [("restart", BROKER)]


def test_broker_restart_leaves_a_paused_worker_alone(tmp_path: Path) -> None:
    """A paused, silent worker is not restarted by the broker's restart (wired as the CLI)."""
    fake = world()
    harness = Harness(fake, tmp_path, rules=[broker_rule(), restart_rule()],
                      broker=broker_down(fake), celery=FakeCelery(W1))
    harness.controls().pause(W1, None, "debugging w1")

    harness.run()

    assert fake.calls == [("restart", BROKER)]


def test_broker_restart_reports_a_silent_worker_for_its_own_rules(tmp_path: Path) -> None:
    """A worker still silent after the broker step is found once its silence is confirmed."""
    fake = world()
    harness = Harness(fake, tmp_path, rules=[broker_rule(), restart_rule()],
                      broker=broker_down(fake), celery=FakeCelery(W2))

    report = harness.run()

    assert fake.calls == [("restart", BROKER)]
    assert outcomes(report)[0] == (BROKER, "healed")
    assert W2 in report.actions[0].detail
    assert report.remaining == ()
    for _ in range(2):
        harness.clock.advance(10)
        report = harness.run()
    assert [(f.scenario.value, f.unit) for f in report.findings] == [
        ("worker_unresponsive", W2)]


# -- pause and resume ------------------------------------------------------------------------


def test_pause_of_everything_stops_acting(tmp_path: Path) -> None:
    """Paused everywhere, a failed worker is not restarted; the decision says paused and why."""
    harness = Harness(world(W1), tmp_path)
    assert harness.controls().pause(None, None, "maintenance") == "paused everything until resumed"

    report = harness.run()

    assert harness.fake.calls == []
    assert outcomes(report) == [(W1, "paused")]
    assert "maintenance" in report.actions[0].detail
    assert "everything" in report.actions[0].detail
    decision = harness.audit("decision")[-1]
    assert (decision["outcome"], decision["action"]) == ("paused", "restart_unit")
    assert "maintenance" in decision["reason"]
    assert harness.sent() == []


def test_pause_of_one_unit_leaves_the_others(tmp_path: Path) -> None:
    """A pause of W1 holds W1 only; W2, also failed, is restarted."""
    harness = Harness(world(W1, W2), tmp_path)
    harness.controls().pause(W1, None, "debugging w1")

    report = harness.run()

    assert harness.fake.calls == [("restart", W2)]
    assert sorted(outcomes(report)) == [(W1, "paused"), (W2, "healed")]
    paused = next(a for a in report.actions if a.unit == W1)
    assert W1 in paused.detail
    assert "debugging w1" in paused.detail


def test_pause_with_a_duration_expires(tmp_path: Path) -> None:
    """A 300 s pause holds for 300 s; once the clock passes it healer acts again."""
    harness = Harness(world(W1), tmp_path)
    assert harness.controls().pause(None, 300, "deploy") == "paused everything for 300s"

    held = harness.run()
    harness.clock.advance(301)
    acted = harness.run()

    assert outcomes(held) == [(W1, "paused")]
    assert "300s more" in held.actions[0].detail
    assert outcomes(acted) == [(W1, "healed")]
    assert harness.fake.calls == [("restart", W1)]


def test_resume_lifts_a_pause(tmp_path: Path) -> None:
    """After resume the held worker is restarted, and the resume is audited."""
    harness = Harness(world(W1), tmp_path)
    controls = harness.controls()
    controls.pause(None, None, "maintenance")
    harness.run()

    assert controls.resume(None) == "resumed: 1 pause(s) lifted, 0 breaker(s) closed"
    report = harness.run()

    assert outcomes(report) == [(W1, "healed")]
    assert harness.fake.calls == [("restart", W1)]
    assert harness.store.load().pauses == {}
    resumed = harness.audit("resumed")
    assert len(resumed) == 1
    assert resumed[0]["pauses"] == ["*"]


# -- budget, backoff, rate limits ------------------------------------------------------------


def test_hourly_budget_holds_a_second_action(tmp_path: Path) -> None:
    """With a budget of 1 per hour, a second worker failing in the same hour gets "budget"."""
    harness = Harness(world(W1), tmp_path, guard=GuardConfig(budget_per_hour=1))
    first = harness.run()
    harness.fake.units[W2] = svc(W2, "failed", "signal")
    harness.clock.advance(60)

    second = harness.run()

    assert outcomes(first) == [(W1, "healed")]
    assert outcomes(second) == [(W2, "budget")]
    assert "budget of 1" in second.actions[0].detail
    assert harness.fake.calls == [("restart", W1)]

    harness.clock.advance(3600)
    third = harness.run()

    assert outcomes(third) == [(W2, "healed")]


def test_budget_counts_attempts_older_than_the_step_window(tmp_path: Path) -> None:
    """Two restarts 11 min apart (limit window 10 min) spend a budget of 2 for the hour."""
    harness = Harness(world(W1), tmp_path, rules=[restart_rule(Limit(max=3, within=600))],
                      guard=GuardConfig(budget_per_hour=2))
    harness.run()
    harness.clock.advance(660)
    harness.fake.units[W1] = svc(W1, "failed", "signal")
    harness.run()
    harness.clock.advance(60)
    harness.fake.units[W2] = svc(W2, "failed", "signal")

    report = harness.run()

    assert outcomes(report) == [(W2, "budget")]


def test_backoff_waits_and_doubles(tmp_path: Path) -> None:
    """backoff=60: a retry within 60 s is held, after 61 s it runs; the next needs 120 s."""
    harness = Harness(world(W1), tmp_path, rules=[restart_rule(Limit(max=5), backoff=60)])
    fake = harness.fake
    t0 = harness.clock.time()
    harness.run()

    fake.units[W1] = svc(W1, "failed", "signal")
    harness.at(t0 + 30)
    early = harness.run()
    assert outcomes(early) == [(W1, "backoff")]
    assert "backing off 60s after attempt 1" in early.actions[0].detail
    assert "30s left" in early.actions[0].detail
    assert fake.calls == [("restart", W1)]

    harness.at(t0 + 61)
    t1 = harness.clock.time()
    assert outcomes(harness.run()) == [(W1, "healed")]
    assert len(fake.calls) == 2

    fake.units[W1] = svc(W1, "failed", "signal")
    harness.at(t1 + 61)
    doubled = harness.run()
    assert outcomes(doubled) == [(W1, "backoff")]
    assert "backing off 120s after attempt 2" in doubled.actions[0].detail
    assert len(fake.calls) == 2

    harness.at(t1 + 121)
    assert outcomes(harness.run()) == [(W1, "healed")]
    assert len(fake.calls) == 3
    assert harness.sent() == []


def test_rate_limited_step_is_skipped_for_the_next(tmp_path: Path) -> None:
    """Step 1 held by its limit is skipped and step 2 (daemon_reload) runs in the same pass."""
    ladder = [Step(action="restart_unit", verify=5, limit=Limit(max=1, within=600)),
              Step(action="daemon_reload", verify=5)]
    rule = Rule(name="two-steps", match=Match(scenario=Scenario.WORKER_DOWN), ladder=ladder)
    harness = Harness(world(W1), tmp_path, rules=[rule])
    first = harness.run()
    harness.fake.units[W1] = svc(W1, "failed", "signal")
    harness.clock.advance(60)

    second = harness.run()

    assert [(a.action, a.outcome) for a in first.actions] == [("restart_unit", "healed")]
    assert [(a.action, a.outcome) for a in second.actions] == [
        ("restart_unit", "rate_limited"), ("daemon_reload", "healed")]
    assert second.healthy
    assert harness.fake.calls == [("restart", W1), ("daemon-reload", ""), ("restart", W1)]
    assert harness.sent() == []


# -- escalation and breakers -----------------------------------------------------------------


def test_watch_only_rule_escalates_once_after_its_time(tmp_path: Path) -> None:
    """A watch-only rule watches; after escalate_after it escalates exactly once, never acts."""
    rule = Rule(name="watch", match=Match(scenario=Scenario.WORKER_DOWN), escalate_after=600)
    harness = Harness(world(W1), tmp_path, rules=[rule])

    first = harness.run()
    assert outcomes(first) == [(W1, "watching")]
    assert "escalates after 600s" in first.actions[0].detail
    assert harness.sent() == []

    harness.clock.advance(601)
    harness.run()
    assert harness.sent() == [W1]
    escalation = harness.audit("escalation")
    assert len(escalation) == 1
    assert escalation[0]["outcome"] == "delivered"
    assert "more than 600s" in escalation[0]["reason"]

    harness.clock.advance(601)
    third = harness.run()
    assert outcomes(third) == [(W1, "watching")]
    assert harness.sent() == [W1]
    assert len(harness.audit("escalation")) == 1
    assert len(harness.audit("decision")) == 1
    assert harness.fake.calls == []


def test_breaker_closes_after_its_cool_down(tmp_path: Path) -> None:
    """After giving up the breaker holds the worker; past breaker_cooldown healer acts again."""
    harness = Harness(world(W1), tmp_path, guard=GuardConfig(breaker_cooldown=300))
    harness.fake.outcomes[W1] = crashed
    gave_up = harness.run()
    harness.clock.advance(60)
    held = harness.run()

    assert [a.outcome for a in gave_up.actions] == ["not_healed", "delivered"]
    assert outcomes(held) == [(W1, "breaker_open")]
    assert "cool-down" in held.actions[0].detail
    assert harness.fake.calls == [("restart", W1)]

    del harness.fake.outcomes[W1]
    harness.clock.advance(300)
    assert outcomes(harness.run(dry_run=True)) == [(W1, "dry_run")]
    assert harness.audit("breaker_closed") == []  # a dry run closes nothing
    report = harness.run()

    assert outcomes(report) == [(W1, "healed"), (W1, "delivered")]  # healed: the resolve
    assert len(harness.audit("breaker_closed")) == 1
    assert report.healthy
    assert harness.fake.calls == [("restart", W1), ("restart", W1)]
    assert harness.store.load().breakers == {}
    assert harness.sent() == [W1, W1]


def test_undelivered_escalation_is_audited(tmp_path: Path) -> None:
    """A webhook that fails: the escalation is audited undelivered with the error, reported so."""
    harness = Harness(world(W1), tmp_path, notifier=RecordingNotifier(fail=True))
    harness.fake.outcomes[W1] = crashed

    report = harness.run()

    assert [(a.action, a.outcome) for a in report.actions] == [
        ("restart_unit", "not_healed"), ("escalate", "undelivered")]
    escalation = harness.audit("escalation")
    assert len(escalation) == 1
    assert escalation[0]["outcome"] == "undelivered"
    assert escalation[0]["error"] == "webhook unreachable"
    assert escalation[0]["unit"] == W1
    assert len(harness.audit("breaker_opened")) == 1


def test_escalation_without_webhook_is_audited(tmp_path: Path) -> None:
    """With no notifier configured the escalation record says no webhook is configured."""
    harness = Harness(world(W1), tmp_path, notifier=None)
    harness.fake.outcomes[W1] = crashed

    report = harness.run()

    assert report.actions[-1].outcome == "undelivered"
    escalation = harness.audit("escalation")
    assert len(escalation) == 1
    assert escalation[0]["outcome"] == "undelivered"
    assert escalation[0]["error"] == "no [escalation] webhook configured"


def test_two_units_down_on_a_small_host_is_not_a_storm(tmp_path: Path) -> None:
    """Below storm_min_units (3) unhealthy units there is no storm, whatever their share."""
    harness = Harness(world(W1, W2), tmp_path, guard=GuardConfig(storm_share=0.1))

    report = harness.run()

    assert sorted(outcomes(report)) == [(W1, "healed"), (W2, "healed")]
    assert harness.audit("storm_guard") == []


def test_diagnose_does_not_wait_for_a_running_pass(tmp_path: Path) -> None:
    """While a pass holds the state lock, diagnose looks at once and saves nothing."""
    harness = Harness(world(W1), tmp_path)
    with harness.store.locked():
        diagnosis = harness.pipeline().diagnose()
    assert [f.unit for f in diagnosis.findings] == [W1]
    assert not harness.store.path.exists()


class _BrokenBroker:
    """A broker probe that cannot look at all."""

    def check(self, queues: list[str]) -> BrokerState:  # noqa: ARG002
        """Fail like a probe with a bug or an unexpected reply."""
        raise RuntimeError("cannot look")


BROKER_KEY = FindingKey(Scenario.BROKER_UNREACHABLE, BROKER)


def test_an_incident_is_not_resolved_by_a_probe_that_could_not_look(tmp_path: Path) -> None:
    """While the broker probe fails, the open broker incident stays open (unknown, not healed)."""
    fake = world()
    harness = Harness(fake, tmp_path, rules=[], broker=broker_down(fake))
    harness.run()
    assert BROKER_KEY in harness.store.load().incidents
    harness.broker = _BrokenBroker()

    report = harness.run()

    assert report.probe_errors
    assert not report.healthy
    assert BROKER_KEY in harness.store.load().incidents
    assert harness.audit("incident_resolved") == []


def test_breakers_of_host_wide_and_unit_problems_are_reported_together(tmp_path: Path) -> None:
    """Open breakers with and without a unit (None) are listed, in key order, without error."""
    harness = Harness(world(), tmp_path)
    state = State()
    for key in (FindingKey(Scenario.WORKER_NOT_CONSUMING, W1),
                FindingKey(Scenario.WORKER_NOT_CONSUMING, None)):
        state.breakers[key] = Breaker(opened=harness.clock.time(), incident="i", reason="r")
    harness.store.save(state)

    report = harness.run()

    assert [str(k) for k in report.breakers] == ["worker_not_consuming:-",
                                                  f"worker_not_consuming:{W1}"]


class _Watching(RecordingNotifier):
    """A notifier that notes which restarts had been queued when each alert was sent."""

    def __init__(self, fake: FakeSystemd) -> None:
        super().__init__()
        self.fake = fake
        self.seen: list[list[tuple[str, str]]] = []

    def send(self, alert: Alert) -> None:
        """Note the jobs so far, then record the alert."""
        self.seen.append(list(self.fake.calls))
        super().send(alert)


def test_escalations_are_delivered_after_every_step_of_the_pass(tmp_path: Path) -> None:
    """W1's ladder runs out and escalates; W2's restart still comes before the alert is sent."""
    fake = world(W1, W2)
    fake.outcomes[W1] = crashed
    notifier = _Watching(fake)
    harness = Harness(fake, tmp_path, notifier=notifier)

    report = harness.run()

    assert outcomes(report) == [(W1, "not_healed"), (W2, "healed"), (W1, "delivered")]
    assert notifier.seen == [[("restart", W1), ("restart", W2)]]
