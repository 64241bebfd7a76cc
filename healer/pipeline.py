"""One remediation pass: probe, detect, decide, guard, act, verify, audit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.detectors import detect
from healer.errors import ActionError, JobFailed, ProbeError, SystemdError
from healer.guard import ratelimit
from healer.model import ActionReport, Diagnosis, Finding, PassReport
from healer.state import Incident, State

if TYPE_CHECKING:
    from collections.abc import Callable

    from healer.audit.log import AuditLog
    from healer.clock import Clock
    from healer.executor.executor import Executor
    from healer.guard.guard import Guard
    from healer.policy.engine import PolicyEngine
    from healer.policy.models import Step
    from healer.probes.snapshot import Prober
    from healer.state import StateStore


class Pipeline:
    """Everything one pass needs, passed in; ``run_once`` is the pass."""

    def __init__(
        self,
        prober: Prober,
        policy: PolicyEngine,
        guard: Guard,
        executor: Executor,
        audit: AuditLog,
        store: StateStore,
        clock: Clock,
        new_id: Callable[[], str],
    ) -> None:
        self._prober = prober
        self._policy = policy
        self._guard = guard
        self._executor = executor
        self._audit = audit
        self._store = store
        self._clock = clock
        self._new_id = new_id

    def run_once(self, dry_run: bool = False) -> PassReport:
        """One pass under the state lock. A dry run decides everything and changes nothing."""
        with self._store.locked():
            state = self._store.load()
            snapshot = self._prober.snapshot(state)
            findings = detect(snapshot)
            for finding in findings:
                self._open_incident(state, finding, dry_run)
            actions = [a for f in findings for a in self._remediate(state, f, dry_run)]
            acted = any(a.outcome not in _NOT_ACTED for a in actions)
            remaining = detect(self._prober.snapshot(state)) if acted else findings
            if not dry_run:
                self._close_incidents(state, remaining)
                self._store.save(state)
        return PassReport(findings=tuple(findings), actions=tuple(actions),
                          remaining=tuple(remaining), probe_errors=snapshot.probe_errors,
                          dry_run=dry_run)

    def diagnose(self) -> Diagnosis:
        """Probe and detect, act on nothing; the probes' history is kept for the next pass."""
        with self._store.locked():
            state = self._store.load()
            snapshot = self._prober.snapshot(state)
            self._store.save(state)
        findings = detect(snapshot)
        return Diagnosis(findings=tuple(findings), probe_errors=snapshot.probe_errors,
                         remedies={f.key: self._remedy(f) for f in findings})

    def _remedy(self, finding: Finding) -> str:
        if finding.hold:
            return f"none: {finding.hold}"
        rule = self._policy.rule_for(finding)
        if rule is None:
            return "none: no policy rule"
        steps = " then ".join(f"{s.action} {s.unit or finding.unit}" for s in rule.ladder)
        return f"{steps} (rule {rule.name})"

    def _open_incident(self, state: State, finding: Finding, dry_run: bool) -> None:
        """A new problem gets an incident id; a dry run keeps it in memory, unrecorded."""
        if finding.key in state.incidents:
            return
        incident = Incident(id=self._new_id(), opened=self._clock.time())
        state.incidents[finding.key] = incident
        if dry_run:
            return
        self._audit.record(
            "incident_opened", incident.id, scenario=finding.scenario.value, unit=finding.unit,
            severity=finding.severity.value, summary=finding.summary, evidence=finding.evidence,
        )

    def _close_incidents(self, state: State, remaining: list[Finding]) -> None:
        still = {f.key for f in remaining}
        for key in [k for k in state.incidents if k not in still]:
            incident = state.incidents.pop(key)
            scenario, unit = key.split(":", 1)
            self._audit.record(
                "incident_resolved", incident.id, scenario=scenario,
                unit=None if unit == "-" else unit,
                duration_s=round(self._clock.time() - incident.opened, 3),
            )

    def _decide(self, state: State, finding: Finding, report: ActionReport) -> ActionReport:
        """Audit a decision not to act; repeated identical decisions are written once."""
        incident = state.incidents[finding.key]
        if report.dry_run or incident.last_decision != report.outcome:
            incident.last_decision = report.outcome
            self._audit.record(
                "decision", incident.id, scenario=finding.scenario.value, unit=report.unit,
                action=report.action, outcome=report.outcome, reason=report.detail,
                dry_run=report.dry_run,
            )
        return report

    def _remediate(self, state: State, finding: Finding, dry_run: bool) -> list[ActionReport]:
        def decision(outcome: str, detail: str, action: str | None = None,
                     unit: str | None = finding.unit) -> ActionReport:
            return self._decide(state, finding, ActionReport.about(
                finding, unit, action, outcome, detail, dry_run))

        if finding.hold:
            return [decision("held", finding.hold)]
        rule = self._policy.rule_for(finding)
        if rule is None:
            return [decision("no_policy", f"no policy rule matches {finding.key}")]
        reports = []
        for step in rule.ladder:
            unit = step.unit or finding.unit
            verdict = self._guard.admit(step, unit, state, self._clock.time())
            if not verdict.allowed:
                reports.append(decision(verdict.outcome, verdict.reason, step.action, unit))
                break
            if dry_run:
                reports.append(decision("dry_run", f"would {step.action} {unit} "
                                        f"(rule {rule.name})", step.action, unit))
                break
            assert unit is not None  # the guard refuses a step without a unit
            report = self._act(state, finding, rule.name, step, unit)
            reports.append(report)
            if report.outcome == "healed":
                break
        return reports

    def _act(self, state: State, finding: Finding, rule: str, step: Step, unit: str
             ) -> ActionReport:
        """Record the attempt and the intent durably, act, then record the outcome."""
        incident = state.incidents[finding.key]
        incident.last_decision = None
        ratelimit.record(state, step.action, unit, step.limit, self._clock.time())
        self._store.save(state)
        fields = {"scenario": finding.scenario.value, "unit": unit, "action": step.action,
                  "rule": rule, "dry_run": False}
        self._audit.record("action_started", incident.id, outcome="started", **fields)
        try:
            done = self._executor.execute(step, unit)
            outcome, detail = done.outcome, done.detail
            extra: dict[str, object] = {"evidence": done.evidence}
        except (ActionError, ProbeError) as exc:
            error = (exc.dbus_name if isinstance(exc, SystemdError)
                     else exc.result if isinstance(exc, JobFailed) else type(exc).__name__)
            outcome, detail, extra = "failed", str(exc), {"error": error}
        self._audit.record("action_finished", incident.id, outcome=outcome, detail=detail,
                           **extra, **fields)
        return ActionReport.about(finding, unit, step.action, outcome, detail)


_NOT_ACTED = frozenset({"held", "no_policy", "refused", "rate_limited", "dry_run"})
