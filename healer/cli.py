"""healer: self-healing remediation for Celery deployments run by systemd.

The command line parses arguments, loads the config once, calls, and maps errors to exit codes.
Every command: 0 done (or healthy, OK); 1 the check failed (run-once still unhealthy, audit
verify BROKEN); 2 usage, configuration or input error; 3 could not do its job (no D-Bus, its
state or audit log unwritable). diagnose follows Nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from healer import codec, compose
from healer.clock import SystemClock
from healer.config import DEFAULT_CONFIG, Config, load_config
from healer.errors import ConfigError, HealerError, ProbeError
from healer.policy.loader import load_policies
from healer.policy.models import PolicyFile, parse_duration
from healer.redact import Redactor
from healer.vocabulary import IncidentOutcome, Severity

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from healer.audit import review
    from healer.model import Diagnosis, Finding, PassReport
    from healer.pipeline import Pipeline

EXIT_OK, EXIT_UNHEALTHY, EXIT_CONFIG, EXIT_PROBE = 0, 1, 2, 3
MAX_PAUSE = 365 * 86400.0
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")  # what useradd accepts by default (fullmatch)


def _show(args: argparse.Namespace, *said: object, file: TextIO | None = None) -> None:
    """Print each text as a line and anything else as a line of JSON, redacted.

    Every command prints through here (main gives ``args.redactor``), so none shows a secret.
    """
    redactor: Redactor = args.redactor
    for item in said:
        print(redactor.text(item) if isinstance(item, str)
              else json.dumps(redactor.value(item)), file=file)


def _pipeline(config: Config, args: argparse.Namespace) -> Pipeline:
    """The pass over the real world: policies first (exit 2), then D-Bus (exit 3)."""
    rules = compose.rules(config, args.config_path)
    return compose.pipeline(config, compose.real_world(config, SystemClock()),
                            rules)


def cmd_pause(config: Config, args: argparse.Namespace) -> int:
    """Stop acting until resumed or for a while; healer still diagnoses and records."""
    if args.unit is not None and args.unit not in config.units.all():
        raise ConfigError(f"--unit {args.unit}: not in [units] of {args.config_path}")
    try:
        duration = parse_duration(args.duration) if args.duration else None
    except ValueError as exc:
        raise ConfigError(f"--for: {exc}") from exc
    if duration is not None and not 0 < duration <= MAX_PAUSE:
        raise ConfigError(f"--for {args.duration}: a pause lasts above zero and at most "
                          "365 days (without --for: until resumed)")
    _show(args, compose.controls(config, SystemClock()).pause(args.unit, duration, args.reason))
    return EXIT_OK


def cmd_resume(config: Config, args: argparse.Namespace) -> int:
    """Lift pauses and close breakers."""
    _show(args, compose.controls(config, SystemClock()).resume(args.unit))
    return EXIT_OK


def cmd_policy_check(config: Config | None, args: argparse.Namespace) -> int:
    """Validate policy files (PATH, else the config's); errors name file, line and field."""
    if args.path:
        path, rules = args.path, load_policies(args.path)
    else:
        path, rules = _loaded(config).paths.policies, compose.rules(_loaded(config),
                                                                    args.config_path)
    _show(args, f"{path}: {len(rules)} rule(s) OK")
    return EXIT_OK


def cmd_policy_schema(_config: Config | None, args: argparse.Namespace) -> int:
    """Print the JSON schema of policy files."""
    _show(args, json.dumps(codec.schema(PolicyFile), indent=2, sort_keys=True))
    return EXIT_OK


def not_watching(unwatched: dict[str, str]) -> str:
    """What goes after a verdict while scenarios are unwatched, so it is never a bare OK."""
    return f" (not watching: {', '.join(unwatched)})" if unwatched else ""


def _report_lines(report: PassReport) -> Iterator[str]:
    for probe, error in report.probe_errors.items():
        yield f"unknown: the {probe} probe failed: {error}"
    yield from _pass_lines(report)
    for scenario, why in report.unwatched.items():
        yield f"not watched: {scenario}: {why}"


def _pass_lines(report: PassReport) -> Iterator[str]:
    if not report.findings:
        yield ("nothing found" if report.probe_errors else "healthy: nothing found") + \
            not_watching(report.unwatched)
        return
    for finding in report.findings:
        yield (f"{finding.scenario.value} {finding.severity.value} {finding.unit}: "
               f"{finding.summary}")
        for action in (a for a in report.actions if a.finding == finding.key):
            what = f"{action.action} {action.unit}" if action.action else "no action"
            yield f"  -> {what}: {action.outcome}: {action.detail}"
    if report.healthy:
        yield "healthy at the end of the pass" + not_watching(report.unwatched)
    elif report.remaining:
        left = ", ".join(f"{f.scenario.value} {f.unit}" for f in report.remaining)
        yield f"still unhealthy: {left}"
    else:
        yield f"not known to be healthy: the {', '.join(report.probe_errors)} probe(s) failed"


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
    diagnosis = _pipeline(config, args).diagnose()
    code = nagios_code(diagnosis)
    if args.json:
        _show(args, {
            "status": NAGIOS[code],
            "findings": [{**codec.dump(f), "remedy": diagnosis.remedies[f.key]}
                         for f in diagnosis.findings],
            "unknown": diagnosis.probe_errors,
            "unwatched": diagnosis.unwatched,
        })
        return code
    _show(args, f"healer diagnose: {NAGIOS[code]}{not_watching(diagnosis.unwatched)}")
    rows = [("SCENARIO", "SEVERITY", "UNIT", "REMEDY", "EVIDENCE")] + [
        (f.scenario.value, f.severity.value, f.unit or "-", diagnosis.remedies[f.key],
         f"{f.summary} [{_evidence(f)}]") for f in diagnosis.findings]
    if diagnosis.findings:
        _table(args, rows)
    _show(args, *(f"UNKNOWN {probe}: {error}" for probe, error in diagnosis.probe_errors.items()))
    _show(args, *(f"NOT WATCHED {scenario}: {why}"
                  for scenario, why in diagnosis.unwatched.items()))
    return code


def _audit_filters(args: argparse.Namespace) -> review.Filters:
    from healer.audit import review

    now = datetime.now(timezone.utc)

    def moment(option: str, text: str | None, end: bool = False) -> str | None:
        try:
            return review.moment(text, now, end) if text else None
        except ConfigError as exc:
            raise ConfigError(f"{option} {exc}") from exc

    return review.Filters(
        since=moment("--since", args.since), until=moment("--until", args.until, end=True),
        unit=args.unit, scenario=args.scenario, outcome=args.outcome,
    )


def _audit_path(config: Config | None, args: argparse.Namespace) -> Path:
    return Path(args.log) if args.log is not None else _loaded(config).paths.audit_log


def _table(args: argparse.Namespace, rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    _show(args, *("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                  for row in rows))


def _anchor_path(config: Config | None, args: argparse.Namespace) -> Path | None:
    """--anchor (it must exist), else the state dir's when the log is the config's."""
    from healer.audit import anchor

    if args.anchor is not None:
        path = Path(args.anchor)
        if not path.exists():
            raise ConfigError(f"--anchor {path}: no such file")
        return path
    return None if args.log is not None else _loaded(config).paths.state_dir / anchor.NAME


def cmd_audit_verify(config: Config | None, args: argparse.Namespace) -> int:
    """Check the hash chain and its ends; exit 1 naming the first bad record."""
    from healer.audit import review

    check = review.verify(_audit_path(config, args), _anchor_path(config, args))
    if args.json:
        _show(args, {**check.__dict__, "ok": check.ok})
    elif check.ok:
        torn = f"; torn tail of {check.torn} bytes, set aside at the next write"
        sealed = "" if check.sealed_from in (None, 1) else \
            f"; records before {check.sealed_from} are of the old format (hash only)"
        _show(args, f"OK: {check.records} records chained ({check.first_ts} .. {check.last_ts})"
              + sealed + (torn if check.torn else "") + f"; {check.ends}")
    else:
        _show(args, f"BROKEN after {check.records} good records: {check.bad}")
    return EXIT_OK if check.ok else EXIT_UNHEALTHY


def _incidents(path: Path, args: argparse.Namespace) -> list[review.Timeline]:
    from healer.audit import review

    filters = _audit_filters(args)
    return review.incidents(review.select(path, filters), filters.outcome)


def cmd_audit_show(config: Config | None, args: argparse.Namespace) -> int:
    """One incident's full timeline with evidence (--markdown: the incident document)."""
    if args.json and args.markdown:
        raise ConfigError("--json and --markdown: choose one")
    path = _audit_path(config, args)
    found = [i for i in _incidents(path, args) if i.id == args.incident]
    if not found:
        raise ConfigError(f"no incident {args.incident!r} in {path}")
    records = found[0].records
    if args.json:
        _show(args, records)
        return EXIT_OK
    if args.markdown:
        from healer.audit.document import markdown

        _show(args, markdown(found[0], args.redactor.value(records)).rstrip("\n"))
        return EXIT_OK
    for r in args.redactor.value(records):  # before the evidence is rendered as JSON
        extra = r.get("detail") or r.get("reason") or r.get("summary") or ""
        _show(args, f"{r['ts']}  {r['event']:<17} {r.get('outcome') or '':<12} "
              f"{r.get('action') or '':<19} {r.get('unit') or '':<28} {extra}")
        if r.get("evidence"):
            _show(args, f"{'':26}evidence: {json.dumps(r['evidence'])}")
    return EXIT_OK


def cmd_audit_stats(config: Config | None, args: argparse.Namespace) -> int:
    """Actions and mean time to heal per scenario and unit."""
    from healer.audit import review

    rows = review.stats(_incidents(_audit_path(config, args), args))
    if args.json:
        _show(args, rows)
    elif rows:
        _table(args, [["SCENARIO", "UNIT", "INCIDENTS", "ACTIONS", "HEALED", "MEAN TIME TO HEAL"]]
               + [[str(r["scenario"]), r["unit"], str(r["incidents"]), str(r["actions"]),
                   str(r["healed"]), "-" if r["mean_time_to_heal_s"] is None
                   else f"{r['mean_time_to_heal_s']:.1f}s"] for r in rows])
    return EXIT_OK


def cmd_audit_list(config: Config | None, args: argparse.Namespace) -> int:
    """Incidents: first seen, scenario, units, steps taken, outcome, time to heal."""
    found = _incidents(_audit_path(config, args), args)
    if args.json:
        _show(args, [i.summary() for i in found])
    elif found:
        _table(args, [["INCIDENT", "FIRST SEEN", "SCENARIO", "UNITS", "STEPS", "OUTCOME",
                       "HEALED IN"]]
               + [[i.id, i.first_seen, i.scenario or "-", ",".join(sorted(i.units)) or "-",
                   " ".join(i.steps) or "-", i.outcome,
                   "-" if i.time_to_heal is None else f"{i.time_to_heal:.1f}s"] for i in found])
    return EXIT_OK


def _loaded(config: Config | None) -> Config:
    assert config is not None, "main loads the config for this command"
    return config


def cmd_deploy_polkit(config: Config, args: argparse.Namespace) -> int:
    """Print the polkit rule for the configured units and the verbs the policies use."""
    from healer.deploy import polkit
    from healer.systemd.dbus_backend import DBusSystemd

    if not USER_NAME.fullmatch(args.user):
        raise ConfigError(f"--user {args.user[:40]!r}: not a user name (a-z, 0-9, _ and -, "
                          "at most 32)")
    rules = compose.rules(config, args.config_path)
    try:
        ids = polkit.unit_ids(DBusSystemd(config.systemd.bus, SystemClock()), config.units.all())
    except ProbeError as exc:
        ids = {}
        _show(args, f"healer: [units] not checked against systemd ({exc}): polkit sees a unit's "
              "own name, so an alias there would not be covered", file=sys.stderr)
    _show(args, polkit.rule(config, rules, args.user, str(args.config_path), ids).rstrip("\n"))
    return EXIT_OK


def cmd_doctor(config: Config, args: argparse.Namespace) -> int:
    """Check what runs against the runbook's best practices; Nagios exit codes."""
    from healer import doctor

    checks = compose.doctor(config, compose.rules(config, args.config_path), SystemClock())
    code = doctor.nagios(checks)
    if args.json:
        _show(args, {"status": NAGIOS[code], "checks": [
            {"check": c.name, "subject": c.subject, "verdict": c.verdict.value, "says": c.says,
             "fix": c.fix} for c in checks]})
        return code
    _show(args, f"healer doctor: {NAGIOS[code]}")
    _table(args, [("CHECK", "SUBJECT", "VERDICT", "SAYS", "FIX")] + [
        (c.name, c.subject, c.verdict.value, c.says, c.fix or "-") for c in checks])
    return code


MAX_DRILL = 3600.0


def cmd_drill(config: Config, args: argparse.Namespace) -> int:
    """Inject one runbook fault on this host and watch it heal (0 healed, 1 not: put back)."""
    from healer.drill import Refused

    if not args.yes:
        raise Refused(f"drill {args.scenario} breaks {args.unit or 'a unit'} on purpose on this "
                      "host: add --yes")
    try:
        timeout = parse_duration(args.timeout)
    except ValueError as exc:
        raise ConfigError(f"--timeout: {exc}") from exc
    if not 1 <= timeout <= MAX_DRILL:
        raise ConfigError(f"--timeout {args.timeout}: from 1s to {MAX_DRILL:g}s")
    drill = compose.drill(config, compose.rules(config, args.config_path), SystemClock(),
                          lambda line: _show(args, line))
    return drill.run(args.scenario, args.unit, timeout)


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    """The unattended agent (see healer.agent): passes in a loop until SIGTERM."""
    from healer import agent

    return agent.serve(config, args.config_path, SystemClock())


def cmd_run_once(config: Config, args: argparse.Namespace) -> int:
    """One pass; exit 0 when healthy at the end, 1 when not."""
    report = _pipeline(config, args).run_once(dry_run=args.dry_run)
    if args.json:
        _show(args, {**codec.dump(report), "healthy": report.healthy})
    else:
        _show(args, *_report_lines(report))
    return EXIT_OK if report.healthy else EXIT_UNHEALTHY


def cmd_fleet_status(config: Config, args: argparse.Namespace) -> int:
    """Each host's heartbeat, the budget left, the storm (0 ok, 1 storm or stale, 3 no store)."""
    if config.fleet is None:
        raise ConfigError(f"{args.config_path}: no [fleet] section: this host is in no fleet")
    fleet = compose.fleet(config, socket.gethostname())
    assert fleet is not None
    status = fleet.status()
    code = EXIT_UNHEALTHY if status.storm or status.stale else EXIT_OK
    if args.json:
        _show(args, {**codec.dump(status), "stale": status.stale})
        return code
    said = [f"storm: {status.storm}"] if status.storm else []
    said += [f"stale: {', '.join(status.stale)}"] if status.stale else []
    _show(args, f"fleet {status.fleet}: {'; '.join(said) or 'OK'}",
          f"store {status.store}; budget {status.budget_left} of {status.budget_per_hour} "
          "actions left in the last hour" + (f"; the storm is escalated by {status.lease}"
                                             if status.lease else "")
          + ("; the storm guard stands down (a trial healed)" if status.stood_down else ""))
    _table(args, [("HOST", "LAST HEARTBEAT", "STATE", "UNHEALTHY", "ACTIONS (1H)")] + [
        (h.host, f"{status.now - h.last:.0f}s ago", "live" if h.live else "stale",
         ", ".join(h.unhealthy) or "-", str(h.actions)) for h in status.hosts])
    return code


def _checkup_parsers(commands: Any) -> None:  # noqa: ANN401 - argparse's subparsers action
    """doctor, and drill: checking the deployment, and proving the healing on it."""
    from healer.drill import DRILLS

    checkup = commands.add_parser("doctor", help="check the app, the units and healer's own "
                                  "install against the runbook (exit 0 OK, 1 WARNING, "
                                  "2 CRITICAL, 3 UNKNOWN)")
    checkup.add_argument("--json", action="store_true", help="print the checks as JSON")
    checkup.set_defaults(handler=cmd_doctor)

    drill = commands.add_parser("drill", help="inject one runbook fault here and watch it heal "
                                "(exit 0 healed, 1 not healed: put back, 2 refused, 3 could "
                                "not act)")
    drill.add_argument("scenario", choices=sorted(DRILLS), help="the fault to inject")
    drill.add_argument("--unit", help="the unit of [units] to drill (default: the first of "
                       "its kind)")
    drill.add_argument("--timeout", default="120s", help="how long to wait for the heal")
    drill.add_argument("--yes", action="store_true", help="yes, break it on purpose")
    drill.set_defaults(handler=cmd_drill)

    fleet = commands.add_parser("fleet", help="the fleet this host shares a budget with "
                                "([fleet])").add_subparsers(dest="fleet_command", required=True,
                                                            metavar="COMMAND")
    status = fleet.add_parser("status", help="each host's heartbeat, the budget left, the storm "
                              "(exit 0 ok, 1 storm or stale hosts, 2 config, 3 store unreachable)")
    status.add_argument("--json", action="store_true", help="print the fleet as JSON")
    status.set_defaults(handler=cmd_fleet_status)


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
    run.set_defaults(handler=cmd_run)
    diagnose = commands.add_parser("diagnose", help="probe and detect, act on nothing "
                                   "(exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)")
    diagnose.add_argument("--json", action="store_true", help="print the findings as JSON")
    diagnose.set_defaults(handler=cmd_diagnose)
    _checkup_parsers(commands)
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
    check.set_defaults(handler=cmd_policy_check, needs_config=lambda a: a.path is None)
    schema = policy.add_parser("schema", help="print the JSON schema of policy files")
    schema.set_defaults(handler=cmd_policy_schema, needs_config=lambda _: False)
    audit = commands.add_parser("audit", help="review the audit log").add_subparsers(
        dest="audit_command", required=True, metavar="COMMAND")
    for name, handler in (("list", cmd_audit_list), ("show", cmd_audit_show),
                          ("stats", cmd_audit_stats), ("verify", cmd_audit_verify)):
        sub = audit.add_parser(name, help=(handler.__doc__ or "").rstrip("."))
        if name == "show":
            sub.add_argument("incident")
            sub.add_argument("--markdown", action="store_true",
                             help="the incident document: timeline, findings, actions, "
                                  "time to heal, escalations")
        if name != "verify":
            sub.add_argument("--since", help="a date/time or a duration ago (2h)")
            sub.add_argument("--until", help="a date/time or a duration ago")
            sub.add_argument("--unit")
            sub.add_argument("--scenario")
            sub.add_argument("--outcome", help=", ".join(IncidentOutcome))
        sub.add_argument("--log", help="read this audit log instead of the config's")
        if name == "verify":
            sub.add_argument("--anchor", help="check the ends against this anchor (the "
                             "config's state dir has one; copy it off the host to trust it)")
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(handler=handler, needs_config=lambda a: a.log is None)
    return top


NAGIOS_COMMANDS = frozenset({"diagnose", "doctor"})


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    """One line on stderr; diagnose and doctor also print their status line, UNKNOWN (3)."""
    _show(args, f"healer: {message}", file=sys.stderr)
    if args.command in NAGIOS_COMMANDS:
        _show(args, f"healer {args.command}: UNKNOWN: {message}")
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
    except SystemExit as exc:  # argparse: usage errors are 2, UNKNOWN (3) for diagnose, doctor
        return EXIT_PROBE if exc.code == EXIT_CONFIG and NAGIOS_COMMANDS & set(argv) else int(
            exc.code or 0)
    args.config_path = args.config or Path(os.environ.get("HEALER_CONFIG", DEFAULT_CONFIG))
    args.redactor = Redactor()  # the patterns only, until the config is loaded
    needs_config: Callable[[argparse.Namespace], bool] = getattr(args, "needs_config",
                                                                 lambda _: True)
    try:
        config = load_config(args.config_path) if needs_config(args) else None
        if config is not None:
            args.redactor = compose.redactor(config)
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
