"""Three real agents, each on its own sandbox, share one real redis-server as the fleet's store.

A bad deploy on every host at once (every worker crash-looping): alone, every host acts; as a
fleet, the storm guard holds them, one host escalates the storm, and once the deploy is fixed a
trial heals one host and the others follow, within the fleet's budget. One host's own failure
is healed as usual; with the store stopped the agents fall back to the local budget and say so,
and they rejoin when it is back.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

import pytest

from healer.doctor import AGENT
from sandbox.base import wait_until
from sandbox.stack import WORKER, CeleryStack, worker_command
from sandbox.store import RedisStore
from tests.conftest import audit_records
from tests.integration.conftest import Receiver

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any

pytestmark = pytest.mark.integration

LADDER = """rules:
  - name: restart
    match: {scenario: worker_down}
    ladder:
      - {action: restart_unit, verify: 2s, limit: {max: 3, within: 1h}}
      - {action: daemon_reload, verify: 2s, limit: {max: 1, within: 1h}}
      - {action: escalate}
"""
BUDGET = 8
COOLDOWN = 6  # [guard] breaker_cooldown: the storm's trials come this far apart


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[list[CeleryStack], RedisStore, Receiver]]:
    """Three sandboxes whose worker crashes at start while ``bad-deploy`` exists; the store."""
    with contextlib.ExitStack() as stack:
        hosts = [stack.enter_context(CeleryStack()) for _ in range(3)]
        for host in hosts:
            command = worker_command(sys.executable, "worker1@sandbox")
            host.write_worker(service="ExecStart=\nExecStart=/bin/sh -c 'test -e "
                              f"{host.root / 'bad-deploy'} && {{ sleep 1; exit 1; }}; "
                              f"exec {command}'\n")
            host.manager.reload()
            host.manager.systemctl("restart", WORKER)
            host.wait_worker_ready()
        store = stack.enter_context(RedisStore())
        receiver = stack.enter_context(Receiver().up())
        yield hosts, store, receiver


def run_agent(host: CeleryStack, phase: str, receiver: Receiver, fleet: str = "") -> Path:
    """(Re)start the host's agent on a config of this phase: its own state, audit log, [fleet]."""
    folder = host.root / phase
    (folder / "policies").mkdir(parents=True)
    (folder / "policies" / "p.yaml").write_text(LADDER)
    config = host.config(
        folder / "healer.toml",
        paths=f'state_dir = "{folder / "state"}"\naudit_log = "{folder / "audit.jsonl"}"\n'
              f'policies = "{folder / "policies"}"',
        agent="interval = 1",
        extra=f'[escalation]\nwebhook = "{receiver.url}"\nretry_after = 1\nattempts = 1\n\n'
              f"[guard]\nbreaker_cooldown = {COOLDOWN}\n\n{fleet}")
    host.manager.write_unit(AGENT, (
        f"[Service]\nType=notify\nNotifyAccess=main\n"
        f"ExecStart={sys.executable} -m healer --config {config} run\n"
        f"StandardError=append:{host.root / 'healer.log'}\n"))
    host.manager.reload()
    host.manager.systemctl("restart", AGENT)
    return folder / "audit.jsonl"


def fleet_section(store: RedisStore, name: str, index: int) -> str:
    """[fleet]: a storm is 2 hosts and more than half; the store's loss leaves 1 action/hour."""
    return (f'[fleet]\nstore = "{store.url}"\nname = "{name}"\nhost_id = "host{index}"\n'
            f"budget_per_hour = {BUDGET}\nfallback_budget_per_hour = 1\nstorm_share = 0.5\n"
            "storm_min_hosts = 2\nheartbeat_ttl = 5\n")


def records(log: Path, event: str) -> list[dict[str, Any]]:
    """The audit records of one event."""
    return [r for r in audit_records(log) if r["event"] == event]


def break_every_host(hosts: list[CeleryStack]) -> None:
    """The bad deploy lands everywhere at once and every worker dies: it cannot start again."""
    for host in hosts:
        (host.root / "bad-deploy").touch()
    for host in hosts:
        host.kill(WORKER)


def fix_every_host(hosts: list[CeleryStack]) -> None:
    """The deploy is fixed (the workers stay down until something starts them)."""
    for host in hosts:
        (host.root / "bad-deploy").unlink()


def outcomes(log: Path) -> list[str]:
    """How each step the host took ended."""
    return [r["outcome"] for r in records(log, "action_finished")]


def healed(log: Path) -> bool:
    """The host's worker_down incident was resolved."""
    return any(r["scenario"] == "worker_down" for r in records(log, "incident_resolved"))


def storm_alerts(receiver: Receiver) -> list[dict[str, Any]]:
    """The fleet storm's triggered notices the receiver got."""
    return [b for b in receiver.bodies
            if b.get("scenario") == "fleet_storm" and b.get("status") == "triggered"]


def test_a_fleet_holds_a_storm_escalates_it_once_and_heals_within_its_budget(
        fleet: tuple[list[CeleryStack], RedisStore, Receiver]) -> None:
    """Alone every host acts; as a fleet: at most the budget, one storm alert, all healed after."""
    hosts, store, receiver = fleet
    alone = [run_agent(h, "alone", receiver) for h in hosts]
    break_every_host(hosts)
    wait_until(lambda: all(records(log, "breaker_opened") for log in alone), 60,
               "every host alone to run out of its ladder")
    acted_alone = [len(records(log, "action_started")) for log in alone]
    assert all(acted_alone), acted_alone

    fix_every_host(hosts)
    for host in hosts:  # each agent alone left its worker failed: the fleet starts from running
        host.manager.systemctl("restart", WORKER)
        host.wait_worker_ready()
    logs = [run_agent(h, "fleet", receiver, fleet_section(store, "storm", i))
            for i, h in enumerate(hosts)]
    break_every_host(hosts)
    wait_until(lambda: bool(storm_alerts(receiver)), 60, "the storm's escalation")
    wait_until(lambda: all(any(r["outcome"] == "storm" for r in records(log, "decision"))
                           for log in logs), 30, "every host to hold its worker")
    held = sum(len(records(log, "action_started")) for log in logs)
    assert held < sum(acted_alone), (held, acted_alone)

    fix_every_host(hosts)
    wait_until(lambda: all(healed(log) for log in logs), 90, "every host to heal")
    assert all(host.active(WORKER) for host in hosts)
    actions = sum(len(records(log, "action_started")) for log in logs)
    assert actions <= BUDGET, actions
    assert len(storm_alerts(receiver)) == 1
    assert not [r for log in logs for r in records(log, "escalation")
                if r["scenario"] != "fleet_storm"]


def test_one_host_s_own_failure_is_healed_and_a_lost_store_falls_back_then_rejoins(
        fleet: tuple[list[CeleryStack], RedisStore, Receiver]) -> None:
    """A lone crash heals at once; store stopped: 1 action/hour, said; store back: rejoined."""
    hosts, store, receiver = fleet
    logs = [run_agent(h, "solo", receiver, fleet_section(store, "solo", i))
            for i, h in enumerate(hosts)]
    hosts[0].kill(WORKER)
    wait_until(lambda: healed(logs[0]), 30, "the lone host to heal")
    assert outcomes(logs[0]) == ["healed"]

    store.stop()
    host, log = hosts[1], logs[1]
    host.kill(WORKER)
    wait_until(lambda: outcomes(log) == ["healed"], 30, "the heal on the fallback budget")
    assert [r["outcome"] for r in records(log, "fleet_store")] == ["down"]
    wait_until(lambda: "fleet store unreachable" in host.manager.show(AGENT, "StatusText"), 10,
               "the agent's STATUS to say so")
    host.kill(WORKER)
    wait_until(lambda: any(r["outcome"] == "budget" and "fallback" in r["reason"]
                           for r in records(log, "decision")), 30, "the fallback budget")
    assert not host.active(WORKER)

    store.start()
    wait_until(lambda: outcomes(log) == ["healed", "healed"], 30, "the heal once the store is back")
    assert [r["outcome"] for r in records(log, "fleet_store")] == ["down", "up"]
    assert all(h.active(WORKER) for h in hosts)
