"""The polkit rule that lets the healer user do exactly what its policies can do.

For each unit in [units], the verbs of org.freedesktop.systemd1.manage-units that some policy
step can use on it (restart, start, stop, reset-failed); daemon-reload
(org.freedesktop.systemd1.reload-daemon) only when some policy has a daemon_reload step.

Everything else systemd asks polkit about for this user is answered NO. Left unanswered, the
default (auth_admin) comes back as InteractiveAuthorizationRequired, and polkit goes on to ask
about manage-unit-files for the same unit and verb (checked on systemd 252 with polkitd 122).
With the NO, "the rule does not cover this" is AccessDenied and only "no rule at all" is
InteractiveAuthorizationRequired, which is how healer tells the two apart.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from healer.vocabulary import Scenario

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from healer.config import Config
    from healer.policy.models import Rule
    from healer.systemd.backend import Systemd

VERBS = {
    "restart_unit": ("restart", "reset-failed"),
    "daemon_reload": ("restart", "reset-failed"),
    "restart_broker": ("restart", "reset-failed"),
    "reset_failed": ("reset-failed",),
    "clear_beat_schedule": ("stop", "start", "reset-failed"),
}
_WORKERS = {Scenario.WORKER_DOWN, Scenario.WORKER_UNRESPONSIVE, Scenario.WORKER_NOT_CONSUMING,
            Scenario.MEMORY_PRESSURE, Scenario.TASK_FAILURES}
_BEAT = {Scenario.BEAT_DOWN, Scenario.BEAT_STALLED}


def _role_units(config: Config, scenario: Scenario) -> list[str]:
    units = config.units
    if scenario in _WORKERS:
        return list(units.workers)
    if scenario in _BEAT:
        return [units.beat] if units.beat else []
    if scenario == Scenario.BROKER_UNREACHABLE:
        return [units.broker] if units.broker else []
    return []


def grants(config: Config, rules: list[Rule]) -> tuple[dict[str, list[str]], bool]:
    """Unit -> verbs healer may need on it, and whether it may need daemon-reload."""
    allowed = set(config.units.all())
    verbs: dict[str, set[str]] = {}
    reload_daemon = False
    for rule in rules:
        for step in rule.ladder:
            if step.action == "escalate":
                continue
            reload_daemon |= step.action == "daemon_reload"
            if step.unit:
                targets = [step.unit]
            elif step.action == "restart_broker":
                targets = [config.units.broker] if config.units.broker else []
            else:
                targets = [u for u in _role_units(config, rule.match.scenario)
                           if fnmatchcase(u, rule.match.unit)]
            for unit in targets:
                if unit in allowed:
                    verbs.setdefault(unit, set()).update(VERBS[step.action])
    return {u: sorted(v) for u, v in sorted(verbs.items())}, reload_daemon


def unit_ids(systemd: Systemd, names: Iterable[str]) -> dict[str, str]:
    """The name systemd itself gives each unit: polkit is asked about it, never about an alias.

    Raises ProbeError when systemd cannot be asked.
    """
    return {name: systemd.unit_state(name).unit_id or name for name in names}


def rule(config: Config, rules: list[Rule], user: str, source: str,
         ids: Mapping[str, str] | None = None) -> str:
    """The JavaScript of /etc/polkit-1/rules.d/50-healer.rules (units named by ``ids``)."""
    ids = ids or {}
    granted, reload_daemon = grants(config, rules)
    units: dict[str, list[str]] = {}
    aliases = ""
    for name, verbs in granted.items():
        own = ids.get(name, name)
        units[own] = sorted({*units.get(own, []), *verbs})
        if own != name:
            aliases += f"// [units] names {name}, an alias: polkit sees {own}.\n"
    reload_line = (
        '    if (action.id == "org.freedesktop.systemd1.reload-daemon") {\n'
        "        return polkit.Result.YES;\n    }\n" if reload_daemon else
        "    // no policy uses daemon_reload: reload-daemon is not allowed\n")
    refuse = (
        '    if (action.id.indexOf("org.freedesktop.systemd1.") == 0) {\n'
        "        return polkit.Result.NO;  // anything else: AccessDenied, not a password prompt\n"
        "    }\n")
    return (
        f"// /etc/polkit-1/rules.d/50-healer.rules, made by `healer deploy polkit` from\n"
        f"// {json.dumps(source)}. It lets {json.dumps(user)} act on exactly these units with "
        "exactly these verbs.\n"
        f"{aliases}"
        "polkit.addRule(function(action, subject) {\n"
        f"    if (subject.user != {json.dumps(user)}) {{\n"
        "        return polkit.Result.NOT_HANDLED;\n    }\n"
        "    var verbs = {\n"
        + "".join(f"        {json.dumps(u)}: {json.dumps(v)},\n" for u, v in units.items())
        + "    };\n"
        '    if (action.id == "org.freedesktop.systemd1.manage-units") {\n'
        '        var allowed = verbs[action.lookup("unit")] || [];\n'
        '        if (allowed.indexOf(action.lookup("verb")) >= 0) {\n'
        "            return polkit.Result.YES;\n        }\n    }\n"
        f"{reload_line}"
        f"{refuse}"
        "    return polkit.Result.NOT_HANDLED;\n"
        "});\n"
    )
