"""The composition root: the one place where healer's parts are wired together.

``pipeline(config, world, rules)`` builds a pass from the configuration and the boundary. The
command line hands it the real boundary (``real_world``: D-Bus, the broker's probe, Celery's
control API, the webhook, the system clock); tests hand it fakes behind the same interfaces.
Nothing else constructs a Pipeline.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from healer.audit import anchor
from healer.audit.log import AuditLog
from healer.controls import Controls
from healer.errors import ConfigError
from healer.executor.executor import Executor
from healer.guard.guard import Guard
from healer.model import Thresholds
from healer.notify.escalator import Escalator
from healer.notify.webhook import ALERTMANAGER, Tiers, Webhook
from healer.pipeline import Pipeline
from healer.policy.engine import PolicyEngine
from healer.policy.loader import load_policies
from healer.probes import process
from healer.probes.broker import broker_probe
from healer.probes.celery import ControlProbe
from healer.probes.liveness import Liveness
from healer.probes.prober import Prober
from healer.redact import Redactor
from healer.state import StateStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from healer.clock import Clock
    from healer.config import Config
    from healer.doctor import Check
    from healer.drill import Drill
    from healer.fleet import Fleet
    from healer.notify.escalator import Notifier
    from healer.policy.models import Rule
    from healer.probes.broker import BrokerProbe
    from healer.probes.celery import CeleryProbe
    from healer.probes.events import CeleryEvents
    from healer.systemd import Systemd


def new_id() -> str:
    """A short random incident id."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class World:
    """The boundary a pass talks to, and where its time and incident ids come from."""

    systemd: Systemd
    broker: BrokerProbe | None
    celery: CeleryProbe | None
    notifier: Notifier | None
    clock: Clock
    new_id: Callable[[], str] = new_id
    host: str = field(default_factory=socket.gethostname)
    events: CeleryEvents | None = None
    fleet: Fleet | None = None  # the fleet's store, with [fleet]
    process_state: Callable[[int, str], str | None] = process.node_state  # /proc state letter


def real_world(config: Config, clock: Clock, events: CeleryEvents | None = None) -> World:
    """The real boundary for a config; connects to nothing yet (D-Bus connects on first use)."""
    from healer.systemd.dbus_backend import DBusSystemd  # noqa: PLC0415 - GLib loads on use

    broker = broker_probe(config.celery.broker_url, config.celery.broker_timeout, clock)
    hook = config.escalation
    tiers = Tiers(tuple(Webhook(t.webhook, t.format, t.routing_key, hook.timeout, hook.attempts,
                                clock.sleep) for t in hook.all_tiers()))
    host = socket.gethostname()
    return World(systemd=DBusSystemd(config.systemd.bus, clock), broker=broker,
                 celery=control(config, clock),
                 notifier=tiers if tiers.webhooks else None, clock=clock, host=host,
                 events=events, fleet=fleet(config, host))


def fleet(config: Config, host: str) -> Fleet | None:
    """The host's connection to the fleet's store (connects on first use); None alone."""
    if config.fleet is None:
        return None
    from healer.fleet import Fleet  # noqa: PLC0415 - limits loads only for a fleet

    return Fleet(config.fleet, host, config.guard.breaker_cooldown)


def control(config: Config, clock: Clock) -> ControlProbe:
    """The workers' control API over the broker (connects on first use)."""
    return ControlProbe(config.celery.broker_url, config.celery.ping_timeout, clock)


def redactor(config: Config) -> Redactor:
    """The redaction for a config: the patterns, the broker's and webhook's secrets, the key."""
    tiers = config.escalation.all_tiers()
    store = config.fleet.store if config.fleet else None
    return Redactor.knowing(urls=(config.celery.broker_url, store, *(t.webhook for t in tiers)),
                            secrets=tuple(t.routing_key for t in tiers))


def rules(config: Config, source: Path) -> list[Rule]:
    """The policy rules the config points at; errors name the file, and the config key."""
    try:
        return load_policies(config.paths.policies)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (paths.policies in {source})") from exc


def thresholds(config: Config) -> Thresholds:
    """The thresholds of the config, in the form detectors read them."""
    t = config.thresholds
    return Thresholds(
        queue_backlog=t.queue_backlog, memory_bytes=int(t.memory_mb * 2**20),
        task_failures=t.task_failures, retry_loop=t.retry_loop,
        not_consuming_after=t.not_consuming_after, startup_grace=t.startup_grace,
        silence_window=t.silence_window, silence_probes=t.silence_probes,
        cpu_percent=t.cpu_percent, cpu_sustained=t.cpu_sustained,
        beat_max_silence=config.beat.max_silence, task_window=t.task_window,
        critical_tasks=tuple(config.tasks.critical), stalled_after=config.tasks.stalled_after,
        task_time_limit=t.task_time_limit, task_limits=dict(config.task_limits),
    )


def pipeline(config: Config, world: World, policy: list[Rule]) -> Pipeline:
    """The pass for a config over a boundary, with these policy rules."""
    allowed = frozenset(config.units.all())
    clock = world.clock
    audit = audit_log(config, clock)
    return Pipeline(
        prober=Prober(world.systemd, world.broker, world.celery, config, clock, world.events,
                      world.process_state),
        policy=PolicyEngine(policy),
        guard=Guard(allowed, config.guard),
        executor=Executor(world.systemd, allowed, clock,
                          checks=Liveness(world.systemd, world.broker, world.celery, config),
                          schedule_file=config.beat.schedule_file,
                          workers=tuple(config.units.workers)),
        escalator=Escalator(world.notifier, audit, clock, world.host, redactor(config),
                            config.escalation.expire_after, config.escalation.retry_after),
        audit=audit,
        store=StateStore(config.paths.state_dir),
        clock=clock,
        tiers=tuple(float(t.after or 0) for t in config.escalation.all_tiers()),
        resending=frozenset(i for i, t in enumerate(config.escalation.all_tiers())
                            if t.format == ALERTMANAGER),
        new_id=world.new_id,
        thresholds=thresholds(config),
        broker_unit=config.units.broker,
        fleet=world.fleet,
    )


def audit_log(config: Config, clock: Clock) -> AuditLog:
    """The audit log, with its anchor in the state dir."""
    return AuditLog(config.paths.audit_log, clock, anchor=config.paths.state_dir / anchor.NAME,
                    redactor=redactor(config))


def controls(config: Config, clock: Clock) -> Controls:
    """Pause and resume need only the state store and the audit log."""
    return Controls(StateStore(config.paths.state_dir), audit_log(config, clock),
                    clock)


def doctor(config: Config, rules: list[Rule], clock: Clock) -> list[Check]:
    """``healer doctor``'s checks over the real systemd and broker."""
    from healer.doctor import examine  # noqa: PLC0415 - only the doctor command needs it
    from healer.systemd.dbus_backend import DBusSystemd  # noqa: PLC0415 - GLib loads on use

    return examine(config, DBusSystemd(config.systemd.bus, clock), control(config, clock), rules,
                   fleet(config, socket.gethostname()))


def drill(config: Config, rules: list[Rule], clock: Clock, say: Callable[[str], None]
          ) -> Drill:
    """``healer drill`` on the real host: its pass, systemd and the workers' control API."""
    from healer.drill import Drill  # noqa: PLC0415 - only the drill command needs it

    probe = control(config, clock)  # the drill's commands and its passes share one connection
    world = replace(real_world(config, clock), celery=probe)
    return Drill(config, world.systemd, probe, pipeline(config, world, rules), clock, say)

