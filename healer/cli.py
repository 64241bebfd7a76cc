"""The command line; the only place that wires healer's parts together.

Exit codes: run-once 0 healthy, 1 still unhealthy, 2 usage or configuration error, 3 could not
do its job (no D-Bus, state or audit log unusable). diagnose follows Nagios: 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from healer.audit.log import AuditLog
from healer.clock import Clock, SystemClock
from healer.config import DEFAULT_CONFIG, Config, load_config
from healer.errors import ConfigError, HealerError, ProbeError
from healer.executor.executor import Executor
from healer.guard.controls import Controls
from healer.guard.guard import Guard
from healer.model import Severity
from healer.notify.escalator import Escalator
from healer.notify.webhook import Webhook
from healer.pipeline import Pipeline
from healer.policy.engine import PolicyEngine
from healer.policy.loader import load_policies
from healer.policy.models import PolicyFile, parse_duration
from healer.probes.broker import broker_probe
from healer.probes.celery import CeleryProbe
from healer.probes.events import TaskEvents
from healer.probes.snapshot import Prober
from healer.state import StateStore

if TYPE_CHECKING:
    from collections.abc import Sequence

    from healer.audit import review
    from healer.model import Diagnosis, Finding, PassReport

EXIT_OK, EXIT_UNHEALTHY, EXIT_CONFIG, EXIT_PROBE = 0, 1, 2, 3


def new_id() -> str:
    """A short random incident id."""
    return uuid.uuid4().hex[:12]


def build_pipeline(config: Config, clock: Clock, source: Path,
                   events: TaskEvents | None = None) -> Pipeline:
    """Wire the pipeline for a config: policies first (exit 2), then D-Bus (exit 3)."""
    from healer.systemd.dbus_backend import DBusSystemd  # GLib loads on use

    try:
        policy = PolicyEngine(load_policies(config.paths.policies))
    except ConfigError as exc:
        raise ConfigError(f"{exc} (paths.policies in {source})") from exc
    try:
        broker = broker_probe(config.celery.broker_url, config.celery.broker_timeout, clock)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    systemd = DBusSystemd(config.systemd.bus, clock)
    allowed = frozenset(config.units.all())
    audit = AuditLog(config.paths.audit_log, clock)
    prober = Prober(systemd, broker, CeleryProbe(config.celery.broker_url,
                                                 config.celery.ping_timeout), config, clock,
                    events)
    hook = config.escalation
    webhook = Webhook(hook.webhook, hook.format, hook.routing_key, hook.timeout, hook.attempts,
                      clock.sleep) if hook.webhook else None
    return Pipeline(
        prober=prober,
        policy=policy,
        guard=Guard(allowed, config.guard),
        executor=Executor(systemd, allowed, clock, checks=prober,
                          schedule_file=config.beat.schedule_file,
                          workers=tuple(config.units.workers)),
        escalator=Escalator(webhook, audit, clock, socket.gethostname()),
        audit=audit,
        store=StateStore(config.paths.state_dir),
        clock=clock,
        new_id=new_id,
        broker_unit=config.units.broker,
    )


def controls(config: Config) -> Controls:
    """Pause and resume need only the state store and the audit log."""
    clock = SystemClock()
    return Controls(StateStore(config.paths.state_dir), AuditLog(config.paths.audit_log, clock),
                    clock)


def cmd_pause(config: Config, args: argparse.Namespace) -> int:
    """Stop acting until resumed or for a while; healer still diagnoses and records."""
    if args.unit is not None and args.unit not in config.units.all():
        raise ConfigError(f"--unit {args.unit}: not in [units] of {args.config_path}")
    try:
        duration = float(str(parse_duration(args.duration))) if args.duration else None
    except ValueError as exc:
        raise ConfigError(f"--for: {exc}") from exc
    if duration is not None and duration <= 0:
        raise ConfigError(f"--for {args.duration}: a pause needs a duration above zero")
    print(controls(config).pause(args.unit, duration, args.reason))
    return EXIT_OK


def cmd_resume(config: Config, args: argparse.Namespace) -> int:
    """Lift pauses and close breakers."""
    print(controls(config).resume(args.unit))
    return EXIT_OK


def cmd_policy_check(_config: None, args: argparse.Namespace) -> int:
    """Validate policy files (PATH, else the config's); errors name file, line and field."""
    path = args.path or load_config(args.config_path).paths.policies
    rules = load_policies(path)
    print(f"{path}: {len(rules)} rule(s) OK")
    return EXIT_OK


def cmd_policy_schema(_config: Config | None, _args: argparse.Namespace) -> int:
    """Print the JSON schema of policy files."""
    print(json.dumps(PolicyFile.model_json_schema(), indent=2, sort_keys=True))
    return EXIT_OK


def _print_report(report: PassReport) -> None:
    for probe, error in report.probe_errors.items():
        print(f"unknown: the {probe} probe failed: {error}")
    if not report.findings:
        print("nothing found" if report.probe_errors else "healthy: nothing found")
        return
    for finding in report.findings:
        print(f"{finding.scenario.value} {finding.severity.value} {finding.unit}: "
              f"{finding.summary}")
        for action in (a for a in report.actions if a.finding == finding.key):
            what = f"{action.action} {action.unit}" if action.action else "no action"
            print(f"  -> {what}: {action.outcome}: {action.detail}")
    if report.healthy:
        print("healthy at the end of the pass")
    elif report.remaining:
        left = ", ".join(f"{f.scenario.value} {f.unit}" for f in report.remaining)
        print(f"still unhealthy: {left}")
    else:
        print(f"not known to be healthy: the {', '.join(report.probe_errors)} probe(s) failed")


NAGIOS = ("OK", "WARNING", "CRITICAL", "UNKNOWN")


def nagios_code(diagnosis: Diagnosis) -> int:
    """Critical or high findings: 2; a probe that could not look: 3; medium or low: 1; else 0."""
    severities = {f.severity for f in diagnosis.findings}
    if severities & {Severity.CRITICAL, Severity.HIGH}:
        return 2
    if diagnosis.probe_errors:
        return 3
    return 1 if severities else 0


def _evidence(finding: Finding) -> str:
    return ", ".join(f"{k}={v}" for k, v in finding.evidence.items() if v is not None)


def cmd_diagnose(config: Config, args: argparse.Namespace) -> int:
    """Probe and detect, act on nothing; Nagios exit codes."""
    diagnosis = build_pipeline(config, SystemClock(), args.config_path).diagnose()
    code = nagios_code(diagnosis)
    if args.json:
        print(json.dumps({
            "status": NAGIOS[code],
            "findings": [{**f.model_dump(mode="json"), "remedy": diagnosis.remedies[f.key]}
                         for f in diagnosis.findings],
            "unknown": diagnosis.probe_errors,
        }))
        return code
    print(f"healer diagnose: {NAGIOS[code]}")
    rows = [("SCENARIO", "SEVERITY", "UNIT", "REMEDY", "EVIDENCE")] + [
        (f.scenario.value, f.severity.value, f.unit or "-", diagnosis.remedies[f.key],
         f"{f.summary} [{_evidence(f)}]") for f in diagnosis.findings]
    if diagnosis.findings:
        _table(rows)
    for probe, error in diagnosis.probe_errors.items():
        print(f"UNKNOWN {probe}: {error}")
    return code


def _audit_filters(args: argparse.Namespace) -> review.Filters:
    from healer.audit import review

    now = datetime.now(timezone.utc)
    return review.Filters(
        since=review.moment(args.since, now) if args.since else None,
        until=review.moment(args.until, now, end=True) if args.until else None,
        unit=args.unit, scenario=args.scenario, outcome=args.outcome,
    )


def _audit_path(args: argparse.Namespace) -> Path:
    if args.log is not None:
        return Path(args.log)
    return load_config(args.config_path).paths.audit_log


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def cmd_audit_verify(_config: None, args: argparse.Namespace) -> int:
    """Check the hash chain; exit 1 naming the first bad record."""
    from healer.audit import review

    verdict = review.verify(_audit_path(args))
    if args.json:
        print(json.dumps(verdict.__dict__))
    elif verdict.ok:
        torn = f"; torn tail of {verdict.torn} bytes, set aside at the next write"
        print(f"OK: {verdict.records} records chained ({verdict.first_ts} .. {verdict.last_ts})"
              + (torn if verdict.torn else ""))
    else:
        print(f"BROKEN after {verdict.records} good records: {verdict.bad}")
    return EXIT_OK if verdict.ok else EXIT_UNHEALTHY


def _incidents(args: argparse.Namespace, path: Path | None = None) -> list[review.Incident]:
    from healer.audit import review

    filters = _audit_filters(args)
    return review.incidents(review.select(path or _audit_path(args), filters), filters.outcome)


def cmd_audit_show(_config: None, args: argparse.Namespace) -> int:
    """One incident's full timeline with evidence."""
    path = _audit_path(args)
    found = [i for i in _incidents(args, path) if i.id == args.incident]
    if not found:
        raise ConfigError(f"no incident {args.incident!r} in {path}")
    records = found[0].records
    if args.json:
        print(json.dumps(records))
        return EXIT_OK
    for r in records:
        extra = r.get("detail") or r.get("reason") or r.get("summary") or ""
        print(f"{r['ts']}  {r['event']:<17} {r.get('outcome') or '':<12} "
              f"{r.get('action') or '':<19} {r.get('unit') or '':<28} {extra}")
        if r.get("evidence"):
            print(f"{'':26}evidence: {json.dumps(r['evidence'])}")
    return EXIT_OK


def cmd_audit_stats(_config: None, args: argparse.Namespace) -> int:
    """Actions and mean time to heal per scenario and unit."""
    from healer.audit import review

    rows = review.stats(_incidents(args))
    if args.json:
        print(json.dumps(rows))
    elif rows:
        _table([["SCENARIO", "UNIT", "INCIDENTS", "ACTIONS", "HEALED", "MEAN TIME TO HEAL"]]
               + [[str(r["scenario"]), r["unit"], str(r["incidents"]), str(r["actions"]),
                   str(r["healed"]), "-" if r["mean_time_to_heal_s"] is None
                   else f"{r['mean_time_to_heal_s']:.1f}s"] for r in rows])
    return EXIT_OK


def cmd_audit_list(_config: None, args: argparse.Namespace) -> int:
    """Incidents: first seen, scenario, units, steps taken, outcome, time to heal."""
    found = _incidents(args)
    if args.json:
        print(json.dumps([i.summary() for i in found]))
    elif found:
        _table([["INCIDENT", "FIRST SEEN", "SCENARIO", "UNITS", "STEPS", "OUTCOME", "HEALED IN"]]
               + [[i.id, i.first_seen, i.scenario or "-", ",".join(sorted(i.units)) or "-",
                   " ".join(i.steps) or "-", i.outcome,
                   "-" if i.time_to_heal is None else f"{i.time_to_heal:.1f}s"] for i in found])
    return EXIT_OK


def cmd_deploy_polkit(config: Config, args: argparse.Namespace) -> int:
    """Print the polkit rule for the configured units and the verbs the policies use."""
    from healer.deploy import polkit
    from healer.systemd.dbus_backend import DBusSystemd

    rules = load_policies(config.paths.policies)
    try:
        ids = polkit.unit_ids(DBusSystemd(config.systemd.bus, SystemClock()), config.units.all())
    except ProbeError as exc:
        ids = {}
        print(f"healer: [units] not checked against systemd ({exc}): polkit sees a unit's own "
              "name, so an alias there would not be covered", file=sys.stderr)
    print(polkit.rule(config, rules, args.user, str(args.config_path), ids), end="")
    return EXIT_OK


def cmd_run(_config: None, args: argparse.Namespace) -> int:
    """The unattended agent (see healer.agent): passes in a loop until SIGTERM."""
    import prometheus_client
    import structlog

    from healer.agent import Agent
    from healer.metrics import Metrics
    from healer.systemd.notify import SdNotify, watchdog_interval

    clock, metrics = SystemClock(), Metrics()
    log = structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.JSONRenderer()],
    )
    current: list[Config] = []
    listeners: list[TaskEvents] = []

    def load() -> tuple[Pipeline, float, float]:
        config = load_config(args.config_path)
        fresh = [TaskEvents(config.celery.broker_url, clock)] if config.celery.task_events \
            else []
        pipeline = build_pipeline(config, clock, args.config_path, *fresh)  # may raise: the
        for old in listeners:                                                # old ones go on
            old.stop()
        listeners[:] = fresh
        for listener in fresh:
            listener.start()
        current[:] = [config]
        return pipeline, config.agent.interval, config.agent.jitter

    def after_pass() -> None:
        textfile = current[0].agent.metrics_textfile
        if textfile is not None:
            metrics.write(textfile)

    pending = [load()]  # a bad config at start is an error (exit 2); later, the old one stays
    listen = current[0].agent.metrics_listen
    if listen:
        host, _, port = listen.rpartition(":")
        prometheus_client.start_http_server(int(port), host, registry=metrics.registry)

    def loaded() -> tuple[Pipeline, float, float]:
        return pending.pop() if pending else load()

    return Agent(loaded, clock, SdNotify(), metrics, log, watchdog_interval(), after_pass).run()


def cmd_run_once(config: Config, args: argparse.Namespace) -> int:
    """One pass; exit 0 when healthy at the end, 1 when not."""
    report = build_pipeline(config, SystemClock(), args.config_path).run_once(dry_run=args.dry_run)
    if args.json:
        print(json.dumps({**report.model_dump(mode="json"), "healthy": report.healthy}))
    else:
        _print_report(report)
    return EXIT_OK if report.healthy else EXIT_UNHEALTHY


def parser() -> argparse.ArgumentParser:
    """The argument parser (argparse exits 2 on usage errors, as the contract wants)."""
    top = argparse.ArgumentParser(prog="healer", description=__doc__.splitlines()[0])
    top.add_argument("--config", type=Path, help="config file (default $HEALER_CONFIG or "
                     f"{DEFAULT_CONFIG})")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_once = commands.add_parser("run-once", help="one pass: diagnose, remediate, verify")
    run_once.add_argument("--dry-run", action="store_true",
                          help="decide and record, change nothing")
    run_once.add_argument("--json", action="store_true", help="print the pass report as JSON")
    run_once.set_defaults(handler=cmd_run_once)
    deploy = commands.add_parser("deploy", help="deployment helpers").add_subparsers(
        dest="deploy_command", required=True, metavar="COMMAND")
    polkit_rule = deploy.add_parser("polkit", help="print the polkit rule for [units] and "
                                    "the policies")
    polkit_rule.add_argument("--user", default="healer", help="the user healer runs as")
    polkit_rule.set_defaults(handler=cmd_deploy_polkit)
    run = commands.add_parser("run", help="the unattended agent: a pass every [agent] interval")
    run.set_defaults(handler=cmd_run, no_config=True)
    diagnose = commands.add_parser("diagnose", help="probe and detect, act on nothing "
                                   "(exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)")
    diagnose.add_argument("--json", action="store_true", help="print the findings as JSON")
    diagnose.set_defaults(handler=cmd_diagnose)
    pause = commands.add_parser("pause", help="stop acting (still diagnose and record)")
    pause.add_argument("--for", dest="duration", metavar="DURATION", help="e.g. 30m, 2h")
    pause.add_argument("--unit", help="pause only this unit")
    pause.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    pause.set_defaults(handler=cmd_pause)
    resume = commands.add_parser("resume", help="lift pauses and close open breakers")
    resume.add_argument("--unit", help="only this unit")
    resume.set_defaults(handler=cmd_resume)
    policy = commands.add_parser("policy", help="policy files").add_subparsers(
        dest="policy_command", required=True, metavar="COMMAND")
    check = policy.add_parser("check", help="validate policy files (default: the config's)")
    check.add_argument("path", nargs="?", type=Path)
    check.set_defaults(handler=cmd_policy_check, no_config=True)
    schema = policy.add_parser("schema", help="print the JSON schema of policy files")
    schema.set_defaults(handler=cmd_policy_schema, no_config=True)
    audit = commands.add_parser("audit", help="review the audit log").add_subparsers(
        dest="audit_command", required=True, metavar="COMMAND")
    for name, handler in (("list", cmd_audit_list), ("show", cmd_audit_show),
                          ("stats", cmd_audit_stats), ("verify", cmd_audit_verify)):
        sub = audit.add_parser(name, help=(handler.__doc__ or "").rstrip("."))
        if name == "show":
            sub.add_argument("incident")
        if name != "verify":
            sub.add_argument("--since", help="a date/time or a duration ago (2h)")
            sub.add_argument("--until", help="a date/time or a duration ago")
            sub.add_argument("--unit")
            sub.add_argument("--scenario")
            sub.add_argument("--outcome", help="healed, resolved, dropped, held, escalated, open")
        sub.add_argument("--log", help="read this audit log instead of the config's")
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(handler=handler, no_config=True)
    return top


def _fail(args: argparse.Namespace | None, message: str, code: int) -> int:
    """One line on stderr; diagnose also prints its Nagios status line and exits UNKNOWN."""
    print(f"healer: {message}", file=sys.stderr)
    if args is not None and args.command == "diagnose":
        print(f"healer diagnose: UNKNOWN: {message}")
        return EXIT_PROBE
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: every failure is one line on stderr and a documented exit code.

    Only a pass's report exits 1 (unhealthy); configuration errors exit 2; anything that stops
    healer from doing its job (no D-Bus, its state or audit log unusable) exits 3.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors are 2, UNKNOWN (3) for diagnose
        return EXIT_PROBE if exc.code == EXIT_CONFIG and "diagnose" in argv else int(
            exc.code or 0)
    args.config_path = args.config or Path(os.environ.get("HEALER_CONFIG", DEFAULT_CONFIG))
    try:
        config = None if getattr(args, "no_config", False) else load_config(args.config_path)
        code: int = args.handler(config, args)
    except HealerError as exc:
        prefix = "cannot probe: " if isinstance(exc, ProbeError) else ""
        return _fail(args, f"{prefix}{exc}",
                     EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_PROBE)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("HEALER_DEBUG"):
            raise
        return _fail(args, f"internal error: {type(exc).__name__}: {exc} "
                           "(HEALER_DEBUG=1 shows the traceback)", EXIT_PROBE)
    return code


if __name__ == "__main__":
    sys.exit(main())
