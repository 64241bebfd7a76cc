"""Escalation on a simulated clock: tiers at their times, resolves, an outbox that loses nothing."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from msgspec.structs import replace

from healer.cli import main
from healer.config import EscalationConfig, TierConfig
from healer.pipeline import RESEND
from tests.unit.harness import W1, W2, Harness, crashed, restart_rule, world

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

    from healer.testing import RecordingNotifier

BACKOFF = EscalationConfig().retry_after
THREE = EscalationConfig(tiers=[TierConfig(webhook=f"http://tier{n}.invalid/") for n in range(3)])


def crash_loop(tmp_path: Path, escalation: EscalationConfig = THREE) -> Harness:
    """W1 crashes after every restart: the first pass gives up and escalates."""
    harness = Harness(world(W1), tmp_path, escalation=escalation)
    harness.fake.outcomes[W1] = crashed
    return harness


def escalated_at(harness: Harness) -> float:
    """When the one open incident was escalated."""
    [incident] = harness.store.load().incidents.values()
    assert incident.escalated_at is not None
    return incident.escalated_at


def said(harness: Harness) -> list[tuple[int, str]]:
    """(tier, status) of every alert delivered, in order."""
    notifier: RecordingNotifier | None = harness.notifier
    assert notifier is not None
    return [(a.tier, a.status) for a in notifier.sent]


def test_each_tier_is_notified_at_its_time_and_once(tmp_path: Path) -> None:
    """The runbook's default: the first tier at once, the next at 20 min, the last at 40."""
    harness = crash_loop(tmp_path)
    harness.run()
    assert said(harness) == [(0, "triggered")]
    start = escalated_at(harness)
    for at, expected in ((1199, 1), (1200, 2), (1500, 2), (2400, 3), (3000, 3)):
        harness.at(start + at)
        harness.run()
        assert len(said(harness)) == expected, at
    assert said(harness) == [(0, "triggered"), (1, "triggered"), (2, "triggered")]
    assert [r["tier"] for r in harness.audit("escalation")] == [1, 2, 3]


def test_a_resolve_goes_to_each_tier_that_was_notified(tmp_path: Path) -> None:
    """Healed after two tiers were told: both get the resolve, the third tier nothing."""
    harness = crash_loop(tmp_path)
    harness.run()
    harness.clock.advance(1300)
    harness.run()
    del harness.fake.outcomes[W1]
    assert harness.controls().resume(None)
    report = harness.run()
    assert report.healthy
    assert said(harness) == [(0, "triggered"), (1, "triggered"), (0, "resolved"),
                             (1, "resolved")]
    assert [(a.action, a.outcome) for a in report.actions][-2:] == [
        ("resolve", "delivered"), ("resolve", "delivered")]
    assert harness.store.load().outbox == []


def test_the_outbox_retries_with_backoff_across_passes_and_delivers_once(tmp_path: Path) -> None:
    """Receiver down: kept with a growing wait (a new pipeline each pass); once up, sent once."""
    harness = crash_loop(tmp_path, EscalationConfig(webhook="http://hook.invalid/"))
    assert harness.notifier is not None
    harness.notifier.fail = True
    harness.run()
    [notice] = harness.store.load().outbox
    assert (notice.attempts, notice.next_at) == (1, harness.clock.time() + BACKOFF)
    harness.clock.advance(BACKOFF - 1)
    harness.run()
    assert harness.store.load().outbox[0].attempts == 1  # not yet due: not tried
    harness.clock.advance(1)
    harness.run()
    assert harness.store.load().outbox[0].next_at == harness.clock.time() + 2 * BACKOFF
    harness.notifier.fail = False
    harness.clock.advance(2 * BACKOFF)
    harness.run()
    harness.clock.advance(10 * BACKOFF)
    harness.run()
    assert said(harness) == [(0, "triggered")]
    assert harness.store.load().outbox == []
    assert [(r["outcome"], r["attempt"]) for r in harness.audit("escalation")] == [
        ("undelivered", 1), ("undelivered", 2), ("delivered", 3)]


def test_a_notice_never_delivered_expires_and_says_so(tmp_path: Path) -> None:
    """Past expire_after the notice leaves the outbox, audited as expired."""
    harness = crash_loop(tmp_path, EscalationConfig(webhook="http://hook.invalid/",
                                                    expire_after=100))
    assert harness.notifier is not None
    harness.notifier.fail = True
    for _ in range(6):
        harness.run()
        harness.clock.advance(BACKOFF * 4)
    assert harness.store.load().outbox == []
    assert [r["outcome"] for r in harness.audit("escalation")][-1] == "expired"
    assert said(harness) == []


def test_the_incident_document_tells_the_whole_incident(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The document (audit show --markdown): outcome, heal time, findings, actions, escalations."""
    harness = crash_loop(tmp_path, EscalationConfig(webhook="http://hook.invalid/"))
    harness.run()
    del harness.fake.outcomes[W1]
    harness.clock.advance(30)
    harness.controls().resume(None)
    harness.run()
    [opened] = harness.audit("incident_opened")
    assert main(["audit", "show", opened["incident"], "--markdown",
                 "--log", str(harness.audit_path)]) == 0
    document = capsys.readouterr().out
    assert document.startswith(f"# Incident {opened['incident']}: worker_down on {W1}\n")
    for line in ("- Outcome: healed", "## Findings", "## Actions", "## Escalations",
                 "## Timeline", "| worker_down | high |", f"| restart_unit | {W1} | not_healed |",
                 "| escalate | 1 | 1 | delivered |", "| resolve | 1 | 1 | delivered |"):
        assert line in document, line
    assert "- Time to heal: " in document
    assert main(["audit", "list", "--json", "--log", str(harness.audit_path)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["steps"] == [
        "restart_unit:not_healed", "escalate:delivered", "restart_unit:healed",
        "resolve:delivered"]
    assert main(["audit", "show", opened["incident"], "--markdown", "--json",
                 "--log", str(harness.audit_path)]) == 2


def test_an_incident_escalated_and_healed_in_one_pass_sends_its_trigger_then_its_resolve(
        tmp_path: Path) -> None:
    """Overdue while paused, then healed by the pass that escalates it: both, in order."""
    rule = replace(restart_rule(), escalate_after=10.0)
    harness = Harness(world(W1), tmp_path, rules=[rule],
                      escalation=EscalationConfig(webhook="http://hook.invalid/"))
    harness.controls().pause(None, None, "maintenance")
    harness.run()
    harness.clock.advance(20)
    harness.controls().resume(None)
    report = harness.run()
    assert report.healthy
    assert said(harness) == [(0, "triggered"), (0, "resolved")]


def test_without_a_webhook_every_escalation_is_audited_undelivered_at_once(
        tmp_path: Path) -> None:
    """No receiver configured: nothing to retry to, so none waits in the outbox."""
    harness = Harness(world(W1, W2), tmp_path, notifier=None)
    harness.fake.outcomes.update({W1: crashed, W2: crashed})
    harness.run()
    assert sorted((r["unit"], r["outcome"], r["error"]) for r in harness.audit("escalation")) == [
        (unit, "undelivered", "no [escalation] webhook configured") for unit in (W1, W2)]
    assert harness.store.load().outbox == []


ALERTMANAGER = EscalationConfig(webhook="http://am.invalid:9093", format="alertmanager")


def test_alertmanager_is_told_again_while_the_incident_is_open(tmp_path: Path) -> None:
    """Every RESEND seconds an open incident's alert goes again, alike, until its resolve."""
    harness = crash_loop(tmp_path, ALERTMANAGER)
    harness.run()
    for wait, told in ((RESEND - 1, 1), (1, 2), (RESEND / 2, 2), (RESEND / 2, 3)):
        harness.clock.advance(wait)
        harness.run()
        assert len(said(harness)) == told, wait
    notifier = harness.notifier
    assert notifier is not None
    first, *again = notifier.sent
    assert {(a.incident, a.started, a.severity) for a in again} == {
        (first.incident, first.started, first.severity)}
    del harness.fake.outcomes[W1]
    assert harness.controls().resume(None)
    harness.run()
    assert said(harness)[-1] == (0, "resolved")
    assert notifier.sent[-1].severity == first.severity  # the labels it fired with


def test_a_resend_waits_behind_one_still_in_the_outbox(tmp_path: Path) -> None:
    """Alertmanager down for ten minutes: one notice waits and is retried; none piles up."""
    harness = crash_loop(tmp_path, ALERTMANAGER)
    assert harness.notifier is not None
    harness.notifier.fail = True
    for _ in range(10):
        harness.run()
        harness.clock.advance(RESEND)
    assert len(harness.store.load().outbox) == 1
