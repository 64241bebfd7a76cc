"""Least privilege on a real systemd system manager with polkitd: healer as its own user.

One booted root (``SystemStack``) for the module; each test has its own config, state and audit
log, and starts from the generated rule installed and every unit running.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from healer.clock import SystemClock
from healer.systemd.dbus_backend import DBusSystemd
from sandbox.base import wait_until
from sandbox.stack import BEAT, WORKER
from sandbox.systemstack import BROKER, HEALER, RULE, SystemStack
from tests.conftest import audit_records

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = "/etc/healer/healer.toml"
EXTRA = "extra-celery.service"


@pytest.fixture(scope="module")
def system() -> Iterator[SystemStack]:
    """The runbook's units and healer on a booted system manager, torn down after the module."""
    with SystemStack(PROJECT) as running:
        yield running


@pytest.fixture(autouse=True)
def ready(system: SystemStack) -> None:
    """Before each test: the rule for the shipped config installed, every unit running."""
    system.install_rule()
    seen = system.unit_log(WORKER).count(" ready.")
    down = [unit for unit in (BROKER, WORKER, BEAT) if not system.active(unit)]
    for unit in down:
        system.manager.systemctl("restart", unit)
    if WORKER in down:
        system.wait_worker_ready(timeout=60, seen=seen)


def config(system: SystemStack, name: str, workers: tuple[str, ...] = (WORKER,)) -> str:
    """The shipped config with its own state and audit log (and maybe more workers)."""
    text = (PROJECT / "deploy" / "healer.toml").read_text()
    text = text.replace('"/var/lib/healer"', f'"/var/lib/healer-{name}"')
    text = text.replace('"/var/log/healer/audit.jsonl"', f'"/var/log/healer-{name}/audit.jsonl"')
    text = text.replace(f'workers = ["{WORKER}"]', f"workers = {json.dumps(list(workers))}")
    path = f"/etc/healer/{name}.toml"
    system.manager.write(path, text)
    system.manager.run("install", "-d", "-o", "healer", "-g", "healer", f"/var/lib/healer-{name}",
                       f"/var/log/healer-{name}")
    return path


def audit(system: SystemStack, log: str) -> list[dict[str, Any]]:
    """The records of an audit log inside the root (none before it exists)."""
    return audit_records(system.manager.path(log))


def finished(records: list[dict[str, Any]], unit: str) -> list[dict[str, Any]]:
    """The action_finished records about one unit."""
    return [r for r in records if r["event"] == "action_finished" and r["unit"] == unit]


def test_the_system_bus_is_reachable_from_the_host(system: SystemStack) -> None:
    """Healer's D-Bus backend on the host reads the root's units through the bind-mounted socket."""
    state = DBusSystemd(system.manager.bus_address, SystemClock()).unit_state(WORKER)
    assert state.active_state == "active"
    assert state.main_pid > 0


def test_generated_rule_lets_healer_heal_a_killed_unit(system: SystemStack) -> None:
    """As the unprivileged healer uid, over the system bus, the rule is enough to heal a kill."""
    assert system.manager.run("id", "-u", user="healer").stdout.strip() != "0"
    path = config(system, "heal")
    system.kill(WORKER)

    result = system.healer("run-once", config=path, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert system.active(WORKER)
    [restart] = finished(audit(system, "/var/log/healer-heal/audit.jsonl"), WORKER)
    assert (restart["action"], restart["outcome"]) == ("restart_unit", "healed")


def test_a_unit_the_rule_does_not_cover_is_denied_and_nothing_else_is_touched(
    system: SystemStack,
) -> None:
    """One unit more in [units] than in the rule: AccessDenied on it, audited, held; rest intact."""
    system.manager.write(f"/etc/systemd/system/{EXTRA}",
                         "[Service]\nUser=celery\nExecStart=/bin/sleep infinity\n")
    system.manager.systemctl("daemon-reload")
    system.manager.systemctl("start", EXTRA)
    path = config(system, "extra", workers=(WORKER, EXTRA))
    untouched = {u: system.manager.show(u, "InvocationID") for u in (BROKER, BEAT)}
    system.kill(EXTRA)
    system.kill(WORKER)

    first = system.healer("run-once", config=path, check=False)
    second = system.healer("run-once", config=path, check=False)

    assert first.returncode == 1, first.stdout + first.stderr
    denial = [line for line in first.stdout.splitlines() if "restart_unit " + EXTRA in line]
    assert len(denial) == 1
    assert "denied: restart extra-celery.service: AccessDenied: polkit denies it" in denial[0]
    assert system.active(WORKER)
    assert system.manager.show(EXTRA, "ActiveState") == "failed"
    assert {u: system.manager.show(u, "InvocationID") for u in (BROKER, BEAT)} == untouched
    records = audit(system, "/var/log/healer-extra/audit.jsonl")
    [denied] = finished(records, EXTRA)  # once: the second pass is held by the breaker
    assert denied["outcome"] == "denied"
    assert denied["error"] == "org.freedesktop.DBus.Error.AccessDenied"
    assert [r["event"] for r in records if r["unit"] == EXTRA].count("breaker_opened") == 1
    assert second.returncode == 1
    assert "held until `healer resume`" in second.stdout


def test_without_any_rule_the_first_action_asks_for_the_rule(system: SystemStack) -> None:
    """No polkit rule: InteractiveAuthorizationRequired, with the hint to install the rule."""
    system.remove_rule()
    path = config(system, "norule")
    system.kill(WORKER)

    result = system.healer("run-once", config=path, check=False)

    assert result.returncode == 1
    assert ("restart_unit hiringdog-celery.service: denied: restart hiringdog-celery.service: "
            "InteractiveAuthorizationRequired: no polkit rule lets this user manage units: "
            "install the one `healer deploy polkit` prints") in result.stdout
    assert not system.active(WORKER)
    [denied] = finished(audit(system, "/var/log/healer-norule/audit.jsonl"), WORKER)
    assert denied["error"] == "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"


def test_shipped_unit_runs_as_its_own_user_and_heals_by_itself(system: SystemStack) -> None:
    """deploy/healer.service as the README installs it: Type=notify, User=healer, heals a kill."""
    unit = "healer.service"
    system.manager.write(f"/etc/systemd/system/{unit}",
                         (PROJECT / "deploy" / "healer.service").read_text())
    system.manager.systemctl("daemon-reload")
    system.manager.systemctl("enable", "--now", unit)  # returns once READY=1 arrived
    try:
        assert system.manager.show(unit, "ActiveState") == "active"
        assert system.manager.show(unit, "Type") == "notify"
        pid = system.manager.show(unit, "MainPID")
        assert system.manager.run("stat", "-c", "%U", f"/proc/{pid}").stdout.strip() == "healer"
        system.kill(WORKER)
        log = "/var/log/healer/audit.jsonl"
        wait_until(lambda: bool(finished(audit(system, log), WORKER)), 60,
                   "healer.service to restart the worker")
        [restart] = finished(audit(system, log), WORKER)
        assert restart["outcome"] == "healed"
        assert system.active(WORKER)
        assert system.manager.show(unit, "StatusText")  # the last pass, as STATUS=
    finally:
        system.manager.systemctl("disable", "--now", unit)


def own_checks(system: SystemStack, path: str) -> dict[tuple[str, str], str]:
    """`healer doctor --json` as root (who can read rules.d): each check of healer's install."""
    result = system.healer("doctor", "--json", config=path, check=False, user="root")
    checks = json.loads(result.stdout)["checks"]
    return {(c["check"], c["subject"]): f'{c["verdict"]}: {c["says"]}' for c in checks
            if c["check"] in {"polkit", "folders", "watchdog"}}


@pytest.mark.parametrize("undo", ["none", "polkit", "folders", "watchdog"])
def test_doctor_checks_healers_own_install(system: SystemStack, undo: str) -> None:
    """Rule, folders and agent unit as the README installs them: ok; each undone alone: flagged."""
    unit = "/etc/systemd/system/healer.service"
    shipped = (PROJECT / "deploy" / "healer.service").read_text()
    system.manager.write(unit, shipped.replace("WatchdogSec=120\n", "")
                         if undo == "watchdog" else shipped)
    system.manager.systemctl("daemon-reload")
    path = config(system, "doctor")
    if undo == "polkit":
        system.remove_rule()
    if undo == "folders":
        system.manager.run("chown", "root", "/var/lib/healer-doctor")
    try:
        verdicts = own_checks(system, path)
    finally:
        system.manager.path(unit).unlink()
        system.manager.systemctl("daemon-reload")
    flagged = {check for (check, _), said in verdicts.items() if not said.startswith("ok")}
    assert flagged == (set() if undo == "none" else {undo}), verdicts
    assert len(verdicts) == 4  # the rule, two folders, the watchdog


HIDDEN = ("ProbeError: process {pid} runs but /proc does not show it to healer "
          "(ProtectProc= or hidepid=)")


@pytest.mark.parametrize(("hardening", "unknown"), [
    ([], {}), (["-p", "ProtectProc=invisible"], {"usage": HIDDEN})])
def test_a_worker_hidden_by_protectproc_has_unknown_usage(
    system: SystemStack, hardening: list[str], unknown: dict[str, str]
) -> None:
    """The memory/CPU probe of a worker /proc hides is unknown (exit 3), not counted as nothing."""
    result = system.manager.run(
        "systemd-run", "--wait", "--pipe", "--quiet", "-p", "User=healer", *hardening,
        HEALER, "--config", config(system, "hidden"), "diagnose", "--json", check=False)
    pid = system.main_pid(WORKER)
    assert json.loads(result.stdout)["unknown"] == {
        k: v.format(pid=pid) for k, v in unknown.items()}
    assert result.returncode == (3 if unknown else 0), result.stderr


def test_broker_named_by_its_alias_is_restarted_through_the_rule(system: SystemStack) -> None:
    """[units] broker = redis.service: the rule names redis-server.service, and polkit allows it."""
    text = system.manager.path(RULE).read_text()
    assert '"redis-server.service": ["reset-failed", "restart"]' in text
    assert "redis.service, an alias: polkit sees redis-server.service" in text
    path = config(system, "alias")
    system.manager.systemctl("stop", BROKER)

    result = system.healer("run-once", config=path, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert system.active(BROKER)
    [restart] = finished(audit(system, "/var/log/healer-alias/audit.jsonl"), "redis.service")
    assert (restart["action"], restart["outcome"]) == ("restart_broker", "healed")


def test_shipped_unit_security_score_is_at_most_2_5(capsys: pytest.CaptureFixture[str]) -> None:
    """systemd-analyze security --offline=yes scores deploy/healer.service; printed, <= 2.5."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(PROJECT / "deploy/healer.service")],
        capture_output=True, text=True, check=False, timeout=60,
    )
    summary = [line for line in result.stdout.splitlines() if "Overall exposure level" in line]
    assert len(summary) == 1, result.stdout + result.stderr
    with capsys.disabled():
        print(f"\ndeploy/healer.service: {summary[0].strip()}")  # noqa: T201 - the report
    score = float(summary[0].split("Overall exposure level for healer.service:")[1].split()[0])
    assert score <= 2.5
