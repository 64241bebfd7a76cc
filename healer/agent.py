"""The unattended agent: the pass of run-once in a loop, as a systemd Type=notify service.

- READY=1 once the first configuration is loaded; STATUS= the last pass's summary;
  WATCHDOG=1 at half of $WATCHDOG_USEC from a thread, only while the loop makes progress (a
  hung loop stops the pings and systemd restarts the service).
- SIGTERM or SIGINT: finish the pass (and the action) in flight, then exit 0.
- SIGHUP: reload configuration and policies; when the new ones are invalid, keep the last good
  ones and say so.
- Events: between passes it follows systemd's state changes of the units it reads
  (``[agent] events``), and a change starts a pass at once, debounced so that one crash makes
  one pass (the changes of units the pass itself acted on are its own doing). When the
  subscription is lost it says so (log, STATUS=, ``healer_events_subscribed``), polls at the
  interval, and the next pass's reads subscribe again.
- A pass that fails (no D-Bus, a probe, anything) is recorded and retried next interval; the
  agent never dies of one bad pass.
- What it says of an error, in its log and in STATUS=, is redacted with the current config's
  redaction (``healer.redact``).

``serve`` is the agent's whole lifecycle: its runtime (the config, the pipeline built from it,
Celery's event listener), the metrics endpoint, the log, then the loop.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from healer import compose
from healer.config import load_config
from healer.errors import HealerError
from healer.probes.events import CeleryEvents
from healer.redact import Redactor
from healer.wait import until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import FrameType

    from healer.clock import Clock
    from healer.config import Config
    from healer.metrics import Metrics
    from healer.model import PassReport
    from healer.pipeline import Pipeline
    from healer.systemd.notify import SdNotify

STALL = 600.0  # a loop without progress for this long is hung: the watchdog stops pinging
NAP = 0.1
DEBOUNCE = 0.1  # after a change, the follow-up signals of the same transition
LOST_NOTE = "events lost, polling | "


@dataclass(frozen=True)
class Loop:
    """What the agent runs: the pass, how often, and the state changes that start one early."""

    pipeline: Pipeline
    interval: float
    jitter: float
    changes: Callable[[], set[str] | None] | None = None  # None: polling only


def summary(report: PassReport) -> str:
    """One line for STATUS=."""
    acted = [f"{a.action} {a.unit}: {a.outcome}" for a in report.actions if a.action]
    wrong = [f"{f.scenario.value} {f.unit or ''}".strip() for f in report.remaining]
    wrong += [f"{probe} probe failed" for probe in report.probe_errors]
    state = "unhealthy: " + ", ".join(wrong) if wrong else "healthy"
    unwatched = [f"not watching {', '.join(report.unwatched)}"] if report.unwatched else []
    fleet = report.fleet
    lost = [f"fleet store unreachable: local budget of {fleet.budget_per_hour} per hour"
            ] if fleet and not fleet.reachable else []
    return "; ".join(lost + [state, *acted][:4] + unwatched)


@dataclass
class Agent:
    """Runs passes until told to stop. ``load`` builds a pipeline from the configuration."""

    load: Callable[[], Loop]
    clock: Clock
    notify: SdNotify
    metrics: Metrics
    log: Any  # a structlog bound logger
    watchdog: float | None
    after_pass: Callable[[], None] = lambda: None
    redact: Callable[[str], str] = field(default=Redactor().text)  # serve's follows reloads
    rng: random.Random = field(default_factory=random.Random)  # jitter, not secrets
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _reload: threading.Event = field(default_factory=threading.Event, init=False)
    _progress: float = field(default=0.0, init=False)
    _note: str = field(default="", init=False)  # kept in STATUS until a reload succeeds
    _subscribed: bool = field(default=True, init=False)
    _unwatched: dict[str, str] = field(default_factory=dict, init=False)  # as last logged

    def __post_init__(self) -> None:
        self._progress = self.clock.monotonic()

    def _on_signal(self, number: int, _frame: FrameType | None) -> None:
        if number == signal.SIGHUP:
            self._reload.set()
        else:
            self._stop.set()

    def _ping(self) -> None:
        assert self.watchdog is not None
        while not self._stop.wait(self.watchdog):
            if self.clock.monotonic() - self._progress < max(STALL, 4 * self.watchdog):
                self.notify.send(WATCHDOG="1")

    def run(self) -> int:
        """Until SIGTERM: reload when asked, run a pass, sleep the interval (with jitter)."""
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, self._on_signal)
        loop = self.load()
        self.notify.send(READY="1", STATUS="started; first pass running")
        self.log.info("agent_started", interval=loop.interval, events=loop.changes is not None)
        self.metrics.events.set(loop.changes is not None)
        if self.watchdog:
            threading.Thread(target=self._ping, name="watchdog", daemon=True).start()
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                loop = self._reloaded(loop)
            acted = self._pass(loop.pipeline)
            self._sleep(loop, acted)
        self.notify.send(STOPPING="1", STATUS="stopping")
        self.log.info("agent_stopped")
        return 0

    def _reloaded(self, loop: Loop) -> Loop:
        try:
            loaded = self.load()
        except HealerError as exc:
            error = self._error("reload_failed", exc)
            self._note = f"reload failed, running on the previous config: {error} | "
            self.notify.send(STATUS=self._note.rstrip(" |"))
            return loop
        self._note = "" if self._subscribed else LOST_NOTE
        self.log.info("reloaded")
        return loaded

    def _pass(self, pipeline: Pipeline) -> set[str]:
        """One pass, reported; the units it acted on."""
        start = self.clock.monotonic()
        acted: set[str] = set()
        try:
            report = pipeline.run_once()
        except Exception as exc:  # one bad pass must not kill the agent
            reason = type(exc).__name__
            self.metrics.failed(reason)
            error = self._error("pass_failed", exc, kind=reason)
            self.notify.send(STATUS=f"{self._note}last pass failed: {error}")
        else:
            self.metrics.observe(report, self.clock.monotonic() - start, self.clock.time())
            said = summary(report)
            self.notify.send(STATUS=self._note + said)
            if report.actions or not report.healthy:
                self.log.info("pass", summary=said)
            if report.unwatched != self._unwatched:  # said once, and again when it changes
                self._unwatched = dict(report.unwatched)
                self.log.warning("unwatched", scenarios=report.unwatched)
            acted = {a.unit for a in report.actions if a.action and a.unit}
        self._progress = self.clock.monotonic()
        try:
            self.after_pass()
        except Exception as exc:  # e.g. the metrics textfile's folder is gone
            self.metrics.failed("after_pass")
            self._error("after_pass_failed", exc)
        return acted

    def _error(self, event: str, exc: Exception, **fields: str) -> str:
        """Log an error, redacted; what it says is returned for STATUS=."""
        error = self.redact(str(exc))
        self.log.error(event, error=error, **fields)
        return error

    def _sleep(self, loop: Loop, acted: set[str]) -> None:
        """Sleep the interval in naps, waking early for a stop, a reload or a state change.

        What changed while the pass ran counts too, but not the units it acted on itself.
        """
        seconds = loop.interval * (1 + self.rng.uniform(-loop.jitter, loop.jitter))
        early = self._changed(loop, ignore=acted)

        def woken() -> bool | None:
            self._progress = self.clock.monotonic()
            return self._stop.is_set() or self._reload.is_set() or self._changed(loop) or None

        if not early:
            until(woken, seconds, self.clock, NAP)

    def _changed(self, loop: Loop, ignore: set[str] | frozenset[str] = frozenset()) -> bool:
        """Whether a unit changed state (then the follow-up signals are let in first)."""
        if loop.changes is None:
            return False
        changed = loop.changes()
        if (changed is None) == self._subscribed:  # lost, or back
            self._subscribed = changed is not None
            self.metrics.events.set(self._subscribed)
            if self._subscribed:
                self.log.info("events_resubscribed")
                self._note = self._note.replace(LOST_NOTE, "")
            else:
                self.log.warning("events_lost", polling_every=loop.interval)
                self._note = LOST_NOTE + self._note
                self.notify.send(STATUS=self._note.rstrip(" |"))
        news = (changed or set()) - ignore
        if not news:
            return False
        self.log.info("state_changed", units=sorted(news))
        self._stop.wait(DEBOUNCE)
        loop.changes()
        return True


class Runtime:
    """What the agent runs on: the config, the pipeline built from it, its event listeners.

    The first load uses the config the command line already read; each later one (SIGHUP)
    reads the file again, and only once the new pipeline is built are the old listeners
    stopped and the new ones started (an invalid config leaves everything as it was).
    """

    def __init__(self, config: Config, source: Path, clock: Clock, metrics: Metrics) -> None:
        self.config = config
        self._source = source
        self.clock = clock
        self.metrics = metrics
        self._fresh = True
        self._listeners: list[CeleryEvents] = []

    def load(self) -> Loop:
        """The pipeline, interval, jitter and state changes of the current config file."""
        config = self.config if self._fresh else load_config(self._source)
        self._fresh = False
        events = CeleryEvents(config.celery.broker_url, self.clock) \
            if config.celery.task_events or config.agent.events else None
        world = compose.real_world(config, self.clock, events)
        pipeline = compose.pipeline(config, world, compose.rules(config, self._source))
        for old in self._listeners:
            old.stop()
        self._listeners = [events] if events else []
        for listener in self._listeners:
            listener.start()
        self.config = config
        return Loop(pipeline, config.agent.interval, config.agent.jitter,
                    world.systemd.changes if config.agent.events else None)

    def redact(self, text: str) -> str:
        """The text as the current config's redaction shows it."""
        return compose.redactor(self.config).text(text)

    def after_pass(self) -> None:
        """Write the metrics textfile, when one is configured."""
        if self.config.agent.metrics_textfile is not None:
            self.metrics.write(self.config.agent.metrics_textfile)


def serve(config: Config, source: Path, clock: Clock) -> int:
    """Run the agent on this config until SIGTERM; a bad config at start raises (exit 2)."""
    import prometheus_client  # noqa: PLC0415 - only the agent serves metrics
    import structlog  # noqa: PLC0415

    from healer.metrics import Metrics  # noqa: PLC0415
    from healer.systemd.notify import SdNotify, watchdog_interval  # noqa: PLC0415

    metrics = Metrics()
    runtime = Runtime(config, source, clock, metrics)
    log = structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.JSONRenderer()],
    )
    if config.agent.metrics_listen:
        host, _, port = config.agent.metrics_listen.rpartition(":")
        prometheus_client.start_http_server(int(port), host, registry=metrics.registry)
    return Agent(runtime.load, clock, SdNotify(), metrics, log, watchdog_interval(),
                 runtime.after_pass, redact=runtime.redact).run()
