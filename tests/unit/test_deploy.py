"""Deployment assets: the polkit rule's grants, and the shipped sample config and unit."""

from __future__ import annotations

from pathlib import Path

from msgspec.structs import replace

from healer.config import Config, UnitsConfig, load_config
from healer.deploy import polkit
from healer.policy.loader import load_policies
from healer.policy.models import Action, Match, Rule, Step
from healer.testing import FakeSystemd, unit
from healer.vocabulary import Scenario

ROOT = Path(__file__).resolve().parents[2]
W = "w.service"
BEAT = "beat.service"
BROKER = "redis.service"
CONFIG = Config(units=UnitsConfig(workers=[W], beat=BEAT, broker=BROKER))


def _rule(scenario: Scenario, *actions: Action, unit: str | None = None) -> Rule:
    return Rule(name=f"r-{scenario.value}", match=Match(scenario=scenario),
                ladder=[Step(action=a, unit=unit) for a in actions])


def test_grants_follow_the_steps_and_the_roles() -> None:
    """Each unit gets only the verbs its scenarios' steps use; beat alone gets stop/start."""
    rules = [_rule(Scenario.WORKER_DOWN, "restart_unit", "escalate"),
             _rule(Scenario.BEAT_DOWN, "clear_beat_schedule"),
             _rule(Scenario.BROKER_UNREACHABLE, "restart_broker")]
    units, reload_daemon = polkit.grants(CONFIG, rules)
    assert units == {W: ["reset-failed", "restart"],
                     BEAT: ["reset-failed", "start", "stop"],
                     BROKER: ["reset-failed", "restart"]}
    assert reload_daemon is False


def test_daemon_reload_is_granted_only_when_a_policy_uses_it() -> None:
    """reload-daemon appears in the rule only when some step is daemon_reload."""
    without = polkit.rule(CONFIG, [_rule(Scenario.WORKER_DOWN, "restart_unit")], "healer", "x")
    with_it = polkit.rule(CONFIG, [_rule(Scenario.WORKER_DOWN, "daemon_reload")], "healer", "x")
    assert 'reload-daemon") {' not in without
    assert 'action.id == "org.freedesktop.systemd1.reload-daemon"' in with_it


def test_units_outside_the_allowlist_are_never_granted() -> None:
    """A step naming a unit that is not in [units] grants nothing on it."""
    units, _ = polkit.grants(CONFIG, [_rule(Scenario.WORKER_DOWN, "restart_unit",
                                            unit="ssh.service")])
    assert units == {}


def test_shipped_sample_config_and_policies_are_valid() -> None:
    """deploy/healer.toml loads, and the rule for it covers the three units."""
    config = load_config(ROOT / "deploy" / "healer.toml")
    text = polkit.rule(config, load_policies(ROOT / "policies"), "healer", "deploy/healer.toml")
    for name in config.units.all():
        assert f'"{name}": [' in text


def test_shipped_unit_is_hardened_type_notify_under_its_own_user() -> None:
    """deploy/healer.service: Type=notify, a watchdog, User=healer, the hardening of issue 5."""
    unit = (ROOT / "deploy" / "healer.service").read_text().splitlines()
    for line in ("Type=notify", "User=healer", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "StateDirectory=healer", "LogsDirectory=healer", "CapabilityBoundingSet=",
                 "UMask=0077", "MemoryDenyWriteExecute=yes"):
        assert line in unit, line
    assert any(line.startswith("WatchdogSec=") for line in unit)
    assert not any(line.startswith("ProtectProc=invisible") for line in unit)


def test_rule_refuses_every_other_systemd_action_for_the_user() -> None:
    """After the grants, any other org.freedesktop.systemd1 action of the user is NO."""
    text = polkit.rule(CONFIG, [_rule(Scenario.WORKER_DOWN, "restart_unit")], "healer", "x")
    grants = text.index('action.id == "org.freedesktop.systemd1.manage-units"')
    refusal = text.index('action.id.indexOf("org.freedesktop.systemd1.") == 0')
    assert grants < refusal
    assert "return polkit.Result.NO;" in text[refusal:]


def test_rule_names_the_unit_systemd_resolves_an_alias_to() -> None:
    """An alias in [units] (redis.service) is granted under systemd's own name, with a note."""
    fake = FakeSystemd(unit("redis-server.service"), unit(W), unit(BEAT))
    fake.units[BROKER] = replace(unit(BROKER), unit_id="redis-server.service")
    ids = polkit.unit_ids(fake, CONFIG.units.all())
    text = polkit.rule(CONFIG, [_rule(Scenario.BROKER_UNREACHABLE, "restart_broker")], "healer",
                       "x", ids)
    assert ids[BROKER] == "redis-server.service"
    assert '"redis-server.service": ["reset-failed", "restart"]' in text
    assert f'"{BROKER}"' not in text
    assert "an alias: polkit sees redis-server.service" in text
