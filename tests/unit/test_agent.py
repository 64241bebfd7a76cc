"""The agent loop: sd_notify messages, signals, reloads, failed passes and metrics."""

from __future__ import annotations

import os
import random
import signal
import socket
from typing import TYPE_CHECKING, Any, cast

import pytest
import structlog
from msgspec.structs import replace
from structlog.testing import capture_logs

from healer import __version__
from healer.agent import Agent, Loop, summary
from healer.errors import ConfigError, ProbeError
from healer.metrics import Metrics
from healer.model import ActionReport, Finding, PassReport
from healer.redact import Redactor
from healer.systemd.notify import SdNotify, watchdog_interval
from healer.testing import ManualClock
from healer.vocabulary import FindingKey, Outcome, Scenario, Severity

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, MutableMapping
    from pathlib import Path

    from healer.pipeline import Pipeline

W1, W2 = "celery-w1.service", "celery-w2.service"
HEALTHY = PassReport(findings=(), actions=(), remaining=())


def finding(scenario: Scenario = Scenario.WORKER_DOWN, unit: str | None = W1) -> Finding:
    """A finding about ``unit``."""
    return Finding(scenario=scenario, severity=Severity.HIGH, unit=unit, summary="down",
                   evidence={})


def act(action: str | None, outcome: str, unit: str | None = W1) -> ActionReport:
    """What a step did about worker_down on ``unit``."""
    return ActionReport.about(finding(unit=unit), unit, action, Outcome(outcome), "detail")


def report(*actions: ActionReport, remaining: tuple[Finding, ...] = (),
           breakers: tuple[FindingKey, ...] = ()) -> PassReport:
    """A pass that found worker_down on W1 and did ``actions``."""
    return PassReport(findings=(finding(),), actions=actions, remaining=remaining,
                      breakers=breakers)


class Listener:
    """systemd's side of $NOTIFY_SOCKET: a datagram socket, and the timeline it saw."""

    def __init__(self, path: Path) -> None:
        assert len(str(path)) < 100, "tmp_path too long for an AF_UNIX address"
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.timeline: list[str] = []

    def drain(self) -> None:
        """Move every datagram waiting into the timeline."""
        try:
            while True:
                self.timeline.append(self.sock.recv(4096, socket.MSG_DONTWAIT).decode())
        except BlockingIOError:
            return

    def mark(self, text: str) -> None:
        """Note a pass in the timeline, after what was sent before it."""
        self.drain()
        self.timeline.append(text)

    def statuses(self) -> list[str]:
        """The STATUS= values, in order."""
        self.drain()
        return [field[len("STATUS="):] for message in self.timeline
                for field in message.split("\n") if field.startswith("STATUS=")]

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


class FakePipeline:
    """Hands out scripted pass reports, or raises scripted errors, and notes each pass."""

    def __init__(self, name: str, listener: Listener, clock: ManualClock,
                 script: list[PassReport | Exception]) -> None:
        self.name = name
        self.listener = listener
        self.clock = clock
        self.script = list(script)
        self.times: list[float] = []

    def run_once(self, dry_run: bool = False) -> PassReport:  # noqa: ARG002
        """The next scripted report (or error)."""
        self.times.append(self.clock.time())
        self.listener.mark(f"<{self.name} {len(self.times)}>")
        item = self.script.pop(0) if self.script else HEALTHY
        if isinstance(item, Exception):
            raise item
        return item


class Rig:
    """An Agent over a ManualClock, fake pipelines, real Metrics and a real notify socket.

    ``loads`` is what the load function returns (or raises) on each call. After pass N the
    hook of N runs (if any); after pass ``stop_after`` the agent gets SIGTERM's handler call.
    """

    def __init__(self, listener: Listener, loads: list[FakePipeline | Exception],
                 stop_after: int, interval: float = 1.0, jitter: float = 0.0,
                 clock: ManualClock | None = None,
                 changes: list[set[str] | None] | None = None) -> None:
        self.listener = listener
        self.changed = changes  # what each call of changes() says in turn (then: nothing)
        self.clock = clock or ManualClock()
        self.loads = list(loads)
        self.stop_after = stop_after
        self.interval, self.jitter = interval, jitter
        self.hooks: dict[int, Callable[[Agent], None]] = {}
        self.passes = 0
        self.metrics = Metrics()
        self.agent = Agent(self.load, self.clock, SdNotify(str(listener.path)), self.metrics,
                           structlog.get_logger(), None, after_pass=self.after_pass,
                           rng=random.Random(7))  # noqa: S311 - jitter, not secrets
        self.logs: list[MutableMapping[str, Any]] = []

    def load(self) -> Loop:
        """The next scripted load."""
        item = self.loads.pop(0)
        if isinstance(item, Exception):
            raise item
        return Loop(cast("Pipeline", item), self.interval, self.jitter,
                    None if self.changed is None else self.changes)

    def changes(self) -> set[str] | None:
        """The next scripted answer, as the systemd backend's would be."""
        assert self.changed is not None
        return self.changed.pop(0) if self.changed else set()

    def after_pass(self) -> None:
        """Run this pass's hook; stop after the last one."""
        self.passes += 1
        self.listener.drain()
        if (hook := self.hooks.get(self.passes)) is not None:
            hook(self.agent)
        if self.passes >= self.stop_after:
            self.agent._on_signal(signal.SIGTERM, None)

    def run(self) -> int:
        """Run the agent to its end, capturing its log lines."""
        with capture_logs() as logs:
            code = self.agent.run()
        self.listener.drain()
        self.logs = logs
        return code

    def events(self) -> list[str]:
        """The agent's log events, in order."""
        return [str(line["event"]) for line in self.logs]

    def value(self, name: str, **labels: str) -> float | None:
        """A sample of the agent's registry."""
        return self.metrics.registry.get_sample_value(name, labels)


@pytest.fixture(autouse=True)
def _restore_signals() -> Iterator[None]:
    """Agent.run installs handlers for SIGTERM, SIGINT and SIGHUP; put the old ones back."""
    saved = {n: signal.getsignal(n) for n in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    """A notify socket bound in tmp_path."""
    sock = Listener(tmp_path / "notify")
    yield sock
    sock.close()


def pipeline(name: str, listener: Listener, rig_clock: ManualClock,
             *script: PassReport | Exception) -> FakePipeline:
    """A fake pipeline named ``name``."""
    return FakePipeline(name, listener, rig_clock, list(script))


# -- the notify protocol ---------------------------------------------------------------------


def test_ready_first_then_status_then_stopping(listener: Listener) -> None:
    """READY=1 comes before the first pass, STATUS follows each pass, STOPPING=1 ends; exit 0."""
    clock = ManualClock()
    unhealthy = report(act("restart_unit", "not_healed"), remaining=(finding(),))
    a = pipeline("A", listener, clock, HEALTHY, unhealthy)
    rig = Rig(listener, [a], stop_after=2, clock=clock)
    assert rig.run() == 0
    assert listener.timeline == [
        "READY=1\nSTATUS=started; first pass running",
        "<A 1>",
        "STATUS=healthy",
        "<A 2>",
        f"STATUS=unhealthy: worker_down {W1}; restart_unit {W1}: not_healed",
        "STOPPING=1\nSTATUS=stopping",
    ]
    assert rig.events() == ["agent_started", "pass", "agent_stopped"]
    assert rig.logs[0]["interval"] == 1.0
    assert rig.logs[1]["summary"] == listener.statuses()[2]


def test_passes_are_an_interval_apart(listener: Listener) -> None:
    """Between passes the agent sleeps the interval on its clock."""
    clock = ManualClock()
    a = pipeline("A", listener, clock)
    assert Rig(listener, [a], stop_after=4, interval=30.0, clock=clock).run() == 0
    gaps = [b - t for t, b in zip(a.times, a.times[1:], strict=False)]
    assert gaps == pytest.approx([30.0, 30.0, 30.0])


def test_a_state_change_starts_a_pass_at_once(listener: Listener) -> None:
    """A unit's change of state between passes starts the next pass before the interval."""
    clock = ManualClock()
    a = pipeline("A", listener, clock)
    rig = Rig(listener, [a], stop_after=2, interval=30.0, clock=clock,
              changes=[set(), set(), set(), {W1}])
    assert rig.run() == 0
    assert a.times[1] - a.times[0] == pytest.approx(0.2)  # after the pass, at 0, 0.1, 0.2 s
    assert "state_changed" in rig.events()
    assert rig.value("healer_events_subscribed") == 1.0


def test_the_changes_of_what_the_pass_acted_on_start_no_pass(listener: Listener) -> None:
    """The unit a pass restarted changes state because of it: that starts no other pass."""
    clock = ManualClock()
    a = pipeline("A", listener, clock, report(act("restart_unit", "healed")))
    rig = Rig(listener, [a], stop_after=2, interval=30.0, clock=clock, changes=[{W1}])
    rig.run()
    assert a.times[1] - a.times[0] == pytest.approx(30.0)


def test_a_lost_subscription_is_said_and_polled_through(listener: Listener) -> None:
    """Events lost: logged, in STATUS and the gauge; passes go on at the interval; then back."""
    clock = ManualClock()
    a = pipeline("A", listener, clock)
    rig = Rig(listener, [a], stop_after=3, interval=1.0, clock=clock,
              changes=[None] * 15)  # lost through the first sleep and into the second
    assert rig.run() == 0
    gaps = [b - t for t, b in zip(a.times, a.times[1:], strict=False)]
    assert gaps == pytest.approx([1.0, 1.0])
    assert rig.events().count("events_lost") == 1
    assert rig.events().count("events_resubscribed") == 1
    assert "STATUS=events lost, polling" in listener.timeline
    assert listener.statuses()[3:5] == ["events lost, polling | healthy", "healthy"]
    assert rig.value("healer_events_subscribed") == 1.0


def test_polling_only_asks_for_no_changes(listener: Listener) -> None:
    """With [agent] events = false the loop has no changes to follow: the gauge says 0."""
    clock = ManualClock()
    rig = Rig(listener, [pipeline("A", listener, clock)], stop_after=1, clock=clock)
    rig.run()
    assert rig.value("healer_events_subscribed") == 0.0


def test_jitter_stays_within_its_fraction(listener: Listener) -> None:
    """With jitter j, each sleep is within interval * (1 +- j), and not always the same."""
    clock = ManualClock()
    a = pipeline("A", listener, clock)
    Rig(listener, [a], stop_after=6, interval=10.0, jitter=0.2, clock=clock).run()
    gaps = [b - t for t, b in zip(a.times, a.times[1:], strict=False)]
    assert all(8.0 - 1e-6 <= gap <= 12.0 + 1e-6 for gap in gaps)
    assert len({round(gap, 6) for gap in gaps}) > 1


def test_sigint_stops_like_sigterm(listener: Listener) -> None:
    """SIGINT ends the loop after the pass in flight, as SIGTERM does."""
    clock = ManualClock()
    rig = Rig(listener, [pipeline("A", listener, clock)], stop_after=99, clock=clock)
    rig.hooks[1] = lambda agent: agent._on_signal(signal.SIGINT, None)
    assert rig.run() == 0
    assert rig.passes == 1
    assert listener.timeline[-1] == "STOPPING=1\nSTATUS=stopping"


def test_real_sigterm_is_handled(listener: Listener) -> None:
    """A real SIGTERM sent during a pass ends the loop after that pass with exit 0."""
    clock = ManualClock()
    rig = Rig(listener, [pipeline("A", listener, clock)], stop_after=99, clock=clock)
    rig.hooks[2] = lambda _agent: os.kill(os.getpid(), signal.SIGTERM)
    assert rig.run() == 0
    assert rig.passes == 2


class SignallingClock(ManualClock):
    """A manual clock that calls ``on_sleep`` at its first sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.on_sleep: Callable[[], None] = lambda: None
        self.slept = 0.0

    def sleep(self, seconds: float) -> None:
        """Advance, and run the hook once."""
        hook, self.on_sleep = self.on_sleep, lambda: None
        hook()
        self.slept += seconds
        super().sleep(seconds)


def test_sigterm_while_sleeping_ends_without_another_pass(listener: Listener) -> None:
    """A SIGTERM during the sleep between passes cuts it short and runs no further pass."""
    clock = SignallingClock()
    rig = Rig(listener, [pipeline("A", listener, clock)], stop_after=99, interval=60.0,
              clock=clock)
    clock.on_sleep = lambda: rig.agent._on_signal(signal.SIGTERM, None)
    assert rig.run() == 0
    assert rig.passes == 1
    assert clock.slept < 1.0


def test_sighup_while_sleeping_reloads_at_once(listener: Listener) -> None:
    """A SIGHUP during the sleep cuts it short; the next pass runs on the reloaded pipeline."""
    clock = SignallingClock()
    a, b = pipeline("A", listener, clock), pipeline("B", listener, clock)
    rig = Rig(listener, [a, b], stop_after=2, interval=60.0, clock=clock)
    clock.on_sleep = lambda: rig.agent._on_signal(signal.SIGHUP, None)
    assert rig.run() == 0
    assert (len(a.times), len(b.times)) == (1, 1)
    assert clock.slept < 1.0
    assert "reloaded" in rig.events()


# -- failed passes and reloads ---------------------------------------------------------------


def test_failed_pass_is_counted_and_loop_goes_on(listener: Listener) -> None:
    """A pass that raises is counted by reason, logged, shown in STATUS; the next pass runs."""
    clock = ManualClock()
    a = pipeline("A", listener, clock, HEALTHY, ProbeError("no D-Bus"),
                 RuntimeError("boom"), HEALTHY)
    rig = Rig(listener, [a], stop_after=4, clock=clock)
    assert rig.run() == 0
    assert len(a.times) == 4
    assert rig.value("healer_pass_failures_total", reason="ProbeError") == 1.0
    assert rig.value("healer_pass_failures_total", reason="RuntimeError") == 1.0
    assert rig.value("healer_passes_total") == 2.0
    assert listener.statuses()[1:] == ["healthy", "last pass failed: no D-Bus",
                                       "last pass failed: boom", "healthy", "stopping"]
    failed = [line for line in rig.logs if line["event"] == "pass_failed"]
    assert [(f["kind"], f["error"], f["log_level"]) for f in failed] == [
        ("ProbeError", "no D-Bus", "error"), ("RuntimeError", "boom", "error")]


def test_bad_reload_keeps_old_pipeline_until_good_one(listener: Listener) -> None:
    """SIGHUP with a bad config keeps the old pipeline, STATUS says so until a good reload."""
    clock = ManualClock()
    a, b = pipeline("A", listener, clock), pipeline("B", listener, clock)
    bad = ConfigError("policies/x.yaml:3: unknown action 'reboot'")
    rig = Rig(listener, [a, bad, b], stop_after=4, clock=clock)
    rig.hooks[1] = lambda agent: agent._on_signal(signal.SIGHUP, None)
    rig.hooks[3] = lambda agent: agent._on_signal(signal.SIGHUP, None)
    assert rig.run() == 0
    assert (len(a.times), len(b.times)) == (3, 1)
    note = ("reload failed, running on the previous config: policies/x.yaml:3: unknown "
            "action 'reboot'")
    assert listener.timeline == [
        "READY=1\nSTATUS=started; first pass running",
        "<A 1>", "STATUS=healthy",
        f"STATUS={note}",
        "<A 2>", f"STATUS={note} | healthy",
        "<A 3>", f"STATUS={note} | healthy",
        "<B 1>", "STATUS=healthy",
        "STOPPING=1\nSTATUS=stopping",
    ]
    assert rig.events() == ["agent_started", "reload_failed", "reloaded", "agent_stopped"]
    assert rig.logs[1]["log_level"] == "error"


def test_errors_in_status_and_log_are_redacted(listener: Listener) -> None:
    """A failed pass and a failed reload name no secret, in STATUS= or in the log."""
    clock = ManualClock()
    a = pipeline("A", listener, clock, ProbeError("AUTH pw-s3cret refused: redis://:pw-s3cret@b"))
    rig = Rig(listener, [a, ConfigError("routing key rk-s3cret")], stop_after=2, clock=clock)
    rig.agent.redact = Redactor.knowing(secrets=["pw-s3cret", "rk-s3cret"]).text
    rig.hooks[1] = lambda agent: agent._on_signal(signal.SIGHUP, None)
    rig.run()
    assert listener.statuses()[1:3] == [
        "last pass failed: AUTH *** refused: redis://:***@b",
        "reload failed, running on the previous config: routing key ***"]
    assert "s3cret" not in repr(rig.logs)


def test_failed_pass_after_bad_reload_keeps_the_note(listener: Listener) -> None:
    """A failed pass while running on the previous config still says the reload failed."""
    clock = ManualClock()
    a = pipeline("A", listener, clock, HEALTHY, ProbeError("no D-Bus"))
    rig = Rig(listener, [a, ConfigError("bad")], stop_after=2, clock=clock)
    rig.hooks[1] = lambda agent: agent._on_signal(signal.SIGHUP, None)
    rig.run()
    assert listener.statuses()[-2] == ("reload failed, running on the previous config: bad | "
                                       "last pass failed: no D-Bus")


def test_failing_after_pass_does_not_kill_the_agent(listener: Listener, tmp_path: Path) -> None:
    """An after_pass hook that fails (metrics textfile dir gone) does not end the loop."""
    clock = ManualClock()
    metrics = Metrics()
    passes: list[int] = []
    agent: list[Agent] = []

    def after_pass() -> None:
        passes.append(1)
        if len(passes) >= 2:
            agent[0]._on_signal(signal.SIGTERM, None)
        metrics.write(tmp_path / "missing" / "healer.prom")

    a = pipeline("A", listener, clock)
    agent.append(Agent(lambda: Loop(cast("Pipeline", a), 1.0, 0.0), clock,
                       SdNotify(str(listener.path)), metrics, structlog.get_logger(), None,
                       after_pass=after_pass))
    with capture_logs():
        assert agent[0].run() == 0
    assert len(passes) == 2


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_follow_the_reports(listener: Listener) -> None:
    """Actions by step and outcome, escalations by delivery and open breakers follow reports."""
    clock = ManualClock()
    first = report(act("restart_unit", "healed"), act("escalate", "delivered"),
                   breakers=(FindingKey(Scenario.WORKER_DOWN, W2),))
    second = report(act("restart_unit", "not_healed"), act("restart_unit", "failed", W2),
                    act("reset_failed", "healed", W2), act("escalate", "undelivered"),
                    act("restart_unit", "rate_limited"), act("restart_unit", "dry_run"),
                    act(None, "held"), remaining=(finding(),))
    rig = Rig(listener, [pipeline("A", listener, clock, first, second)], stop_after=2,
              clock=clock)
    seen: list[float | None] = []
    rig.hooks[1] = lambda _agent: seen.append(rig.value("healer_breakers_open"))
    rig.run()

    assert seen == [1.0]
    assert rig.value("healer_breakers_open") == 0.0
    assert rig.value("healer_passes_total") == 2.0
    assert rig.value("healer_pass_duration_seconds_count") == 2.0
    assert rig.value("healer_findings_total", scenario="worker_down") == 2.0
    expected = {("restart_unit", "healed"): 1.0, ("restart_unit", "not_healed"): 1.0,
                ("restart_unit", "failed"): 1.0, ("reset_failed", "healed"): 1.0}
    for (action, outcome), count in expected.items():
        assert rig.value("healer_actions_total", action=action, outcome=outcome) == count
    for outcome in ("rate_limited", "dry_run", "delivered", "held"):
        assert rig.value("healer_actions_total", action="restart_unit", outcome=outcome) is None
    assert rig.value("healer_actions_total", action="escalate", outcome="delivered") is None
    assert rig.value("healer_notifications_total", tier="1", outcome="delivered") == 1.0
    assert rig.value("healer_notifications_total", tier="1", outcome="undelivered") == 1.0


def test_metrics_textfile(tmp_path: Path) -> None:
    """Metrics.write leaves a node_exporter textfile with the pass counter and no temp file."""
    metrics = Metrics()
    metrics.observe(report(act("restart_unit", "healed")), 0.3, 1.0)
    metrics.failed("ProbeError")
    path = tmp_path / "healer.prom"
    metrics.write(path)
    text = path.read_text(encoding="utf-8")
    assert "# TYPE healer_passes_total counter" in text
    assert "healer_passes_total 1.0" in text
    assert 'healer_actions_total{action="restart_unit",outcome="healed"} 1.0' in text
    assert 'healer_pass_failures_total{reason="ProbeError"} 1.0' in text
    assert [p.name for p in tmp_path.iterdir()] == ["healer.prom"]


def test_metrics_have_their_own_registry() -> None:
    """Two Metrics objects do not share counters (no global registry)."""
    one, two = Metrics(), Metrics()
    one.observe(HEALTHY, 0.1, 1.0)
    assert one.registry.get_sample_value("healer_passes_total") == 1.0
    assert two.registry.get_sample_value("healer_passes_total") == 0.0


def test_gauges_say_how_the_last_pass_left_things() -> None:
    """Open incidents, pauses, queues and nodes are those of the last pass; the rest is gone."""
    metrics = Metrics()
    value = metrics.registry.get_sample_value
    busy = replace(report(remaining=(finding(),)), paused=("*", W1), storm=True, outbox=2,
                   queues={"celery": 7}, nodes_up={"celery@a": True, "celery@b": False})
    metrics.observe(busy, 0.1, 1_700_000_000.0)
    assert value("healer_incidents_open", {"scenario": "worker_down", "unit": W1}) == 1.0
    assert value("healer_paused", {"unit": "*"}) == value("healer_paused", {"unit": W1}) == 1.0
    assert (value("healer_storm_guard"), value("healer_outbox_size")) == (1.0, 2.0)
    assert value("healer_queue_depth", {"queue_name": "celery"}) == 7.0
    assert value("healer_worker_up", {"node": "celery@b"}) == 0.0
    assert value("healer_last_pass_timestamp_seconds") == 1_700_000_000.0
    assert value("healer_build_info", {"version": __version__}) == 1.0
    metrics.observe(HEALTHY, 0.1, 1_700_000_005.0)
    assert value("healer_incidents_open", {"scenario": "worker_down", "unit": W1}) is None
    assert value("healer_paused", {"unit": "*"}) is None
    assert value("healer_queue_depth", {"queue_name": "celery"}) is None
    assert (value("healer_storm_guard"), value("healer_outbox_size")) == (0.0, 0.0)


# -- summary ---------------------------------------------------------------------------------


def test_summary_healthy() -> None:
    """A healthy pass without actions is "healthy"."""
    assert summary(HEALTHY) == "healthy"


def test_summary_names_what_remains_and_what_was_done() -> None:
    """The summary lists remaining problems, then each step taken and its outcome."""
    broker = finding(Scenario.BROKER_UNREACHABLE, None)
    done = report(act("restart_unit", "healed"), act(None, "held"),
                  remaining=(finding(unit=W2), broker))
    assert summary(done) == (f"unhealthy: worker_down {W2}, broker_unreachable; "
                             f"restart_unit {W1}: healed")


def test_summary_healthy_after_healing() -> None:
    """A pass that healed everything is healthy and says what it did."""
    assert summary(report(act("restart_unit", "healed"))) == \
        f"healthy; restart_unit {W1}: healed"


def test_summary_keeps_three_steps_at_most() -> None:
    """Only the state and the first three steps fit in the status line."""
    outcomes = list(Outcome)[:6]
    text = summary(report(*(act("restart_unit", o) for o in outcomes)))
    assert text.split("; ") == ["healthy", *(f"restart_unit {W1}: {o.value}" for o in
                                             outcomes[:3])]


def test_summary_names_a_blind_probe() -> None:
    """A pass unhealthy only because a probe could not look names that probe."""
    blind = PassReport(findings=(), actions=(), remaining=(),
                       probe_errors={"broker": "timed out"})
    assert "broker" in summary(blind)


def test_what_is_unwatched_is_in_status_and_logged_once_while_it_stays(
        listener: Listener) -> None:
    """STATUS says what is not watched after every pass; the log says it once, and on change."""
    clock = ManualClock()
    blind = replace(HEALTHY, unwatched={"task_failures": "no log"})
    other = replace(HEALTHY, unwatched={"beat_down": "no beat unit"})
    rig = Rig(listener, [pipeline("p", listener, clock, blind, blind, other)], stop_after=3)
    rig.run()
    assert listener.statuses()[1:4] == ["healthy; not watching task_failures"] * 2 + [
        "healthy; not watching beat_down"]
    assert [line["scenarios"] for line in rig.logs if line["event"] == "unwatched"] == [
        {"task_failures": "no log"}, {"beat_down": "no beat unit"}]


# -- sd_notify and the watchdog --------------------------------------------------------------


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    """WATCHDOG_USEC for this process gives half its value in seconds."""
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 10.0
    monkeypatch.delenv("WATCHDOG_PID")
    assert watchdog_interval() == 10.0


def test_watchdog_interval_of_another_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """WATCHDOG_PID naming another process means no watchdog here."""
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None


def test_no_watchdog_without_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without WATCHDOG_USEC there is no watchdog."""
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() is None


def test_notify_uses_notify_socket(monkeypatch: pytest.MonkeyPatch, listener: Listener) -> None:
    """$NOTIFY_SOCKET is the default address; newlines in values become spaces."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    notify = SdNotify()
    assert notify.enabled
    notify.send(READY="1", STATUS="two\nlines")
    listener.drain()
    assert listener.timeline == ["READY=1\nSTATUS=two lines"]


def test_notify_disabled_without_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without $NOTIFY_SOCKET sending does nothing."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notify = SdNotify()
    assert not notify.enabled
    notify.send(READY="1")


def test_notify_to_missing_socket_is_not_an_error(tmp_path: Path) -> None:
    """A message the manager cannot receive is dropped silently."""
    SdNotify(str(tmp_path / "gone")).send(STATUS="x")


def test_notify_abstract_address() -> None:
    """An address starting with @ is in the abstract namespace."""
    name = f"healer-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        SdNotify("@" + name).send(WATCHDOG="1")
        assert sock.recv(100) == b"WATCHDOG=1"
