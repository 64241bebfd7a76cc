"""A fleet of AGENTS healer agents in one process, sharing one real redis-server as its store.

    .venv/bin/python -m benchmarks.fleet [AGENTS]

Each agent (default 200) is a real Pipeline from the composition root over its own fakes
(FakeSystemd with one worker and the broker unit, a clock, RecordingNotifier), state dir and
audit log; with [fleet] they share a budget of BUDGET actions an hour and a cool-down of
COOLDOWN real seconds (Redis times the heartbeats, the trial and the stand-down in real time;
the agents' clocks follow it, and a verify window costs nothing). Printed:

1. a healthy pass and a pass that restarts, with [fleet] and without, the same agents in the
   same run (target: coordination adds at most 5 ms to a pass on loopback);
2. every worker down at once and every restart crashing, round after round: actions against
   the budget, passes the storm held, escalations (one fleet_storm), then the same fault on
   agents without [fleet];
3. the fault gone: the trial after the cool-down, the stand-down, the hosts healed;
4. the store stopped: the passes fall back, how long they take, and rejoin it started again.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from msgspec.structs import replace

from healer import compose
from healer.config import Config, FleetConfig, GuardConfig, PathsConfig, UnitsConfig
from healer.notify.webhook import TRIGGERED
from healer.policy.models import Limit, Match, Rule, Step
from healer.testing import FakeSystemd, ManualClock, RecordingNotifier, unit
from healer.vocabulary import Scenario
from sandbox.store import RedisStore

if TYPE_CHECKING:
    from healer.model import PassReport, UnitState
    from healer.pipeline import Pipeline

WORKER, BROKER = "celery.service", "redis.service"
BUDGET, COOLDOWN, ROUNDS, REPEAT = 20, 5.0, 3, 3
RULE = Rule(name="restart", match=Match(scenario=Scenario.WORKER_DOWN),  # no local limit
            ladder=[Step(action="restart_unit", verify=5, limit=Limit(max=1000))])  # binds


class Clock(ManualClock):
    """A ManualClock that real time moves too: sleeping (a verify window) is instant."""

    def __init__(self) -> None:
        super().__init__(time.time())
        self._real = time.monotonic()

    def time(self) -> float:
        """Real time, plus what was slept or advanced."""
        return super().time() + time.monotonic() - self._real

    def monotonic(self) -> float:
        """Real monotonic time, plus what was slept or advanced."""
        return super().monotonic() + time.monotonic() - self._real


def svc(name: str, active: str = "active", result: str = "success") -> UnitState:
    """A unit with its cgroup memory known (so no PID is looked up on this host)."""
    return unit(name, active, result, memory_bytes=64 * 2**20, cpu_nsec=0)


def crashed(state: UnitState) -> UnitState:
    """What a worker whose process exits at once looks like after its restart."""
    return replace(state, active_state="failed", sub_state="failed", result="exit-code",
                   exec_main_status=1, main_pid=0)


class Agent:
    """One host: its fakes and folder, and its passes with a fleet or alone."""

    def __init__(self, root: Path, host: str) -> None:
        self.root, self.host = root, host
        self.fake = FakeSystemd(svc(WORKER), svc(BROKER))
        self.clock, self.notifier = Clock(), RecordingNotifier()

    def pipeline(self, fleet: FleetConfig | None) -> Pipeline:
        """A pass wired as the CLI wires it, over this host's fakes."""
        config = Config(units=UnitsConfig(workers=[WORKER], broker=BROKER), fleet=fleet,
                        guard=GuardConfig(breaker_cooldown=COOLDOWN, budget_per_hour=10_000),
                        paths=PathsConfig(state_dir=self.root / "state",
                                          audit_log=self.root / "audit.jsonl"))
        world = compose.World(systemd=self.fake, broker=None, celery=None, clock=self.clock,
                              notifier=self.notifier, host=self.host,
                              process_state=lambda _pid, _group: None,
                              fleet=compose.fleet(config, self.host))
        return compose.pipeline(config, world, [RULE])

    def fail(self, crash: bool = False) -> None:
        """The worker killed; with ``crash``, its restarts crash too, else they heal."""
        self.fake.units[WORKER] = svc(WORKER, "failed", "signal")
        self.fake.outcomes = {WORKER: crashed} if crash else {}


def timed(pipeline: Pipeline) -> tuple[PassReport, float]:
    """One pass, and its seconds."""
    start = time.perf_counter()
    return pipeline.run_once(), time.perf_counter() - start


def show(name: str, agents: list[Agent], pipelines: list[Pipeline]) -> None:
    """One round of passes: restarts so far, hosts up, the actions' outcomes, the store."""
    passes = [timed(p) for p in pipelines]
    outcomes = Counter(str(a.outcome) for r, _ in passes for a in r.actions)
    restarts = sum(verb == "restart" for a in agents for verb, _ in a.fake.calls)
    up = sum(a.fake.units[WORKER].active_state == "active" for a in agents)
    reached = sum(bool(r.fleet and r.fleet.reachable) for r, _ in passes)
    pace = statistics.median(s for _, s in passes) * 1000
    print(f"  {name:<20} {restarts:3} restarts so far, {up:3} up, {pace:5.1f} ms/pass, store "
          f"reached {reached:3}: {dict(sorted(outcomes.items()))}")
    if (fleet := pipelines[0].fleet) and reached:
        status = fleet.status()
        print(f"  {'':<20} budget left {status.budget_left}, lease {status.lease}, stood down "
              f"{status.stood_down}, storm: {status.storm}")


def alerts(agents: list[Agent]) -> str:
    """The notices sent since the last call, fleet_storm's apart; the fakes' calls cleared."""
    sent = Counter((a.status == TRIGGERED, a.scenario == Scenario.FLEET_STORM)
                   for agent in agents for a in agent.notifier.sent)
    for agent in agents:
        agent.notifier.sent.clear()
        agent.fake.calls.clear()
    return (f"  escalations: {sent[True, True]} fleet_storm, {sent[True, False]} others; "
            f"resolved: {sent[False, True]} fleet_storm, {sent[False, False]} others")


def costs(agents: list[Agent], fleet: list[Pipeline], alone: list[Pipeline], store: str
          ) -> None:
    """Phase 1: the median pass, healthy and acting, with [fleet] and alone."""
    spare = [a.pipeline(FleetConfig(store=store, name="spare", budget_per_hour=100_000)) for a
             in agents]  # passes that act, in a fleet of their own: the bench's budget is kept
    times: dict[str, list[float]] = {k: [] for k in ("fleet", "alone", "fleet act", "alone act")}
    for agent, with_, spared, without in zip(agents, fleet, spare, alone, strict=True):
        for pipeline in (with_, spared, without):
            pipeline.run_once()
        for _ in range(REPEAT):
            times["fleet"].append(timed(with_)[1])
            times["alone"].append(timed(without)[1])
        for _ in range(REPEAT):
            for name, acting in (("fleet act", spared), ("alone act", without)):
                agent.fail()
                times[name].append(timed(acting)[1])
                if agent.fake.units[WORKER].active_state != "active":
                    raise RuntimeError(f"{agent.host}: the restart did not heal")
            spared.run_once()  # its heartbeat healthy again
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"1. median pass of {len(agents)} agents, ms (target: coordination adds at most 5)")
    for kind, what in (("", "healthy"), (" act", "restarting")):
        print(f"  {what:<11} with [fleet] {med['fleet' + kind]:6.2f}  alone "
              f"{med['alone' + kind]:6.2f}  coordination adds "
              f"{med['fleet' + kind] - med['alone' + kind]:+6.2f}")
    alerts(agents)


def storm(agents: list[Agent], fleet: list[Pipeline], baseline: list[Agent]) -> None:
    """Phase 2: the fault on every host at once; the same on ``baseline``, without [fleet]."""
    print(f"2. every worker down, every restart crashing; fleet budget {BUDGET} an hour")
    for agent in agents:
        agent.clock.advance(3600)  # an hour later: phase 1's restarts are out of every window
    for pipeline in fleet:
        pipeline.run_once()  # every heartbeat fresh and healthy
    for agent in agents:
        agent.fail(crash=True)
    for n in range(ROUNDS):
        show(f"round {n + 1}", agents, fleet)
    print(alerts(agents))
    for agent in baseline:
        agent.fail(crash=True)
    alone = [a.pipeline(None) for a in baseline]
    for n in range(ROUNDS):
        show(f"without [fleet] {n + 1}", baseline, alone)
    print(alerts(baseline))


def heal(agents: list[Agent], fleet: list[Pipeline], store: str) -> None:
    """Phase 3: the fault gone; the trial, the stand-down, the hosts healed within budget."""
    print(f"3. the fault gone: restarts heal again; a cool-down is {COOLDOWN:g} s")
    for agent in agents:
        agent.fake.outcomes.clear()
    time.sleep(COOLDOWN)
    show("after a cool-down", agents, fleet)
    with redis.Redis.from_url(store) as client:  # the key of limits' moving window
        client.delete(*client.scan_iter("healer:fleet:LIMITER/bench/*"))
    print("  (an hour later, as by default a cool-down is: the budget's window cleared)")
    for n, wait in enumerate((COOLDOWN, 0, COOLDOWN)):
        time.sleep(wait)
        show(f"{'after a cool-down' if wait else 'at once'} {n + 2}", agents, fleet)
    print(alerts(agents))


def fallback(agents: list[Agent], fleet: list[Pipeline], store: RedisStore) -> None:
    """Phase 4: the store stopped, then started again."""
    print("4. the store stopped (connections refused)")
    store.stop()
    show("store down", agents, fleet)
    show("store down, again", agents, fleet)
    store.start()
    show("store started again", agents, fleet)
    print(alerts(agents))


def main(count: int) -> None:
    """Start the store, build the agents, run the phases."""
    with RedisStore() as store, tempfile.TemporaryDirectory(prefix="healer-fleet-") as tmp:
        agents = [Agent(Path(tmp) / str(i), f"host-{i:03d}") for i in range(count)]
        config = FleetConfig(store=store.url, name="bench", budget_per_hour=BUDGET,
                             fallback_budget_per_hour=3, storm_share=0.5, storm_min_hosts=3,
                             heartbeat_ttl=30)
        fleet = [a.pipeline(config) for a in agents]
        costs(agents, fleet, [a.pipeline(None) for a in agents], store.url)
        storm(agents, fleet, [Agent(a.root / "alone", a.host) for a in agents])
        heal(agents, fleet, store.url)
        fallback(agents, fleet, store)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
