"""``healer doctor``: what runs, checked against the runbook's Configuration Best Practices.

The app is asked through the control API (``inspect conf`` with defaults, ``inspect report``),
never imported; the units through systemd; healer's own deployment only on a system manager.
Every check gives a verdict and, when it is not ok, the fix; one that cannot apply says why.
"""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from healer import safefile
from healer.deploy.polkit import grants, unit_ids
from healer.errors import FleetUnreachable
from healer.probes.prober import expected_nodes
from healer.vocabulary import ActiveState, Verdict

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from healer.config import Config
    from healer.fleet import Fleet
    from healer.model import UnitState
    from healer.policy.models import Rule
    from healer.probes.celery import ControlProbe
    from healer.systemd.backend import Systemd

KOMBU_FIXED = (5, 4, 0)  # the release that fixed "workers stop consuming" (celery#8030)
AGENT = "healer.service"
POLKIT_RULE = Path("/etc/polkit-1/rules.d/50-healer.rules")
MAX_UNIT_FILE = 2**20
_KOMBU = re.compile(r"kombu:(\d+)\.(\d+)\.(\d+)")
_CELERY = re.compile(r"celery:(\S+)")
_EVENTS_FLAGS = ("-E", "--task-events")


@dataclass(frozen=True)
class Check:
    """One check of one subject (a node, a unit, healer): its verdict, what it saw, the fix."""

    name: str
    subject: str
    verdict: Verdict
    says: str
    fix: str = ""


def _ok(name: str, subject: str, good: bool, says: str, fix: str) -> Check:
    return Check(name, subject, Verdict.OK if good else Verdict.WARNING, says,
                 "" if good else fix)


def app(node: str, conf: dict[str, Any], report: str, argv: tuple[str, ...]) -> Iterator[Check]:
    """The worker settings the runbook asks for, as the node reports them."""
    prefetch = conf.get("worker_prefetch_multiplier")
    yield _ok("prefetch", node, prefetch == 1, f"worker_prefetch_multiplier = {prefetch}",
              "worker_prefetch_multiplier = 1: a worker holds no tasks it is not running")
    acks = conf.get("task_acks_late")
    yield _ok("acks_late", node, acks is True, f"task_acks_late = {acks}",
              "task_acks_late = True: a task a killed worker was running is delivered again")
    child = conf.get("worker_max_tasks_per_child")
    yield _ok("max_tasks_per_child", node, bool(child), f"worker_max_tasks_per_child = {child}",
              "worker_max_tasks_per_child = 1000: a pool process that leaks is replaced")
    hard, soft = conf.get("task_time_limit"), conf.get("task_soft_time_limit")
    both = isinstance(hard, int | float) and isinstance(soft, int | float) and soft < hard
    yield _ok("time_limits", node, both,
              f"task_time_limit = {hard}, task_soft_time_limit = {soft}",
              "task_time_limit = 3600 and task_soft_time_limit = 3000 (soft below hard): a "
              "task that hangs is ended")
    events = conf.get("worker_send_task_events") is True or any(
        a in _EVENTS_FLAGS for a in argv)
    yield _ok("task_events", node, events,
              "task events on" if events else "task events off",
              "start the worker with -E (worker_send_task_events = True): task_failures and a "
              "busy solo pool are then seen from events, not only from the log")
    kombu = _KOMBU.search(report)
    celery = _CELERY.search(report)
    if kombu is None:
        yield Check("versions", node, Verdict.UNKNOWN, "inspect report names no kombu version")
        return
    version = tuple(int(part) for part in kombu.groups())
    yield _ok("versions", node, version >= KOMBU_FIXED,
              f"celery {celery[1] if celery else '?'}, kombu {'.'.join(kombu.groups())}",
              "kombu 5.4.0 or later: earlier ones may stop consuming after a broker "
              "reconnect (celery#8030)")


def unit(state: UnitState, limit: float, memory_mb: float) -> Iterator[Check]:
    """How systemd runs a worker: restarts, stops and kills it, caps its memory."""
    name = state.name
    yield _ok("restart", name, state.restart not in {"", "no"}, f"Restart={state.restart}",
              "Restart=on-failure: systemd restarts a crash at once; healer heals the rest")
    stop = state.timeout_stop_us
    yield _ok("timeout_stop", name, stop is None or stop >= limit * 1e6,
              f"TimeoutStopSec={'infinity' if stop is None else f'{stop / 1e6:g}s'} against "
              f"task_time_limit {limit:g}s",
              f"TimeoutStopSec={limit:g} or more: a warm shutdown lets the running task end "
              "instead of being SIGKILLed")
    yield _ok("kill_mode", name, state.kill_mode == "mixed", f"KillMode={state.kill_mode}",
              "KillMode=mixed: SIGTERM goes to the main process only (a warm shutdown), "
              "SIGKILL to what is left at the timeout")
    cap = state.memory_max
    yield _ok("memory_max", name, cap is None or cap > memory_mb * 2**20,
              f"MemoryMax={'infinity' if cap is None else f'{cap / 2**20:g}M'} against "
              f"[thresholds] memory_mb {memory_mb:g}",
              f"MemoryMax above {memory_mb:g}M, or memory_mb below MemoryMax: otherwise the "
              "OOM killer acts before healer sees the pressure")


def schedule(config: Config, beat: UnitState | None) -> Check:
    """Whether beat and healer can both write beat's schedule file."""
    path = config.beat.schedule_file
    if path is None or beat is None:
        return Check("beat_schedule", "beat", Verdict.NOT_APPLICABLE,
                     "no [beat] schedule_file" if path is None else "no beat unit in [units]")
    target = path if path.exists() else path.parent
    if not target.exists():
        return Check("beat_schedule", beat.name, Verdict.CRITICAL, f"{path.parent} does not exist",
                     f"create {path.parent}, writable by beat's user")
    if not os.access(target, os.W_OK):
        return Check("beat_schedule", beat.name, Verdict.WARNING, f"healer cannot write {target}",
                     "let healer's user write it (group celery, mode 0660), or clear_beat_"
                     "schedule cannot move it aside")
    owner = _owner(target)
    if beat.user and owner != beat.user and not target.stat().st_mode & 0o022:
        return Check("beat_schedule", beat.name, Verdict.WARNING,
                     f"{target} is {owner}'s; beat runs as {beat.user}",
                     f"chown {beat.user} {target}, or make it group-writable")
    return Check("beat_schedule", beat.name, Verdict.OK, f"{target} is writable by both")


def _owner(path: Path) -> str:
    try:
        return path.owner()
    except KeyError:
        return str(path.stat().st_uid)


def deployment(config: Config, systemd: Systemd, granted: Iterable[str],
               polkit: Path = POLKIT_RULE) -> Iterator[Check]:
    """The install's polkit rule (each unit a policy acts on), its folders and watchdog."""
    if config.systemd.bus != "system":
        yield Check("deployment", "healer", Verdict.NOT_APPLICABLE,
                    f"bus {config.systemd.bus!r}: polkit, folder ownership and the agent unit "
                    "apply to an install on the system manager")
        return
    agent = systemd.unit_state(AGENT)
    loaded = agent.load_state == "loaded"
    user = (agent.user or "root") if loaded else pwd.getpwuid(os.geteuid()).pw_name
    yield _polkit(polkit, granted, user)
    for folder in (config.paths.state_dir, config.paths.audit_log.parent):
        owner = _owner(folder) if folder.exists() else None
        yield _ok("folders", str(folder), owner == user,
                  f"owned by {owner}, healer runs as {user}" if owner else "does not exist",
                  f"install -d -o {user} -m 0750 {folder}")
    # systemd says the watchdog of a running unit only; else its files say what it will be
    watchdog = agent.watchdog_us / 1e6 if agent.active_state == ActiveState.ACTIVE \
        else _watchdog_sec(agent.unit_files)
    yield _ok("watchdog", AGENT, watchdog > 0,
              f"WatchdogSec={watchdog:g}s" if loaded else f"{AGENT} is not installed",
              f"install deploy/healer.service as {AGENT} (WatchdogSec=120): systemd restarts "
              "an agent that hangs")


_SPAN = re.compile(r"^\s*WatchdogSec\s*=\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|min|m|h)?\s*$", re.MULTILINE)
_SPAN_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}


def _watchdog_sec(files: tuple[str, ...]) -> float:
    """The last WatchdogSec= of a unit's files (the fragment, then its drop-ins), in seconds."""
    found = 0.0
    for name in files:
        try:
            text = safefile.read_capped(Path(name), MAX_UNIT_FILE).decode(errors="replace")
        except OSError:
            continue
        for number, unit in _SPAN.findall(text):
            found = float(number) * _SPAN_UNITS.get(unit or "s", 1)
    return found


def _polkit(rule: Path, granted: Iterable[str], user: str) -> Check:
    """The rule `healer deploy polkit` prints, installed, naming each unit a policy acts on."""
    if user == "root":
        return Check("polkit", "healer", Verdict.NOT_APPLICABLE, "healer runs as root: polkit "
                     "lets root manage units without a rule")
    try:
        text = rule.read_text(errors="replace")
    except FileNotFoundError:
        return Check("polkit", "healer", Verdict.CRITICAL, f"no {rule}",
                     f"healer deploy polkit > {rule}")
    except OSError as exc:
        return Check("polkit", "healer", Verdict.UNKNOWN, f"cannot read {rule}: {exc.strerror}",
                     "run doctor as root to check the rule polkit has for the agent's user")
    missing = [u for u in granted if f'"{u}"' not in text]
    return _ok("polkit", "healer", not missing,
               f"{rule} names " + (f"none of {', '.join(missing)}" if missing
                                   else "every unit a policy acts on"),
               f"healer deploy polkit > {rule} (after changing [units] or the policies)")


def fleet_store(fleet: Fleet) -> Check:
    """The fleet's store answers (the budget left, the live hosts), and whether it storms."""
    subject = f"fleet {fleet.config.name}"
    try:
        status = fleet.status()
    except FleetUnreachable as exc:
        return Check("fleet store", subject, Verdict.CRITICAL, f"{exc}: every agent acts on its "
                     "local fallback budget", "check [fleet] store, and that this host reaches it")
    live = sum(h.live for h in status.hosts)
    says = (f"{status.store} answers: {live} live host(s), {status.budget_left} of "
            f"{status.budget_per_hour} actions left this hour")
    if status.storm:
        return Check("fleet store", subject, Verdict.WARNING, f"{says}; {status.storm}",
                     "fix what the fleet's hosts share; `healer fleet status` lists them")
    return Check("fleet store", subject, Verdict.OK, says)


def examine(config: Config, systemd: Systemd, control: ControlProbe, rules: list[Rule],
            fleet: Fleet | None = None) -> list[Check]:
    """Every check, in order: the app on each node, the worker units, beat, healer, the fleet."""
    workers = tuple(systemd.unit_state(name) for name in config.units.workers)
    beat = systemd.unit_state(config.units.beat) if config.units.beat else None
    expected = expected_nodes(workers, config)
    argv = {name: state.argv for name, state, _ in expected}
    try:
        settings = control.settings(sorted(argv)) if argv else {}
        silent = "the node did not answer"
    except Exception as exc:  # the broker refused, say: every node is unknown, and why
        settings, silent = {}, f"the workers could not be asked ({type(exc).__name__})"
    checks: list[Check] = []
    limits: dict[str, float] = {}
    for node, state, _ in expected:
        if node not in settings:
            checks.append(Check("app", node, Verdict.UNKNOWN, silent,
                                f"start {state.name}, then run doctor again"))
            continue
        conf, report = settings[node]
        checks += app(node, conf, report, argv[node])
        if isinstance(limit := conf.get("task_time_limit"), int | float):
            limits[state.name] = max(limits.get(state.name, 0.0), float(limit))
    for state in workers:
        checks += unit(state, limits.get(state.name, config.thresholds.task_time_limit),
                       config.thresholds.memory_mb)
    checks.append(schedule(config, beat))
    granted = grants(config, rules)[0]
    ids = unit_ids(systemd, list(granted)) if config.systemd.bus == "system" else {}
    checks += deployment(config, systemd, [ids.get(u, u) for u in granted])
    return checks + ([fleet_store(fleet)] if fleet else [])


_RANK = {Verdict.CRITICAL: 2, Verdict.WARNING: 1, Verdict.UNKNOWN: 3}


def nagios(checks: list[Check]) -> int:
    """The exit code: critical 2, else warning 1, else unknown 3, else 0."""
    found = {c.verdict for c in checks}
    return next((code for verdict, code in _RANK.items() if verdict in found), 0)
