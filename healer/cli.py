"""The command line; the only place that wires healer's parts together.

Exit codes (DESIGN.md): run-once 0 healthy, 1 still unhealthy, 2 usage or configuration error,
3 could not probe. diagnose follows Nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import uuid
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
from healer.probes.snapshot import Prober
from healer.state import StateStore

if TYPE_CHECKING:
    from collections.abc import Sequence

    from healer.model import Diagnosis, Finding, PassReport

EXIT_OK, EXIT_UNHEALTHY, EXIT_CONFIG, EXIT_PROBE = 0, 1, 2, 3


def new_id() -> str:
    """A short random incident id."""
    return uuid.uuid4().hex[:12]


def build_pipeline(config: Config, clock: Clock) -> Pipeline:
    """Wire the pipeline for a config: policies first (exit 2), then D-Bus (exit 3)."""
    from healer.systemd.dbus_backend import DBusSystemd  # noqa: PLC0415 - GLib loads on use

    policy = PolicyEngine(load_policies(config.paths.policies))
    broker = broker_probe(config.celery.broker_url, config.celery.broker_timeout, clock)
    systemd = DBusSystemd(config.systemd.bus, clock)
    allowed = frozenset(config.units.all())
    audit = AuditLog(config.paths.audit_log, clock)
    prober = Prober(systemd, broker, CeleryProbe(config.celery.broker_url,
                                                 config.celery.ping_timeout), config, clock)
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
    else:
        left = ", ".join(f"{f.scenario.value} {f.unit}" for f in report.remaining)
        print(f"still unhealthy: {left}")


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
    diagnosis = build_pipeline(config, SystemClock()).diagnose()
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
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + row[4])
    for probe, error in diagnosis.probe_errors.items():
        print(f"UNKNOWN {probe}: {error}")
    return code


def cmd_run_once(config: Config, args: argparse.Namespace) -> int:
    """One pass; exit 0 when healthy at the end, 1 when not."""
    report = build_pipeline(config, SystemClock()).run_once(dry_run=args.dry_run)
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
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: every failure is one line on stderr and a documented exit code."""
    args = parser().parse_args(argv)
    path = args.config or Path(os.environ.get("HEALER_CONFIG", DEFAULT_CONFIG))
    args.config_path = path
    try:
        config = None if getattr(args, "no_config", False) else load_config(path)
        code: int = args.handler(config, args)
    except ConfigError as exc:
        print(f"healer: {exc}", file=sys.stderr)
        return EXIT_PROBE if args.command == "diagnose" else EXIT_CONFIG
    except ProbeError as exc:
        print(f"healer: cannot probe: {exc}", file=sys.stderr)
        return EXIT_PROBE
    except HealerError as exc:
        print(f"healer: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("HEALER_DEBUG"):
            raise
        print(f"healer: internal error: {type(exc).__name__}: {exc} "
              "(HEALER_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_PROBE
    return code


if __name__ == "__main__":
    sys.exit(main())
