"""One remediation pass: probe, detect, decide, guard, act, verify, audit.

Order of work: the broker before workers before beat. While the broker is unreachable only the
broker is acted on (it explains the rest). In a storm (too much unhealthy at once) only the
broker is acted on, or, without a broker problem, everything is held and escalated.

A rule's ladder is tried step by step: a step that did not heal hands over to the next; a step
held by its "N within M" limit is skipped for the next; any other hold (pause, breaker,
budget, backoff) ends the ladder for this pass. When the ladder runs out, healer escalates once
and opens the target's breaker.

A pass looks at the world once before acting, and again only after a step that may have
changed it (a healed broker: the rest is judged afresh; any step that acted: the final state).
While a worker's or beat's step verifies, the units are read at every poll, and one that
changed is judged at once (``_meanwhile``): a second crash does not wait for the first
window to end. The broker first and the storm guard still apply, over what is being acted on
too; while the broker's own step verifies, everything else waits.
Every look is folded into the state's history here (``healer.history``); the guard, the
executor and the escalator only answer, and the pass applies what they decided.

With a fleet (``healer.fleet``), the pass publishes its unhealthy units and reads the fleet's
before it decides on workers and beat, and asks again before each step: in a fleet storm they
are held on every host (but for one trial step per cool-down, fleet-wide), the host holding the
lease escalates the storm once, and every step takes one action from the fleet's budget. When the
store cannot be reached, the local fallback budget applies, said once in the audit log. The broker
is decided before any of this and never waits on the store (its Redis may be what is down).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from healer import history
from healer.detectors import DETECTORS, detect
from healer.errors import (
    ActionError,
    BusUnavailable,
    FleetUnreachable,
    JobFailed,
    ProbeError,
    SystemdError,
)
from healer.guard import ratelimit
from healer.guard.guard import Ruling, active_pause
from healer.model import ActionReport, Diagnosis, Finding, FleetReport, PassReport
from healer.notify.escalator import key_of
from healer.notify.webhook import RESOLVED
from healer.state import Breaker, Incident, InFlight, State
from healer.vocabulary import ACTED, Event, FindingKey, Outcome, Scenario, Severity

if TYPE_CHECKING:
    from collections.abc import Callable

    from healer.audit.log import AuditLog
    from healer.clock import Clock
    from healer.executor.executor import Executor
    from healer.fleet import Fleet, View
    from healer.guard.guard import Guard
    from healer.model import Snapshot, Thresholds, UnitState
    from healer.notify.escalator import Escalator
    from healer.policy.engine import PolicyEngine
    from healer.policy.models import Rule, Step
    from healer.probes.prober import Prober
    from healer.state import StateStore

_ORDER = [d.__module__.rsplit(".", 1)[-1] for d in DETECTORS]  # broker, workers, ..., beat
RESEND = 60.0  # seconds between re-sends to a tier that expects them (Prometheus's resend delay)
FLEET_STORM = FindingKey(Scenario.FLEET_STORM, None)
T = TypeVar("T")


def _mark(unit: UnitState) -> tuple[str, int]:
    """What tells that a unit changed between two reads: its state and its process."""
    return unit.active_state, unit.main_pid


@dataclass
class _Doing:
    """What the pass in progress has taken on, kept for ``_meanwhile``."""

    taken: set[FindingKey] = field(default_factory=set)  # decided in this pass
    waiting: list[Finding] = field(default_factory=list)  # what waits behind the steps verifying
    found: list[Finding] = field(default_factory=list)  # found while a step verified
    reports: list[ActionReport] = field(default_factory=list)  # decided then
    last: Snapshot | None = None  # the last look
    sick: set[str] = field(default_factory=set)  # this host's unhealthy units, as published
    view: View | None = None  # the fleet, as last read
    fresh: bool = False  # no step has run since it was read
    fleet_lost: bool = False  # the fleet's store failed in this pass: not asked again
    storm: Finding | None = None  # the fleet's storm, when this host escalates it
    trial: FindingKey | None = None  # the one step this host may try in the fleet's storm


@dataclass
class Pipeline:
    """Everything one pass needs, passed in; ``run_once`` is the pass."""

    prober: Prober
    policy: PolicyEngine
    guard: Guard
    executor: Executor
    escalator: Escalator
    audit: AuditLog
    store: StateStore
    clock: Clock
    new_id: Callable[[], str]
    thresholds: Thresholds
    broker_unit: str | None = None
    tiers: tuple[float, ...] = ()  # each escalation tier's ``after``
    resending: frozenset[int] = frozenset()  # the tiers told again while the incident is open
    fleet: Fleet | None = None  # without [fleet]: this host alone
    _stale: bool = field(default=False, init=False)  # a step may have changed the world
    _doing: _Doing = field(default_factory=_Doing, init=False)

    def _look(self, state: State) -> Snapshot:
        """Probe once and fold what was seen into the state's history."""
        self._stale = False
        readings = self.prober.observe(state.logs, state.journal_cursors,
                                       tasks=state.tasks_due <= self.clock.time())
        self._doing.last = history.fold(state, readings, self.thresholds)
        return self._doing.last

    def run_once(self, dry_run: bool = False) -> PassReport:
        """One pass under the state lock. A dry run decides everything and changes nothing."""
        with self.store.locked():
            state = self.store.load()
            self._doing = _Doing()
            snapshot = self._look(state)
            if not dry_run:
                self._reconcile(state, snapshot)
            findings = detect(snapshot)
            for finding in findings:
                self._open_incident(state, finding, dry_run)
            actions, latest, current = self._decide_all(state, snapshot, findings, dry_run)
            actions += self._doing.reports
            known = {f.key for f in findings}
            findings += [f for f in self._doing.found if f.key not in known]
            final = self._look(state) if self._stale else latest
            remaining = detect(final) if final is not latest else current
            storm = [self._doing.storm] if self._doing.storm else []
            findings += storm
            remaining += storm
            if not dry_run:
                if not final.probe_errors:  # nothing is resolved on what a probe could not see
                    self._close_incidents(state, remaining)
                actions += self._deliver(state, remaining)
                self.store.save(state)
        replied = final.celery.replied if final.celery else None
        return PassReport(findings=tuple(findings), actions=tuple(actions),
                          remaining=tuple(remaining), probe_errors=snapshot.probe_errors,
                          unwatched=snapshot.unwatched,
                          breakers=tuple(sorted(state.breakers, key=str)), dry_run=dry_run,
                          paused=tuple(sorted(k for k in state.pauses
                                              if active_pause(state, k, self.clock.time()))),
                          storm=state.storm is not None, outbox=len(state.outbox),
                          queues=dict(final.broker.queues) if final.broker else {},
                          nodes_up={} if replied is None else {
                              n.name: n.name in replied for n in final.nodes},
                          fleet=self._fleet_report(state))

    def _fleet_report(self, state: State) -> FleetReport | None:
        view = self._doing.view
        if self.fleet is None or (view is None and state.fleet_down is None):
            return None  # alone, or a dry run: the fleet was not asked
        config = self.fleet.config
        if state.fleet_down is not None or view is None:
            return FleetReport(name=config.name, reachable=False,
                               budget_per_hour=config.fallback_budget_per_hour)
        return FleetReport(name=config.name, reachable=True, hosts=view.hosts,
                           unhealthy=view.unhealthy, budget_per_hour=config.budget_per_hour)

    def diagnose(self) -> Diagnosis:
        """Probe and detect, act on nothing; the probes' history is kept for the next pass.

        While a pass holds the state lock, diagnose does not wait: it looks without saving.
        """
        with self.store.locked(wait=False) as held:
            state = self.store.load()
            snapshot = self._look(state)
            if held:
                self.store.save(state)
        findings = detect(snapshot)
        return Diagnosis(findings=tuple(findings), probe_errors=snapshot.probe_errors,
                         unwatched=snapshot.unwatched,
                         remedies={f.key: self._remedy(f) for f in findings})

    def _remedy(self, finding: Finding) -> str:
        if finding.hold:
            return f"none: {finding.hold}"
        rule = self.policy.rule_for(finding)
        if rule is None:
            return "none: no policy rule"
        if not rule.ladder:
            return f"watch, escalate after {rule.escalate_after:g}s (rule {rule.name})"
        targets = {self._target(s, finding) for s in rule.ladder if s.action != "escalate"}
        if len(targets) <= 1:
            steps = " > ".join(s.action for s in rule.ladder)
            return f"{steps} on {next(iter(targets), finding.unit)} (rule {rule.name})"
        return " > ".join(f"{s.action} {self._target(s, finding) or ''}".strip()
                          for s in rule.ladder) + f" (rule {rule.name})"

    def _target(self, step: Step, finding: Finding) -> str | None:
        if step.unit:
            return step.unit
        if step.action == "restart_broker":
            return self.broker_unit
        return finding.unit

    def _reconcile(self, state: State, snapshot: Snapshot) -> None:
        """Close the steps a stopped healer left open, with what systemd says of the unit now.

        Under the state lock, a step still in flight is one whose healer died mid-step.
        """
        for action_id, step in list(state.in_flight.items()):
            events = self.audit.events_of(action_id)
            if Event.ACTION_STARTED in events and \
                    not events & {Event.ACTION_FINISHED, Event.ACTION_INTERRUPTED}:
                seen = next((u for u in snapshot.units if u.name == step.unit), None)
                now = f"{seen.active_state} ({seen.sub_state})" if seen else "not seen"
                self.audit.record(
                    Event.ACTION_INTERRUPTED, step.incident, outcome=Outcome.INTERRUPTED,
                    scenario=step.scenario, unit=step.unit, action=step.action, rule=step.rule,
                    action_id=action_id, unit_state=now, dry_run=False,
                    detail=f"healer stopped during this step (killed?); {step.unit} is {now} now")
            del state.in_flight[action_id]

    # -- incidents ---------------------------------------------------------------------------

    def _open_incident(self, state: State, finding: Finding, dry_run: bool) -> None:
        """A new problem gets an incident id; a dry run's is only in memory, and has no id."""
        if finding.key in state.incidents:
            return
        incident = Incident(id="" if dry_run else self.new_id(), opened=self.clock.time(),
                            severity=finding.severity.value)
        state.incidents[finding.key] = incident
        if dry_run:
            return
        self.audit.record(
            Event.INCIDENT_OPENED, incident.id, scenario=finding.scenario.value, unit=finding.unit,
            severity=finding.severity.value, summary=finding.summary, evidence=finding.evidence,
        )

    def _close_incidents(self, state: State, remaining: list[Finding]) -> None:
        """Close what is no longer found; a unit dropped from [units] is unwatched, not healed.

        Every tier the incident was escalated to is told, in its own form.
        """
        still = {f.key for f in remaining}
        if self._doing.fleet_lost:  # the fleet's storm is not over for what could not be read
            still.add(FLEET_STORM)
        for key in [k for k in state.incidents if k not in still]:
            incident = state.incidents.pop(key)
            dropped = key.unit is not None and key.unit not in self.guard.allowed_units
            duration = round(self.clock.time() - incident.opened, 3)
            reason = "no longer in [units]: not watched" if dropped else \
                f"resolved after {duration:g}s"
            self.audit.record(
                Event.INCIDENT_DROPPED if dropped else Event.INCIDENT_RESOLVED, incident.id,
                scenario=key.scenario.value, unit=key.unit, duration_s=duration,
                **({"reason": reason} if dropped else {}),
            )
            state.outbox += [self.escalator.resolve(key, incident, reason, tier)
                             for tier in incident.tiers]

    # -- deciding ----------------------------------------------------------------------------

    def _decide_all(self, state: State, snapshot: Snapshot, findings: list[Finding],
                    dry_run: bool) -> tuple[list[ActionReport], Snapshot, list[Finding]]:
        """Broker first, then the rest afresh; while the broker is down or in a storm, wait.

        Returns the reports, and the latest look with what was found in it.
        """
        reports, snapshot, findings = self._broker(state, snapshot, findings, dry_run)
        rest = sorted((f for f in self._fresh(state, findings)
                       if f.scenario != Scenario.BROKER_UNREACHABLE),
                      key=lambda f: _ORDER.index(f.scenario.value))
        broker_down = any(f.scenario == Scenario.BROKER_UNREACHABLE and not f.hold
                          for f in findings)
        local = self.guard.storm(rest, acting=state.acting)
        fleet = None if dry_run else self._fleet_storm(state, rest)
        storm = local or fleet
        self._note_storm(state, storm, dry_run)
        trial = bool(fleet and not local and not broker_down and
                     any(not f.hold and f.key not in self._doing.taken for f in rest) and
                     self._ask(state, lambda f: f.room() and f.trial()))  # one host with a try
        self._doing.waiting = rest
        for finding in rest:
            if finding.key in self._doing.taken:  # decided while an earlier step verified
                continue
            self._doing.taken.add(finding.key)
            if trial and not finding.hold:  # the fleet's one trial: does it heal now?
                trial = False
                reports += self._try(state, finding)
            elif storm:
                reports.append(self._decide(state, finding, Outcome.STORM, f"storm guard: {storm}"
                               "; holding workers and beat", dry_run))
                if local and not broker_down and not dry_run:  # the fleet's is escalated once
                    self._notify(state, finding, f"storm guard: {storm}")
            elif broker_down:
                reports.append(self._decide(
                    state, finding, Outcome.BROKER_FIRST, "the broker is unreachable: acting on it "
                    "first; workers and beat wait for the next pass", dry_run))
            else:
                reports += self._remediate(state, finding, dry_run)
        return reports, snapshot, findings

    def _broker(self, state: State, snapshot: Snapshot, findings: list[Finding], dry_run: bool
                ) -> tuple[list[ActionReport], Snapshot, list[Finding]]:
        """Decide on the broker; when a step healed it, look again (the rest is judged afresh)."""
        reports: list[ActionReport] = []
        for finding in self._fresh(state, findings):
            if finding.scenario == Scenario.BROKER_UNREACHABLE:
                self._doing.taken.add(finding.key)
                reports += self._remediate(state, finding, dry_run)
        if any(r.outcome == Outcome.HEALED for r in reports):
            snapshot = self._look(state)
            findings = detect(snapshot)
            for finding in findings:
                self._open_incident(state, finding, dry_run)
        return reports, snapshot, findings

    def _fresh(self, state: State, findings: list[Finding]) -> list[Finding]:
        """The findings not yet decided in this pass, on no unit a step is verifying."""
        acting = state.acting
        return [f for f in findings if f.key not in self._doing.taken and f.unit not in acting]

    def _meanwhile(self, state: State) -> None:
        """While a step verifies, decide what waits behind it, and what changed since the look.

        A unit that changed is looked at again first. All is decided as the pass decides;
        while the broker's step verifies, nothing is.
        """
        acting = state.acting
        snapshot = self._doing.last
        if self.broker_unit in acting or snapshot is None:
            return
        seen = {u.name: _mark(u) for u in snapshot.units}
        if any(seen.get(u.name) != _mark(u) for u in self.prober.units() if u.name not in acting):
            snapshot = self._look(state)
            findings = detect(snapshot)
            fresh = self._fresh(state, findings)
            for finding in fresh:
                self._open_incident(state, finding, dry_run=False)
            self._doing.found += fresh
        elif not self._fresh(state, findings := self._doing.waiting):
            return
        self._doing.reports += self._decide_all(state, snapshot, findings, dry_run=False)[0]

    # -- the fleet ---------------------------------------------------------------------------

    def _ask(self, state: State, call: Callable[[Fleet], T]) -> T | None:
        """The fleet store's answer; None without a fleet or when the store cannot be reached.

        Losing the store and finding it again are each recorded once; in a pass that lost it,
        it is not asked again.
        """
        if self.fleet is None or self._doing.fleet_lost:
            return None
        try:
            answer = call(self.fleet)
        except FleetUnreachable as exc:
            self._doing.fleet_lost = True
            if state.fleet_down is None:
                state.fleet_down = self.clock.time()
                self.audit.record(Event.FLEET_STORE, None, outcome=Outcome.DOWN, reason=(
                    f"{exc}; acting on the local fallback budget of "
                    f"{self.fleet.config.fallback_budget_per_hour} actions per hour"))
            return None
        if state.fleet_down is not None:
            self.audit.record(Event.FLEET_STORE, None, outcome=Outcome.UP, reason=(
                f"rejoined fleet {self.fleet.config.name} after "
                f"{self.clock.time() - state.fleet_down:.0f}s"))
            state.fleet_down = None
        return answer

    def _heartbeat(self, state: State) -> View | None:
        """Publish this host's sick units and read the fleet's (None: the store is lost)."""
        spent = len(ratelimit.spent(state, self.clock.time()))
        view = self._ask(state, lambda f: f.exchange(self._doing.sick, spent))
        if view is not None:
            self._doing.view, self._doing.fresh = view, True
        return view

    def _holds(self, view: View | None) -> str | None:
        """Why the fleet's storm guard holds workers and beat, or None (standing down: not)."""
        if view is None or view.stood_down or self.fleet is None:
            return None
        return view.storm(self.fleet.config)

    def _fleet_storm(self, state: State, rest: list[Finding]) -> str | None:
        """Why the fleet's storm guard holds this pass, or None.

        The storm is escalated once, by the host that holds its lease, and stays open while it
        lasts, standing down or not.
        """
        if self.fleet is None:
            return None
        self._doing.sick = self.guard.sick(rest, state.acting)
        view = self._heartbeat(state)
        if view is None:  # lost: the storm's incident stays as it is
            return None
        storm = view.storm(self.fleet.config)
        if storm and self._ask(state, lambda f: f.lease()):
            self._doing.storm = finding = Finding(
                scenario=Scenario.FLEET_STORM, severity=Severity.CRITICAL, unit=None,
                summary=storm, evidence={"hosts": view.hosts, "unhealthy": view.unhealthy})
            self._open_incident(state, finding, dry_run=False)
            self._notify(state, finding, f"storm guard: {storm}; workers and beat are held on "
                                         "every host")
        elif not self._doing.fleet_lost:
            self._doing.storm = None
        return self._holds(view)

    def _try(self, state: State, finding: Finding) -> list[ActionReport]:
        """The fleet storm's trial step: when it heals, the storm guard stands down fleet-wide.

        A trial that could not act (a limit, the budget) is given back for another host.
        """
        self._doing.trial = finding.key
        tried = self._remediate(state, finding, dry_run=False)
        if any(r.outcome == Outcome.HEALED for r in tried):
            self._ask(state, lambda f: f.stand_down())
        elif not any(r.outcome in ACTED for r in tried):
            self._ask(state, lambda f: f.untry())
        return tried

    def _admit(self, state: State, finding: Finding, step: Step, unit: str | None,
               dry_run: bool) -> Ruling:
        """The guard's ruling on the step, then the fleet's (a dry run does not ask it)."""
        ruling = self.guard.admit(step, unit, state, self.clock.time())
        if ruling.allowed and not dry_run and unit is not None:
            return self._fleet_admit(state, finding, unit) or ruling
        return ruling

    def _fleet_hold(self, state: State, finding: Finding) -> Ruling | None:
        """The fleet's storm, asked again once a step has run (its verify window took time).

        Never for the broker, nor for the trial's one step.
        """
        trial, self._doing.trial = finding.key == self._doing.trial, None  # one step, once
        if self.fleet is None or trial or finding.scenario == Scenario.BROKER_UNREACHABLE:
            return None
        storm = self._holds(self._doing.view if self._doing.fresh else self._heartbeat(state))
        return Ruling(Outcome.STORM, f"storm guard: {storm}; holding workers and beat") \
            if storm else None

    def _fleet_admit(self, state: State, finding: Finding, unit: str) -> Ruling | None:
        """What the fleet says of one more step: held by its storm, its budget spent, or None.

        The broker's steps never ask. Without the store, the fallback budget rules.
        """
        if self.fleet is None or unit == self.broker_unit:
            return None
        config = self.fleet.config
        if held := self._fleet_hold(state, finding):
            return held
        took = self._ask(state, lambda f: f.take())
        if took is None:
            spent = len(ratelimit.spent(state, self.clock.time()))
            if spent < config.fallback_budget_per_hour:
                return None
            return Ruling(Outcome.BUDGET, f"the fleet's store is unreachable: {spent} actions in "
                          "the last hour reach the local fallback budget of "
                          f"{config.fallback_budget_per_hour}")
        if took:
            return None
        return Ruling(Outcome.BUDGET, f"the budget of fleet {config.name} "
                      f"({config.budget_per_hour} actions per hour) is spent")

    def _note_storm(self, state: State, storm: str | None, dry_run: bool) -> None:
        if dry_run or storm == state.storm:
            return
        state.storm = storm
        self.audit.record(Event.STORM_GUARD, None, outcome=Outcome.ON if storm else Outcome.OFF,
                           reason=storm)

    def _decide(self, state: State, finding: Finding, outcome: Outcome, detail: str,
                dry_run: bool, action: str | None = None, unit: str | None = None
                ) -> ActionReport:
        """Audit a decision not to act; repeated identical decisions are written once."""
        report = ActionReport.about(finding, unit or finding.unit, action, outcome, detail,
                                    dry_run)
        incident = state.incidents[finding.key]
        if dry_run or incident.last_decision != outcome:
            incident.last_decision = outcome
            self.audit.record(
                Event.DECISION, incident.id or None, scenario=finding.scenario.value,
                unit=report.unit, action=action, outcome=outcome, reason=detail, dry_run=dry_run,
            )
        return report

    def _remediate(self, state: State, finding: Finding, dry_run: bool) -> list[ActionReport]:
        if finding.hold:
            return [self._decide(state, finding, Outcome.HELD, finding.hold, dry_run)]
        rule = self.policy.rule_for(finding)
        if rule is None:
            return [self._decide(state, finding, Outcome.NO_POLICY,
                                 f"no policy rule matches {finding.key}", dry_run)]
        ruling = self.guard.breaker(state, finding.key, self.clock.time())
        if not ruling.allowed:
            return [self._decide(state, finding, ruling.outcome, ruling.reason, dry_run)]
        if ruling.close_breaker and not dry_run:  # a dry run only says what it would do
            self._close_breaker(state, finding, ruling.reason)
        self._escalate_if_overdue(state, finding, rule, dry_run)
        return self._climb(state, finding, rule, dry_run)

    def _escalate_if_overdue(self, state: State, finding: Finding, rule: Rule, dry_run: bool
                             ) -> None:
        overdue = rule.escalate_after is not None and \
            self.clock.time() - state.incidents[finding.key].opened >= rule.escalate_after
        if overdue and not dry_run:
            self._notify(state, finding, f"{finding.scenario.value} open for more than "
                                         f"{rule.escalate_after:g}s (rule {rule.name})")

    def _close_breaker(self, state: State, finding: Finding, reason: str) -> None:
        breaker = state.breakers.pop(finding.key)
        self.audit.record(Event.BREAKER_CLOSED, breaker.incident,
                           scenario=finding.scenario.value, unit=finding.unit, reason=reason)

    def _notify(self, state: State, finding: Finding, reason: str) -> bool:
        """Escalate the incident, once; False when it already was.

        Its first tier's notice goes to the outbox now; it is sent, and reported, at the end
        of the pass (``_deliver``).
        """
        incident = state.incidents[finding.key]
        if incident.escalated:
            return False
        incident.escalated, incident.escalated_at = True, self.clock.time()
        self._queue_tiers(state, finding, reason)
        return True

    def _deliver(self, state: State, remaining: list[Finding]) -> list[ActionReport]:
        """Queue the tiers now due of what is still open, then try every notice due.

        Done once the pass's steps are (a slow receiver delays none). A tier that failed once
        is not tried again in the same pass; a delivery is saved at once, so a kill does not
        send it twice.
        """
        for finding in remaining:
            if (open_ := state.incidents.get(finding.key)) and open_.escalated_at is not None:
                self._queue_tiers(state, finding, None)
        now = self.clock.time()  # what was queued just now is due
        reports, failed = [], set()
        for notice in list(state.outbox):
            tier = notice.alert["tier"]
            if notice.next_at > now or tier in failed:
                continue
            outcome, kept = self.escalator.deliver(notice)
            where = state.outbox.index(notice)
            state.outbox[where:where + 1] = [kept] if kept else []
            if outcome == Outcome.DELIVERED:
                self.store.save(state)
            elif kept is not None:  # its receiver failed: the others of its tier wait too
                failed.add(tier)
            key = key_of(notice)
            reports.append(ActionReport(
                finding=key, scenario=key.scenario, unit=key.unit, outcome=outcome,
                action="resolve" if notice.alert["status"] == RESOLVED else "escalate",
                detail=str(notice.alert["reason"]), tier=int(tier or 0)))
        return reports

    def _queue_tiers(self, state: State, finding: Finding, reason: str | None) -> None:
        """Queue the incident's tiers that are due and not yet notified (the first at least).

        A tier that re-sends (Alertmanager) is told again every ``RESEND`` seconds while the
        incident is open, unless its last notice still waits in the outbox.
        """
        incident = state.incidents[finding.key]
        assert incident.escalated_at is not None
        now = self.clock.time()
        waited = now - incident.escalated_at
        waiting = {n.key for n in state.outbox}
        for tier, after in enumerate(self.tiers or (0.0,)):
            if tier not in incident.tiers and waited >= after:
                incident.tiers.append(tier)
                why = reason if reason is not None else \
                    f"unresolved {waited:.0f}s after it was escalated (tier {tier + 1})"
            elif tier in self.resending and tier in incident.tiers and \
                    now - incident.sent.get(tier, 0.0) >= RESEND:
                why = f"still open {now - incident.opened:.0f}s after it was found"
            else:
                continue
            notice = self.escalator.trigger(finding.key, incident, finding.summary, why, tier)
            if notice.key not in waiting:
                incident.sent[tier] = now
                state.outbox.append(notice)

    def _climb(self, state: State, finding: Finding, rule: Rule, dry_run: bool
               ) -> list[ActionReport]:
        """Try the ladder; give up (escalate, open the breaker) when it runs out."""
        if not rule.ladder:
            return [self._decide(state, finding, Outcome.WATCHING, f"no automatic remedy (rule "
                                 f"{rule.name}); escalates after {rule.escalate_after:g}s",
                                 dry_run)]
        reports = []
        for step in rule.ladder:
            unit = self._target(step, finding)
            if step.action == "escalate":
                break
            ruling = self._admit(state, finding, step, unit, dry_run)
            if not ruling.allowed:
                reports.append(self._decide(state, finding, ruling.outcome, ruling.reason,
                                            dry_run, step.action, unit))
                if ruling.outcome == Outcome.RATE_LIMITED:  # this step is spent: try the next
                    continue
                return reports
            if dry_run:
                reports.append(self._decide(state, finding, Outcome.DRY_RUN, f"would {step.action} "
                                            f"{unit} (rule {rule.name})", dry_run,
                                            step.action, unit))
                return reports
            assert unit is not None  # the guard refuses a step without a unit
            report = self._act(state, finding, rule.name, step, unit)
            reports.append(report)
            if report.outcome == Outcome.HEALED:
                return reports
            if report.outcome in {Outcome.DENIED, Outcome.UNREACHABLE}:  # no step fares better
                if report.outcome == Outcome.DENIED:  # polkit said no: escalate and hold
                    reports += self._give_up(state, finding, report.detail, dry_run)
                return reports  # no bus: the next pass probes again
        return self._exhausted(state, finding, rule, reports, dry_run)

    def _exhausted(self, state: State, finding: Finding, rule: Rule,
                   reports: list[ActionReport], dry_run: bool) -> list[ActionReport]:
        """The ladder ran out: give up, unless the fleet is in a storm now (its page says it)."""
        if not dry_run and (held := self._fleet_hold(state, finding)):
            return [*reports, self._decide(state, finding, held.outcome, held.reason, dry_run)]
        tried = ", ".join(f"{r.action} {r.outcome}" for r in reports) or "nothing allowed"
        return reports + self._give_up(state, finding, f"ladder of rule {rule.name} exhausted "
                                       f"({tried})", dry_run)

    def _give_up(self, state: State, finding: Finding, reason: str, dry_run: bool
                 ) -> list[ActionReport]:
        """Escalate once and hold the problem (its breaker opens) until resume or cool-down."""
        if dry_run:
            return [self._decide(state, finding, Outcome.DRY_RUN, f"would escalate and hold "
                                 f"{finding.key}: {reason}", dry_run, "escalate")]
        incident = state.incidents[finding.key]
        queued = self._notify(state, finding, reason)
        state.breakers[finding.key] = Breaker(opened=self.clock.time(), incident=incident.id,
                                              reason=reason)
        self.audit.record(Event.BREAKER_OPENED, incident.id, scenario=finding.scenario.value,
                          unit=finding.unit, reason=reason)
        return [] if queued else [ActionReport.about(
            finding, finding.unit, "escalate", Outcome.ALREADY_ESCALATED, reason)]

    def _act(self, state: State, finding: Finding, rule: str, step: Step, unit: str
             ) -> ActionReport:
        """Record the attempt and the intent durably, act, then record the outcome.

        The step is kept in flight in the state until its end is recorded, so that a kill
        in between is found at the next pass (``_reconcile``).
        """
        incident = state.incidents[finding.key]
        incident.last_decision = None
        state.record_attempt(ratelimit.attempt(state, step.action, unit, step.limit,
                                               self.clock.time()))
        action_id = self.new_id()
        state.in_flight[action_id] = InFlight(incident=incident.id, scenario=finding.scenario,
                                              unit=unit, action=step.action, rule=rule,
                                              started=self.clock.time())
        self.store.save(state)
        fields = {"scenario": finding.scenario.value, "unit": unit, "action": step.action,
                  "rule": rule, "action_id": action_id, "dry_run": False}
        self.audit.record(Event.ACTION_STARTED, incident.id, outcome=Outcome.STARTED, **fields)
        try:
            done = self.executor.execute(step, unit, partial(self._meanwhile, state))
            outcome, detail = done.outcome, done.detail
            extra: dict[str, object] = {"evidence": done.evidence}
        except (ActionError, ProbeError) as exc:
            error = (exc.dbus_name if isinstance(exc, SystemdError)
                     else exc.result if isinstance(exc, JobFailed) else type(exc).__name__)
            outcome = (Outcome.DENIED if isinstance(exc, SystemdError) and exc.denied else
                       Outcome.UNREACHABLE if isinstance(exc, BusUnavailable) else
                       Outcome.FAILED)
            detail, extra = str(exc), {"error": error}
        except BaseException as exc:  # a bug or an interrupt: the intent still gets its end
            self.audit.record(Event.ACTION_FINISHED, incident.id, outcome=Outcome.FAILED,
                              detail=f"{type(exc).__name__}: {exc}",
                              error=type(exc).__name__, **fields)
            del state.in_flight[action_id]
            raise
        self._stale = self._stale or outcome in ACTED
        self._doing.fresh = False  # the fleet may have changed meanwhile too
        self.audit.record(Event.ACTION_FINISHED, incident.id, outcome=outcome, detail=detail,
                           **extra, **fields)
        del state.in_flight[action_id]
        return ActionReport.about(finding, unit, step.action, outcome, detail)
