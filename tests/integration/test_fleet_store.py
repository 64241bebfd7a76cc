"""The fleet on a real redis-server: its budget, its storm, the fallback, `healer fleet status`.

Heartbeats, the shared budget, the storm and its one escalation, the trial that ends it, the
fallback while the store is gone.

Each host is a whole pass over fakes (``Harness``); its peers are other passes, or the fleet's
own client publishing their heartbeats. Every test has a fleet name of its own.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import TYPE_CHECKING

import pytest
import redis

from healer import cli, compose, doctor
from healer.config import FleetConfig, GuardConfig, UnitsConfig, load_config
from healer.fleet import Fleet
from healer.vocabulary import Outcome, Scenario, Verdict
from sandbox.stack import free_port
from sandbox.store import RedisStore
from tests.unit.harness import (
    BROKER,
    W1,
    Harness,
    broker_down,
    broker_rule,
    crashed,
    restart_rule,
    svc,
    world,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration
_names = itertools.count()


@pytest.fixture(scope="module")
def store() -> Iterator[RedisStore]:
    """One redis-server for the module's fleets."""
    with RedisStore() as running:
        yield running


@pytest.fixture
def fleet(store: RedisStore) -> FleetConfig:
    """A fleet of its own on the store: a storm is 2 hosts and more than half unhealthy."""
    return FleetConfig(store=store.url, name=f"t{next(_names)}", budget_per_hour=10,
                       fallback_budget_per_hour=1, storm_min_hosts=2, storm_share=0.5)


def host(tmp_path: Path, name: str, fleet: FleetConfig, *failed: str, **kw: object) -> Harness:
    """A host of the fleet with one worker (and the broker), these units failed."""
    h = Harness(world(*failed), tmp_path / name, units=UnitsConfig(workers=[W1], broker=BROKER),
                fleet=fleet, host=name, **kw)  # type: ignore[arg-type]
    h.clock.advance(time.time() - h.clock.time())  # heartbeats carry the time they were sent
    return h


def peer(fleet: FleetConfig, name: str, *unhealthy: str) -> Fleet:
    """Another host's heartbeat, published as its agent would."""
    other = Fleet(fleet, name, 3600)
    other.exchange(set(unhealthy), 0)
    return other


def test_a_storm_across_hosts_holds_workers_and_is_escalated_once(
        tmp_path: Path, fleet: FleetConfig) -> None:
    """Three of four hosts unhealthy: no host restarts its worker; one host escalates the storm."""
    peer(fleet, "c", W1)
    peer(fleet, "d")
    a, b = (host(tmp_path, n, fleet, W1) for n in "ab")
    a.run()
    report = b.run()
    assert a.restarts() == b.restarts() == 0
    assert [x.outcome for x in report.actions] == [Outcome.STORM]
    assert "fleet" in report.actions[0].detail
    assert "3 of 4 hosts" in report.actions[0].detail
    assert [(x.scenario, x.unit) for x in a.notifier.sent] == [("fleet_storm", None)]  # type: ignore[union-attr]
    assert b.notifier.sent == []  # type: ignore[union-attr]
    assert report.storm
    a.run()
    b.run()
    assert len(a.notifier.sent) + len(b.notifier.sent) == 1  # type: ignore[union-attr]


def test_the_storm_s_escalation_resolves_when_the_fleet_is_healthy(
        tmp_path: Path, fleet: FleetConfig) -> None:
    """The escalating host resolves the storm's incident once too few hosts are unhealthy."""
    c = peer(fleet, "c", W1)
    a = host(tmp_path, "a", fleet, W1)
    a.run()
    c.exchange(set(), 0)
    a.fake.units[W1] = svc(W1)
    a.run()
    assert [(x.scenario, x.status) for x in a.notifier.sent] == [  # type: ignore[union-attr]
        ("fleet_storm", "triggered"), ("fleet_storm", "resolved")]
    assert "fleet_storm" in [r["scenario"] for r in a.audit("incident_resolved")]


def test_the_fleet_budget_is_shared_by_every_host(tmp_path: Path, fleet: FleetConfig) -> None:
    """A budget of 2 across the fleet: two hosts restart, the third is refused, said why."""
    fleet = FleetConfig(store=fleet.store, name=fleet.name, budget_per_hour=2,
                        storm_min_hosts=100)
    hosts = [host(tmp_path, n, fleet, W1) for n in "abc"]
    reports = [h.run() for h in hosts]
    assert [h.restarts() for h in hosts] == [1, 1, 0]
    refused = reports[2].actions[0]
    assert refused.outcome == Outcome.BUDGET
    assert f"fleet {fleet.name} (2 actions per hour) is spent" in refused.detail


def test_without_the_store_the_local_fallback_budget_applies_and_is_said_once(
        tmp_path: Path, fleet: FleetConfig) -> None:
    """Store unreachable: one restart (fallback 1), then budget; down audited once, redacted."""
    lost = FleetConfig(store=f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0", name=fleet.name,
                       fallback_budget_per_hour=1)
    a = host(tmp_path, "a", lost, W1)
    first = a.run()
    assert a.restarts() == 1
    assert first.fleet is not None
    assert not first.fleet.reachable
    assert first.fleet.budget_per_hour == 1
    a.fake.units[W1] = svc(W1, "failed", "signal")
    a.clock.advance(60)
    second = a.run()
    assert a.restarts() == 1
    assert second.actions[0].outcome == Outcome.BUDGET
    assert "fallback budget of 1" in second.actions[0].detail
    down = a.audit("fleet_store")
    assert [r["outcome"] for r in down] == ["down"]
    assert "s3cret-pw" not in a.audit_path.read_text()
    a.fleet = fleet  # the store is back
    a.run()
    assert [r["outcome"] for r in a.audit("fleet_store")] == ["down", "up"]
    assert "rejoined" in a.audit("fleet_store")[-1]["reason"]


def test_a_dry_run_does_not_ask_the_fleet(tmp_path: Path, fleet: FleetConfig) -> None:
    """run-once --dry-run publishes no heartbeat and reports no fleet."""
    a = host(tmp_path, "a", fleet, W1)
    assert a.run(dry_run=True).fleet is None
    assert Fleet(fleet, "b", 60).status().hosts == []


def test_the_broker_is_restarted_before_the_store_is_asked(
        tmp_path: Path, fleet: FleetConfig) -> None:
    """The broker's Redis may be the store: its restart never waits on the fleet."""
    lost = FleetConfig(store=f"redis://127.0.0.1:{free_port()}/0", name=fleet.name)
    a = host(tmp_path, "a", lost, rules=[broker_rule(), restart_rule()])
    a.broker = broker_down(a.fake)
    a.run()
    events = [(r["event"], r.get("unit")) for r in a.audit()]
    assert ("action_started", BROKER) in events
    assert events.index(("action_started", BROKER)) < events.index(("fleet_store", None))


def test_one_trial_per_cool_down_heals_and_the_guard_stands_down(
        tmp_path: Path, fleet: FleetConfig) -> None:
    """In a storm, after a cool-down one host tries; it heals, so the other hosts heal too."""
    peer(fleet, "c", W1)
    a, b = (host(tmp_path, n, fleet, W1, guard=GuardConfig(breaker_cooldown=0.3)) for n in "ab")
    a.run()
    b.run()
    assert a.restarts() == b.restarts() == 0
    time.sleep(0.35)
    tried = a.run()
    assert a.restarts() == 1
    assert tried.actions[0].outcome == Outcome.HEALED
    b.run()
    assert b.restarts() == 1
    assert redis.Redis.from_url(fleet.store).exists(f"healer:fleet:{fleet.name}:clear")


def test_standing_down_keeps_the_storm_s_incident_open_while_it_lasts(
        tmp_path: Path, fleet: FleetConfig) -> None:
    """Hosts heal while the guard stands down; the storm, still on, is not resolved nor re-paged."""
    for name in "cde":
        peer(fleet, name, W1)
    a, b = (host(tmp_path, n, fleet, W1, guard=GuardConfig(breaker_cooldown=0.3)) for n in "ab")
    a.run()
    time.sleep(0.35)
    a.run()  # the trial heals a: the guard stands down
    b.run()  # b heals too; c, d and e are still unhealthy: 3 of 5
    a.run()
    assert a.restarts() == b.restarts() == 1
    assert [(x.scenario, x.status) for x in a.notifier.sent] == [  # type: ignore[union-attr]
        ("fleet_storm", "triggered")]


def test_no_trial_is_taken_while_the_budget_is_spent(tmp_path: Path, fleet: FleetConfig
                                                      ) -> None:
    """The budget is spent: nobody could act, so the cool-down's trial is not used up."""
    fleet = FleetConfig(store=fleet.store, name=fleet.name, budget_per_hour=1, storm_min_hosts=2)
    peer(fleet, "c", W1).take()
    a = host(tmp_path, "a", fleet, W1, guard=GuardConfig(breaker_cooldown=0.3))
    a.run()
    time.sleep(0.35)
    tried = a.run()
    assert [x.outcome for x in tried.actions] == [Outcome.STORM]
    assert not redis.Redis.from_url(fleet.store).exists(f"healer:fleet:{fleet.name}:trial")


def test_a_trial_that_could_not_act_is_given_back(tmp_path: Path, fleet: FleetConfig) -> None:
    """The trial's host has its worker paused: it gives the trial back for another host."""
    peer(fleet, "c", W1)
    a = host(tmp_path, "a", fleet, W1, guard=GuardConfig(breaker_cooldown=0.3))
    a.run()
    a.controls().pause(W1, None, "maintenance")
    time.sleep(0.35)
    tried = a.run()
    assert [x.outcome for x in tried.actions] == [Outcome.PAUSED]
    assert not redis.Redis.from_url(fleet.store).exists(f"healer:fleet:{fleet.name}:trial")


def test_a_ladder_run_out_while_the_fleet_turned_stormy_is_not_paged_alone(
        tmp_path: Path, fleet: FleetConfig) -> None:
    """The restart did not heal, and meanwhile another host fell: held, the storm pages."""
    a = host(tmp_path, "a", fleet, W1)
    a.fake.outcomes[W1] = lambda state: (peer(fleet, "c", W1), crashed(state))[1]
    report = a.run()
    assert a.restarts() == 1
    assert report.actions[-1].outcome == Outcome.STORM
    assert [x.scenario for x in a.notifier.sent] == []  # type: ignore[union-attr]
    assert not a.audit("breaker_opened")


def test_a_healthy_host_leaves_the_trial_to_one_that_has_a_step_to_try(
        tmp_path: Path, fleet: FleetConfig) -> None:
    """The trial goes to a host with something to heal, not to the first one that asks."""
    peer(fleet, "c", W1)
    cooldown = GuardConfig(breaker_cooldown=0.3)
    a = host(tmp_path, "a", fleet, W1, guard=cooldown)
    well = host(tmp_path, "well", fleet, guard=cooldown)
    a.run()
    time.sleep(0.35)
    well.run()
    a.run()
    assert a.restarts() == 1


def test_a_heartbeat_healer_did_not_write_is_left_out(store: RedisStore, fleet: FleetConfig
                                                       ) -> None:
    """Garbage under a host's key, or a huge value, is no heartbeat: no details, no crash."""
    client = redis.Redis.from_url(store.url)
    for name, value in (("x", b"\xff{not json"), ("y", b"[" * 2**17), ("z", b'{"host": 1}')):
        peer(fleet, name, W1)
        client.set(f"healer:fleet:{fleet.name}:host:{name}", value)
    status = Fleet(fleet, "a", 3600).status()
    assert [(h.host, h.live, h.unhealthy) for h in status.hosts] == [
        ("x", True, []), ("y", True, []), ("z", True, [])]


def test_units_named_in_a_config_file_are_published(tmp_path: Path, fleet: FleetConfig) -> None:
    """The units of a config read from TOML (its own string kind) go into a heartbeat as text."""
    config = tmp_path / "healer.toml"
    config.write_text(f'[units]\nworkers = ["{W1}"]\n')
    units = load_config(config).units.workers
    own = Fleet(fleet, "a", 3600)
    assert own.exchange(set(units), 0).unhealthy == 1
    assert own.status().hosts[0].unhealthy == [W1]


def test_doctor_checks_the_fleet_s_store(fleet: FleetConfig) -> None:
    """Doctor: OK while the store answers, WARNING in a storm, CRITICAL when unreachable."""
    own = peer(fleet, "a")
    assert doctor.fleet_store(own).verdict == Verdict.OK
    peer(fleet, "b", W1)
    peer(fleet, "c", W1)
    stormy = doctor.fleet_store(own)
    assert stormy.verdict == Verdict.WARNING
    assert "2 of 3 hosts" in stormy.says
    lost = Fleet(FleetConfig(store=f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"), "a", 60)
    check = doctor.fleet_store(lost)
    assert check.verdict == Verdict.CRITICAL
    assert "s3cret-pw" not in check.says


def _status(tmp_path: Path, fleet: FleetConfig | None, *args: str,
            capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`healer fleet status` on a config with this [fleet] section: exit code and output."""
    config = tmp_path / "healer.toml"
    section = "" if fleet is None else (
        f'[fleet]\nstore = "{fleet.store}"\nname = "{fleet.name}"\nheartbeat_ttl = 6\n'
        "storm_min_hosts = 2\n")
    config.write_text(f'[units]\nworkers = ["{W1}"]\n{section}')
    code = cli.main(["--config", str(config), "fleet", "status", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_fleet_status_shows_hosts_budget_and_storm_with_documented_exit_codes(
        tmp_path: Path, fleet: FleetConfig, capsys: pytest.CaptureFixture[str]) -> None:
    """0 healthy; 1 in a storm; 2 without [fleet]; 3 when the store is unreachable, redacted."""
    peer(fleet, "a")
    code, said = _status(tmp_path, fleet, capsys=capsys)
    assert code == 0
    assert said.startswith(f"fleet {fleet.name}: OK")
    assert "budget 30 of 30" in said
    assert "\na    " in said
    peer(fleet, "b", W1)
    peer(fleet, "c", W1)
    code, said = _status(tmp_path, fleet, "--json", capsys=capsys)
    shown = json.loads(said)
    assert code == 1
    assert "2 of 3 hosts" in shown["storm"]
    assert sorted(h["host"] for h in shown["hosts"]) == ["a", "b", "c"]
    assert _status(tmp_path, None, capsys=capsys)[0] == 2
    lost = FleetConfig(store=f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0")
    code, said = _status(tmp_path, lost, capsys=capsys)
    assert code == 3
    assert "reading the fleet failed" in said
    assert "s3cret-pw" not in said


def test_a_host_whose_heartbeat_expired_is_stale(tmp_path: Path, fleet: FleetConfig,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A host gone quiet past its heartbeat's TTL is listed as stale, and status exits 1."""
    short = FleetConfig(store=fleet.store, name=fleet.name, heartbeat_ttl=1)
    peer(short, "gone")
    time.sleep(1.1)
    code, said = _status(tmp_path, fleet, capsys=capsys)
    assert code == 1
    assert "stale: gone" in said


def test_without_a_fleet_section_nothing_is_sent(tmp_path: Path) -> None:
    """No [fleet]: no store is built and the pass reports no fleet."""
    a = Harness(world(W1), tmp_path / "a", units=UnitsConfig(workers=[W1], broker=BROKER))
    assert compose.fleet(a.config, "a") is None
    assert a.run().fleet is None
    assert a.restarts() == 1
    assert Scenario.FLEET_STORM.value == "fleet_storm"
