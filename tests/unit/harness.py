"""Whole passes over fakes, wired by the composition root the CLI uses.

FakeSystemd, ManualClock, fake broker and Celery probes and a recording notifier stand in for
the world; the audit log and the state store are real, in a temporary folder.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from msgspec.structs import replace

from healer import compose
from healer.config import (
    CeleryConfig,
    Config,
    EscalationConfig,
    FleetConfig,
    GuardConfig,
    PathsConfig,
    UnitsConfig,
)
from healer.policy.models import Limit, Match, Rule, Step
from healer.state import StateStore
from healer.testing import FakeBroker, FakeSystemd, ManualClock, RecordingNotifier, unit
from healer.vocabulary import Scenario
from tests.conftest import audit_records

if TYPE_CHECKING:
    from pathlib import Path

    from healer.controls import Controls
    from healer.model import PassReport, UnitState
    from healer.pipeline import Pipeline
    from healer.probes.broker import BrokerProbe
    from healer.probes.celery import CeleryProbe


W1 = "celery-w1.service"
W2 = "celery-w2.service"
W3 = "celery-w3.service"
BROKER = "redis.service"
BROKER_URL = "redis://127.0.0.1:6379/0"
NODES = ["w1@app", "w2@app", "w3@app"]


@dataclass
class Harness:
    """Three workers and a broker in [units]; pipelines wired as the CLI wires them."""

    fake: FakeSystemd
    root: Path
    rules: list[Rule] = field(default_factory=lambda: [restart_rule()])
    clock: ManualClock = field(default_factory=ManualClock)
    units: UnitsConfig = field(
        default_factory=lambda: UnitsConfig(workers=[W1, W2, W3], broker=BROKER)
    )
    guard: GuardConfig = field(default_factory=GuardConfig)
    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    notifier: RecordingNotifier | None = field(default_factory=RecordingNotifier)
    broker: BrokerProbe | None = None
    celery: CeleryProbe | None = None
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    processes: dict[int, str] = field(default_factory=dict)  # /proc state by pid (none: unread)
    fleet: FleetConfig | None = None
    host: str = "host"

    @property
    def audit_path(self) -> Path:
        """Where the audit log is written."""
        return self.root / "log" / "audit.jsonl"

    @property
    def store(self) -> StateStore:
        """The state store under root."""
        return StateStore(self.root / "state")

    def new_id(self) -> str:
        """Incident ids from a counter: inc-1, inc-2, ..."""
        return f"inc-{next(self.ids)}"

    @property
    def config(self) -> Config:
        """The config the pipeline is built from: these units, guard and paths under root."""
        return Config(units=self.units, celery=CeleryConfig(nodes=NODES), guard=self.guard,
                      escalation=self.escalation, fleet=self.fleet,
                      paths=PathsConfig(state_dir=self.root / "state",
                                        audit_log=self.audit_path))

    def world(self) -> compose.World:
        """The fakes, as the boundary of the composition root."""
        return compose.World(systemd=self.fake, broker=self.broker, celery=self.celery,
                             process_state=lambda pid, _group: self.processes.get(pid),
                             notifier=self.notifier, clock=self.clock, new_id=self.new_id,
                             host=self.host,
                             fleet=compose.fleet(self.config, self.host))

    def pipeline(self) -> Pipeline:
        """A fresh Pipeline over the fakes, from the composition root the CLI uses."""
        return compose.pipeline(self.config, self.world(), self.rules)

    def run(self, dry_run: bool = False) -> PassReport:
        """One pass with a new Pipeline."""
        return self.pipeline().run_once(dry_run=dry_run)

    def events(self) -> list[str]:
        """The event names of the audit records, in order."""
        return [r["event"] for r in self.audit()]

    def restarts(self) -> int:
        """How many restart jobs were queued on the fake."""
        return sum(1 for verb, _ in self.fake.calls if verb == "restart")

    def controls(self) -> Controls:
        """Pause and resume over the same state store and audit log."""
        return compose.controls(self.config, self.clock)

    def audit(self, event: str | None = None) -> list[dict[str, Any]]:
        """The audit records written so far (only those of ``event`` when given)."""
        return [r for r in audit_records(self.audit_path) if event is None or r["event"] == event]

    def sent(self) -> list[str]:
        """The unit of every alert the notifier delivered."""
        assert self.notifier is not None
        return [alert.unit or "-" for alert in self.notifier.sent]

    def at(self, when: float) -> None:
        """Move the clock to an absolute time."""
        self.clock.advance(when - self.clock.time())


def svc(name: str, active: str = "active", result: str = "success", **kw: object
        ) -> UnitState:
    """A unit with its cgroup memory known (so no PID is looked up on this host)."""
    return unit(name, active, result, **{"memory_bytes": 64 * 2**20, "cpu_nsec": 0, **kw})


def world(*failed: str) -> FakeSystemd:
    """Three workers and the broker, the named units failed (killed by a signal)."""
    return FakeSystemd(*(svc(n, "failed", "signal") if n in failed else svc(n)
                         for n in (W1, W2, W3, BROKER)))


def crashed(state: UnitState) -> UnitState:
    """What a worker whose process exits at once looks like after its restart."""
    return replace(state, active_state="failed", sub_state="failed", result="exit-code",
                   exec_main_status=1, main_pid=0)


def restart_rule(limit: Limit | None = None, unit_name: str | None = None,
                 backoff: float = 0.0) -> Rule:
    """A worker_down rule with one restart step (on ``unit_name`` when given)."""
    step = Step(action="restart_unit", unit=unit_name, verify=5, limit=limit or Limit(),
                backoff=backoff)
    return Rule(name="test-restart", match=Match(scenario=Scenario.WORKER_DOWN), ladder=[step])


def broker_rule() -> Rule:
    """A broker_unreachable rule restarting the broker."""
    return Rule(name="test-broker", match=Match(scenario=Scenario.BROKER_UNREACHABLE),
                ladder=[Step(action="restart_broker", verify=5)])


def broker_down(fake: FakeSystemd) -> FakeBroker:
    """An unreachable broker that answers again once its unit is restarted."""
    broker = FakeBroker(BROKER_URL, reachable=False)
    fake.outcomes[BROKER] = broker.restarted
    return broker


def outcomes(report: PassReport) -> list[tuple[str | None, str]]:
    """(unit, outcome) of every action of a report."""
    return [(a.unit, a.outcome) for a in report.actions]
