"""The detectors on snapshots built directly, plus the pure helpers the probes rest on."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from msgspec.structs import replace

from healer import history, redact
from healer.detectors import (
    beat_down,
    beat_stalled,
    broker_unreachable,
    critical_task_stalled,
    database_unreachable,
    memory_pressure,
    queue_backlog,
    task_failures,
    task_stuck,
    worker_down,
    worker_not_consuming,
    worker_unresponsive,
)
from healer.errors import ProbeError
from healer.model import (
    ActiveTask,
    BeatLog,
    BrokerState,
    CeleryState,
    CpuSample,
    Endpoint,
    NodeState,
    Readings,
    Sample,
    Silence,
    Snapshot,
    Thresholds,
    UnitState,
    UnitUsage,
    WorkerLog,
    WorkerSignals,
)
from healer.probes import logs
from healer.probes.broker import queue_keys
from healer.probes.celery import node_name, running
from healer.state import State
from healer.systemd.dbus_backend import _known
from healer.testing import unit
from healer.vocabulary import BrokerError, Scenario, Severity

if TYPE_CHECKING:
    from pathlib import Path

NOW = 1_700_000_000.0
W1 = "celery-w1.service"
W2 = "celery-w2.service"
BEAT = "celery-beat.service"
REDIS = "redis.service"
N1 = "w1@host"
N2 = "w2@host"
MIB = 2**20


def since(seconds: float) -> int:
    """ActiveEnterTimestamp (microseconds) for a unit active ``seconds`` before NOW."""
    return int((NOW - seconds) * 1_000_000)


def worker(name: str, active: str = "active", result: str = "success", up: float = 600,
           **kw: Any) -> UnitState:  # noqa: ANN401
    """A worker unit active for ``up`` seconds."""
    return unit(name, active, result, active_enter_us=since(up), main_pid=4242, **kw)


NODE_OF = {W1: N1, W2: N2}


def nodes(*workers: UnitState, **kw: Any) -> tuple[NodeState, ...]:  # noqa: ANN401
    """The node of each worker unit (W1 runs N1, W2 runs N2), its main process the node's."""
    return tuple(NodeState(name=NODE_OF[u.name], unit=u.name, pid=u.main_pid, **kw)
                 for u in workers)


def snap(**kw: Any) -> Snapshot:  # noqa: ANN401
    """A snapshot at NOW with one healthy worker unless told otherwise.

    Each worker's node has been silent since its start over five looks, never answering,
    unless ``silence`` says otherwise.
    """
    kw.setdefault("workers", (worker(W1),))
    kw.setdefault("nodes", nodes(*kw["workers"]))
    kw.setdefault("silence", {NODE_OF[u.name]: Silence(
        started_us=u.active_enter_us, last_life=u.active_enter_us / 1e6, looks=5)
        for u in kw["workers"]})
    return Snapshot(taken_at=NOW, **kw)


def celery(replied: tuple[str, ...] | None) -> CeleryState:
    """What the workers said: these nodes replied (None: nobody could be asked)."""
    return CeleryState(replied=replied)


# worker_unresponsive


def test_unresponsive_silent_active_worker() -> None:
    """An active worker past its grace whose node did not reply yields a finding on it."""
    findings = worker_unresponsive.detect(
        snap(workers=(worker(W1), worker(W2)), celery=celery((N2,))))
    assert [(f.scenario, f.unit) for f in findings] == [(Scenario.WORKER_UNRESPONSIVE, W1)]
    assert findings[0].evidence["node"] == N1
    assert findings[0].evidence["replied"] == N2


def test_unresponsive_replied_is_none() -> None:
    """A worker whose node replied is not unresponsive."""
    assert worker_unresponsive.detect(
        snap(workers=(worker(W1), worker(W2)), celery=celery((N1, N2)))) == []


@pytest.mark.parametrize("state", [None, CeleryState(replied=None)])
def test_unresponsive_not_judged_without_asking(state: CeleryState | None) -> None:
    """No celery state, or replied None (broker down): "no reply" is not "down"."""
    assert worker_unresponsive.detect(snap(celery=state)) == []


def test_unresponsive_within_startup_grace() -> None:
    """A worker active for less than startup_grace is still booting: no finding."""
    s = snap(workers=(worker(W1, up=10),), celery=celery(()),
             thresholds=Thresholds(startup_grace=30))
    assert worker_unresponsive.detect(s) == []


def test_a_stopped_process_is_proof_at_once() -> None:
    """State T (SIGSTOP): a finding in the first look, in its grace and with no silence."""
    s = snap(workers=(worker(W1, up=2),), celery=celery(()), silence={},
             nodes=nodes(worker(W1, up=2), process="T"))
    [found] = worker_unresponsive.detect(s)
    assert found.evidence["process_state"] == "T"
    assert "process stopped" in found.summary


@pytest.mark.parametrize(("silent_for", "looks"), [(14.0, 5), (60.0, 2)])
def test_silence_alone_must_last_its_window_over_its_looks(silent_for: float, looks: int
                                                           ) -> None:
    """Silent for less than silence_window, or over fewer than silence_probes looks: no finding."""
    track = Silence(started_us=since(600), last_life=NOW - silent_for, looks=looks,
                    answered=True)
    assert worker_unresponsive.detect(snap(celery=celery(()),
                                           silence={N1: track})) == []


def test_a_busy_node_is_not_unresponsive() -> None:
    """Task events show a task started on the node and not finished: a silence is held."""
    s = snap(celery=celery(()), signals=WorkerSignals(busy={N1: 1}))
    assert worker_unresponsive.detect(s) == []


def test_grace_ends_once_the_worker_answered() -> None:
    """A worker that answered after its start is judged at once, grace or not."""
    track = Silence(started_us=since(20), last_life=NOW - 16, looks=3, answered=True)
    s = snap(workers=(worker(W1, up=20),), celery=celery(()), silence={N1: track},
             thresholds=Thresholds(startup_grace=30))
    assert [f.unit for f in worker_unresponsive.detect(s)] == [W1]


def test_unresponsive_all_silent_is_critical() -> None:
    """When every worker is silent each finding is critical."""
    findings = worker_unresponsive.detect(
        snap(workers=(worker(W1), worker(W2)), celery=celery(())))
    assert [f.unit for f in findings] == [W1, W2]
    assert {f.severity for f in findings} == {Severity.CRITICAL}


def test_unresponsive_some_silent_is_high() -> None:
    """When some workers answer, the silent one's finding is high."""
    findings = worker_unresponsive.detect(
        snap(workers=(worker(W1), worker(W2)), celery=celery((N1,))))
    assert [(f.unit, f.severity) for f in findings] == [(W2, Severity.HIGH)]


def test_unresponsive_with_the_rest_down_is_critical() -> None:
    """One worker failed and the other silent: no worker is working, so critical."""
    findings = worker_unresponsive.detect(
        snap(workers=(worker(W1), worker(W2, "failed", "signal")), celery=celery(())))
    assert [(f.unit, f.severity) for f in findings] == [(W1, Severity.CRITICAL)]


# worker_not_consuming


def samples(*rows: tuple[float, int, int | None, int | None]) -> tuple[Sample, ...]:
    """Samples from (seconds before NOW, depth, processed, active) rows."""
    return tuple(Sample(at=NOW - ago, depth=d, processed=p, active=a) for ago, d, p, a in rows)


STUCK = samples((90, 50, 7, 0), (45, 50, 7, 0), (0, 55, 7, 0))


def test_not_consuming_stuck_run() -> None:
    """Three idle samples over >= not_consuming_after, flat processed, backlog not falling: high."""
    findings = worker_not_consuming.detect(
        snap(samples=STUCK, celery=celery((N1,))))
    assert len(findings) == 1
    finding = findings[0]
    assert finding.scenario is Scenario.WORKER_NOT_CONSUMING
    assert finding.severity is Severity.HIGH
    assert finding.unit == W1
    assert finding.evidence["samples"] == 3
    assert finding.evidence["span_s"] == 90


@pytest.mark.parametrize("rows", [
    pytest.param(samples((90, 80, 7, 0), (45, 60, 7, 0), (0, 40, 7, 0)), id="draining"),
    pytest.param(samples((90, 50, 7, 0), (45, 50, 7, 1), (0, 50, 7, 1)), id="busy"),
    pytest.param(samples((90, 50, 5, 0), (45, 50, 6, 0), (0, 50, 7, 0)), id="processed-rising"),
    pytest.param(samples((90, 50, 7, 0), (0, 50, 7, 0)), id="too-few"),
    pytest.param(samples((30, 50, 7, 0), (15, 50, 7, 0), (0, 50, 7, 0)), id="too-short"),
    pytest.param(samples((90, 0, 7, 0), (45, 0, 7, 0), (0, 0, 7, 0)), id="no-backlog"),
    pytest.param(samples((90, 50, None, None), (45, 50, None, None), (0, 50, None, None)),
                 id="no-stats"),
])
def test_not_consuming_none(rows: tuple[Sample, ...]) -> None:
    """Draining, busy, moving, too few or too short a run, no backlog or no stats: no finding."""
    assert worker_not_consuming.detect(snap(samples=rows, celery=celery((N1,)))) == []


# broker_unreachable


def test_broker_unreachable_is_critical() -> None:
    """An unreachable broker gives a critical finding on the broker unit with its error kind."""
    s = snap(broker_unit=unit(REDIS, "failed", "exit-code"),
             broker=BrokerState(url="redis://localhost:6379/0", reachable=False,
                                error_kind=BrokerError.REFUSED, error="Connection refused"))
    findings = broker_unreachable.detect(s)
    assert len(findings) == 1
    assert findings[0].severity is Severity.CRITICAL
    assert findings[0].unit == REDIS
    assert findings[0].evidence["error_kind"] == "refused"
    assert findings[0].evidence["unit_state"] == "failed"


def test_broker_reachable_is_none() -> None:
    """A reachable broker (or none probed) gives no finding."""
    assert broker_unreachable.detect(
        snap(broker=BrokerState(url="redis://x", reachable=True))) == []
    assert broker_unreachable.detect(snap()) == []


# task_failures


def test_task_failures_at_threshold_is_medium() -> None:
    """A task failing exactly thresholds.task_failures times is a medium finding on the worker."""
    findings = task_failures.detect(
        snap(worker_log=WorkerLog(failures={"app.a": 3, "app.b": 1})))
    assert len(findings) == 1
    assert findings[0].severity is Severity.MEDIUM
    assert findings[0].unit == W1
    assert findings[0].evidence == {"failed:app.a": 3}


def test_task_failures_many_tasks_is_high() -> None:
    """Three or more task names over the threshold make it high."""
    log = WorkerLog(failures={"app.a": 3, "app.b": 4, "app.c": 9})
    findings = task_failures.detect(snap(worker_log=log))
    assert [f.severity for f in findings] == [Severity.HIGH]


def test_task_failures_retry_loop_alone_is_medium() -> None:
    """A retry loop with no failures over the threshold is still a medium finding."""
    findings = task_failures.detect(snap(worker_log=WorkerLog(retry_loops={"app.r": 5})))
    assert [f.severity for f in findings] == [Severity.MEDIUM]
    assert findings[0].evidence == {"retry_loop:app.r": 5}


def test_task_failures_below_threshold_is_none() -> None:
    """Failures below the threshold, or no worker log, give no finding."""
    assert task_failures.detect(snap(worker_log=WorkerLog(failures={"app.a": 2}))) == []
    assert task_failures.detect(snap()) == []


# beat_down


def beat(active: str = "active", result: str = "success", up: float = 600) -> UnitState:
    """The beat unit, (last) activated ``up`` seconds before NOW."""
    return unit(BEAT, active, result, active_enter_us=since(up), main_pid=77)


def test_beat_failed_is_high() -> None:
    """A failed beat is a high finding, not held."""
    findings = beat_down.detect(snap(beat=beat("failed", "exit-code")))
    assert len(findings) == 1
    assert findings[0].severity is Severity.HIGH
    assert findings[0].unit == BEAT
    assert findings[0].hold is None
    assert findings[0].evidence["schedule_file"] is None


@pytest.mark.parametrize("kind", ["corrupt", "locked"])
def test_beat_down_recent_schedule_error(kind: str) -> None:
    """A schedule-file error after beat's last activation goes in the evidence."""
    log = BeatLog(schedule_error=kind, schedule_error_at=NOW - 100)
    findings = beat_down.detect(snap(beat=beat("failed", "exit-code", up=300), beat_log=log))
    assert findings[0].evidence["schedule_file"] == kind
    assert kind in findings[0].summary


def test_beat_down_old_schedule_error_ignored() -> None:
    """A schedule-file error from before beat's last activation is ignored."""
    log = BeatLog(schedule_error="corrupt", schedule_error_at=NOW - 1000)
    findings = beat_down.detect(snap(beat=beat("failed", "exit-code", up=300), beat_log=log))
    assert findings[0].evidence["schedule_file"] is None


def test_beat_clean_stop_is_held() -> None:
    """Beat stopped cleanly is reported but held."""
    findings = beat_down.detect(snap(beat=beat("inactive", "success")))
    assert len(findings) == 1
    assert findings[0].hold is not None


def test_beat_running_is_not_down() -> None:
    """A running beat, or none configured, gives no beat_down finding."""
    assert beat_down.detect(snap(beat=beat())) == []
    assert beat_down.detect(snap()) == []


# beat_stalled


def test_beat_stalled_past_max_silence() -> None:
    """Beat silent for longer than max_silence is a medium finding."""
    s = snap(beat=beat(), beat_log=BeatLog(last_dispatch=NOW - 200),
             thresholds=Thresholds(beat_max_silence=120))
    findings = beat_stalled.detect(s)
    assert len(findings) == 1
    assert findings[0].severity is Severity.MEDIUM
    assert findings[0].evidence["silent_s"] == 200
    assert findings[0].evidence["allowance_s"] == 120


def test_beat_stalled_allowance_from_period() -> None:
    """Without max_silence the allowance is 2*shortest_period+10 (70s for a 30s period)."""
    log = BeatLog(last_dispatch=NOW - 71, shortest_period=30.0)
    findings = beat_stalled.detect(snap(beat=beat(), beat_log=log))
    assert [f.evidence["allowance_s"] for f in findings] == [70]
    quiet = BeatLog(last_dispatch=NOW - 69, shortest_period=30.0)
    assert beat_stalled.detect(snap(beat=beat(), beat_log=quiet)) == []


def test_beat_stalled_not_judged_broker_down() -> None:
    """An unreachable broker explains beat's silence: no finding."""
    s = snap(beat=beat(), beat_log=BeatLog(last_dispatch=NOW - 500, shortest_period=10.0),
             broker=BrokerState(url="redis://x", reachable=False, error_kind=BrokerError.REFUSED))
    assert beat_stalled.detect(s) == []


def test_beat_stalled_just_started() -> None:
    """A beat that started less than its allowance ago is not stalled."""
    s = snap(beat=beat(up=20), beat_log=BeatLog(last_dispatch=NOW - 500, shortest_period=10.0))
    assert beat_stalled.detect(s) == []


def test_beat_stalled_without_log() -> None:
    """Without a beat log (or any period to judge by) there is no finding."""
    assert beat_stalled.detect(snap(beat=beat(), thresholds=Thresholds(beat_max_silence=1))) == []
    assert beat_stalled.detect(snap(beat=beat(), beat_log=BeatLog(last_dispatch=NOW - 900))) == []


# memory_pressure


def test_memory_over_limit_is_medium() -> None:
    """A worker over the memory limit is a medium finding with the reading's source."""
    s = snap(usage=(UnitUsage(unit=W1, bytes=300 * MIB, source="cgroup"),),
             thresholds=Thresholds(memory_bytes=200 * MIB))
    findings = memory_pressure.detect(s)
    assert len(findings) == 1
    assert findings[0].severity is Severity.MEDIUM
    assert findings[0].evidence["source"] == "cgroup"
    assert findings[0].evidence["used_mib"] == 300


def test_memory_oom_kill_is_high() -> None:
    """Result=oom-kill is a high finding even without a memory reading."""
    findings = memory_pressure.detect(snap(workers=(worker(W1, "failed", "oom-kill"),)))
    assert [(f.unit, f.severity) for f in findings] == [(W1, Severity.HIGH)]


def test_a_stopped_worker_is_not_memory_pressure_for_processes_lost_in_its_stop() -> None:
    """Stopped cleanly (as by an operator) with lost pool processes in its log: no finding."""
    stopped = worker(W1, "inactive", "success")
    assert memory_pressure.detect(snap(workers=(stopped,), worker_log=WorkerLog(lost=4))) == []


def test_memory_lost_processes_is_high() -> None:
    """Pool processes lost to SIGKILL in the worker log make a high finding."""
    findings = memory_pressure.detect(snap(worker_log=WorkerLog(lost=2)))
    assert [f.severity for f in findings] == [Severity.HIGH]
    assert findings[0].evidence["lost_processes"] == 2


def test_memory_under_limit_is_none() -> None:
    """A worker under the limit, or with no reading, gives no finding."""
    s = snap(workers=(worker(W1), worker(W2)),
             usage=(UnitUsage(unit=W1, bytes=100 * MIB, source="psutil"),),
             thresholds=Thresholds(memory_bytes=200 * MIB))
    assert memory_pressure.detect(s) == []


def _cpu(*points: tuple[float, float]) -> dict[str, tuple[CpuSample, ...]]:
    """CPU samples for W1: (seconds before NOW, CPU seconds used by then)."""
    samples = (CpuSample(at=NOW - ago, cpu_seconds=used, main_pid=1) for ago, used in points)
    return {W1: tuple(samples)}


def test_sustained_cpu_is_medium() -> None:
    """Average CPU at or over the limit across the whole sustained window is a medium finding."""
    s = snap(cpu=_cpu((120, 0.0), (60, 57.0), (0, 114.0)),
             thresholds=Thresholds(cpu_percent=90, cpu_sustained=120))
    findings = memory_pressure.detect(s)
    assert [(f.severity, f.evidence["cpu_percent"]) for f in findings] == [
        (Severity.MEDIUM, 95.0)]


@pytest.mark.parametrize("points", [
    ((120, 0.0), (0, 60.0)),        # 50%: busy, not pinned
    ((60, 0.0), (0, 60.0)),         # 100%, but only for 60 s of the 120 s window
    ((0, 5.0),),                    # one sample says nothing about a rate
])
def test_cpu_not_sustained_is_none(points: tuple[tuple[float, float], ...]) -> None:
    """CPU under the limit, or not sampled for the whole window, gives no finding."""
    s = snap(cpu=_cpu(*points), thresholds=Thresholds(cpu_percent=90, cpu_sustained=120))
    assert memory_pressure.detect(s) == []


# queue_backlog


@pytest.mark.parametrize(("depth", "severity"), [
    (101, Severity.LOW), (999, Severity.LOW), (1000, Severity.MEDIUM), (5000, Severity.MEDIUM)])
def test_queue_backlog_over_threshold(depth: int, severity: Severity) -> None:
    """Over the threshold is low; ten times it or more is medium."""
    s = snap(broker=BrokerState(url="redis://x", reachable=True, queues={"celery": depth}))
    findings = queue_backlog.detect(s)
    assert [(f.severity, f.evidence["queue"]) for f in findings] == [(severity, "celery")]


def test_queue_backlog_at_threshold_is_none() -> None:
    """A queue exactly at the threshold is not a backlog."""
    s = snap(broker=BrokerState(url="redis://x", reachable=True, queues={"celery": 100}))
    assert queue_backlog.detect(s) == []


# database_unreachable


def test_database_unreachable_is_high() -> None:
    """An unreachable database is a high finding with its address; reachable gives none."""
    down = Endpoint(address="db:5432", reachable=False, error="refused")
    findings = database_unreachable.detect(snap(database=down))
    assert [(f.severity, f.evidence["address"]) for f in findings] == [(Severity.HIGH, "db:5432")]
    assert database_unreachable.detect(
        snap(database=Endpoint(address="db:5432", reachable=True))) == []
    assert database_unreachable.detect(snap()) == []


# helpers


def test_known_memory_reading() -> None:
    """A reading of 2^64-1 from systemd means unknown (None); a real reading is kept."""
    assert _known(2**64 - 1) is None
    assert _known(5) == 5
    assert _known(None) is None


@pytest.mark.parametrize(("argv", "expected"), [
    (("celery", "-A", "app", "worker", "-n", "x@%h"), "x@host.example"),
    (("celery", "-A", "app", "worker", "--hostname=x@y"), "x@y"),
    (("celery", "-A", "app", "worker", "--hostname", "x@y"), "x@y"),
    (("celery", "-A", "app", "worker", "-nx@y"), "x@y"),
    (("celery", "-A", "app", "worker", "-l", "info"), "celery@host.example"),
    (("celery", "-A", "app", "beat"), None),
])
def test_node_name(argv: tuple[str, ...], expected: str | None) -> None:
    """The node name a worker command line gives itself; None for a non-worker."""
    assert node_name(argv, host="host.example") == expected


def test_queue_keys() -> None:
    """A queue lives in four Redis lists: the plain key and three priority keys."""
    assert queue_keys("celery") == [
        "celery", "celery\x06\x163", "celery\x06\x166", "celery\x06\x169"]


def test_redact() -> None:
    """The password is hidden; URLs without one are unchanged."""
    assert redact.url("redis://user:s3cret@broker:6379/0") == "redis://user:***@broker:6379/0"
    assert "s3cret" not in redact.url("redis://:s3cret@broker/0")
    assert redact.url("redis://broker:6379/0") == "redis://broker:6379/0"


# log readers


def stamp(at: float) -> str:
    """Celery's log prefix for the local time ``at``."""
    moment = datetime.fromtimestamp(at).astimezone()
    return f"[{moment:%Y-%m-%d %H:%M:%S},{moment.microsecond // 1000:03d}: INFO/MainProcess]"


def failed(at: float, task: str, task_id: str) -> str:
    """A worker log line for a task that raised."""
    return f"{stamp(at)} Task {task}[{task_id}] raised unexpected: ValueError('x')\n"


def test_worker_log_counts_once_across_reads(tmp_path: Path) -> None:
    """Failures are counted once across two reads: the offset is kept."""
    path = tmp_path / "worker.log"
    path.write_text(failed(NOW - 30, "app.a", "id-1") + failed(NOW - 20, "app.a", "id-2"))
    state = State()
    first = _summary(path, state)
    assert first.failures == {"app.a": 2}
    with path.open("a") as handle:
        handle.write(failed(NOW - 10, "app.a", "id-3"))
    second = _summary(path, state)
    assert second.failures == {"app.a": 3}
    third = _summary(path, state)
    assert third.failures == {"app.a": 3}


def test_worker_log_rotated_file_reread(tmp_path: Path) -> None:
    """A file truncated below the kept offset is read again from the start."""
    path = tmp_path / "worker.log"
    path.write_text("".join(failed(NOW - 50 + i, "app.a", f"id-{i}") for i in range(5)))
    state = State()
    _summary(path, state)
    path.write_text(failed(NOW - 5, "app.b", "id-new"))
    result = _summary(path, state)
    assert result.failures == {"app.a": 5, "app.b": 1}


def test_worker_log_retry_loop_and_lost(tmp_path: Path) -> None:
    """The same id retried `loop` times is a loop; WorkerLostError counts a lost process."""
    path = tmp_path / "worker.log"
    retry = f"{stamp(NOW - 9)} Task app.r[same-id] retry: Retry in 1s\n"
    lost = f"{stamp(NOW - 5)} Process 'ForkPoolWorker-1' pid:9 exited with 'signal 9 (SIGKILL)'\n"
    path.write_text(retry * 3 + lost)
    result = _summary(path, State())
    assert result.retry_loops == {"app.r": 3}
    assert result.lost == 1


def test_beat_log_shortest_period(tmp_path: Path) -> None:
    """The shortest period comes from consecutive "Sending due task" lines per task."""
    path = tmp_path / "beat.log"
    base = float(int(NOW) - 100)
    lines = [
        (base, "every-30"), (base + 5, "every-10"), (base + 15, "every-10"),
        (base + 30, "every-30"), (base + 25, "every-10"),
    ]
    path.write_text("".join(
        f"{stamp(at)} Scheduler: Sending due task {name} (app.t)\n" for at, name in lines))
    result = logs.beat_log(logs.read_new(path, None)[0], BeatLog(), NOW)
    assert result.shortest_period == pytest.approx(10.0)
    assert result.last_dispatch == pytest.approx(base + 25)


@pytest.mark.parametrize(("line", "kind"), [
    ("_pickle.UnpicklingError: invalid load key, '\\x00'.", "corrupt"),
    ("OSError: [Errno 11] Resource temporarily unavailable", "locked"),
])
def test_beat_log_schedule_error(tmp_path: Path, line: str, kind: str) -> None:
    """An UnpicklingError means a corrupt schedule file; EAGAIN means it is locked."""
    path = tmp_path / "beat.log"
    path.write_text(f"{stamp(NOW - 3)} {line}\n")
    result = logs.beat_log(logs.read_new(path, None)[0], BeatLog(), NOW)
    assert result.schedule_error == kind
    assert result.schedule_error_at == pytest.approx(NOW - 3)


def test_not_consuming_rabbitmq_zero_consumers() -> None:
    """RabbitMQ: a queue with messages and no consumer while the worker answers is high at once."""
    s = snap(celery=celery((N1,)),
             broker=BrokerState(url="amqp://x", reachable=True, queues={"celery": 3},
                                consumers={"celery": 0}))
    findings = worker_not_consuming.detect(s)
    assert [(f.unit, f.severity, f.evidence["consumers"]) for f in findings] == [
        (W1, Severity.HIGH, 0)]


def test_not_consuming_rabbitmq_with_consumer_is_none() -> None:
    """RabbitMQ: a backlog being consumed (one consumer) is not this scenario."""
    s = snap(celery=celery((N1,)),
             broker=BrokerState(url="amqp://x", reachable=True, queues={"celery": 3},
                                consumers={"celery": 1}))
    assert worker_not_consuming.detect(s) == []


def _fold(state: State, **readings: Any) -> WorkerLog:  # noqa: ANN401
    """Fold readings of no units but these into the state; the worker log's summary."""
    snapshot = history.fold(state, Readings(taken_at=NOW, workers=(), **readings),
                            Thresholds(task_window=600, retry_loop=3))
    assert snapshot.worker_log is not None
    return snapshot.worker_log


def _summary(path: Path, state: State) -> WorkerLog:
    """Read the worker log's new lines into the state and summarise the window."""
    lines, cursor = logs.read_new(path, state.logs.get(str(path)))
    return _fold(state, worker_lines=tuple(lines), log_cursors={str(path): cursor})


def test_missing_log_file_is_unknown_not_empty(tmp_path: Path) -> None:
    """A configured log that is not there is a ProbeError (unknown), never "nothing logged"."""
    with pytest.raises(ProbeError, match=r"w\.log"):
        logs.read_new(tmp_path / "w.log", None)


def test_with_events_the_log_counts_only_lost_processes() -> None:
    """When task events count failures and retries, the log's own lines for them are skipped."""
    state = State()
    lines = [f"[2026-01-01 00:00:00,000: ERROR/MainProcess] Task app.a[{i}] raised unexpected: X"
             for i in range(3)]
    lines.append("[2026-01-01 00:00:01,000: ERROR/MainProcess] Process 'ForkPoolWorker-1' "
                 "pid:7 exited with 'signal 9 (SIGKILL)'")
    _fold(state, worker_lines=tuple(lines), task_events=())
    assert state.failures == []
    assert len(state.lost) == 1


# silence, folded look by look


def look(state: State, at: float, replied: tuple[str, ...], up: float = 600,
         heard: dict[str, float] | None = None) -> Silence:
    """Fold one look at W1 (active since ``up`` before NOW) taken at NOW + ``at``."""
    readings = Readings(taken_at=NOW + at, workers=(worker(W1, up=up),),
                        nodes=nodes(worker(W1, up=up)), celery=celery(replied),
                        signals=None if heard is None else WorkerSignals(heard=heard))
    return history.fold(state, readings, Thresholds()).silence[N1]


def test_silence_counts_looks_from_the_last_answer() -> None:
    """Each look without a reply adds one; a reply resets the count and the time of life."""
    state = State()
    assert look(state, 0, (N1,)) == Silence(started_us=since(600), pid=4242, last_life=NOW,
                                             looks=0, answered=True)
    assert look(state, 5, ()).looks == 1
    silent = look(state, 10, ())
    assert (silent.looks, silent.last_life) == (2, NOW)
    assert look(state, 15, (N1,)).looks == 0


def test_a_heartbeat_heard_is_life() -> None:
    """A node heard since the look before is alive though it missed the ping."""
    state = State()
    look(state, 0, (N1,))
    assert look(state, 5, (), heard={N1: NOW + 4}) == Silence(
        started_us=since(600), pid=4242, last_life=NOW + 4, looks=0, answered=True)


def test_a_new_run_starts_its_silence_afresh() -> None:
    """After a restart (another ActiveEnterTimestamp) the worker has not answered yet."""
    state = State()
    look(state, 0, (N1,))
    fresh = look(state, 5, (), up=1)
    assert (fresh.answered, fresh.looks, fresh.last_life) == (False, 1, NOW - 1)


def test_a_look_that_could_not_ask_changes_no_silence() -> None:
    """With the broker down (replied None) the silence stays as it was."""
    state = State()
    before = look(state, 0, ())
    readings = Readings(taken_at=NOW + 5, workers=(worker(W1),), nodes=nodes(worker(W1)),
                        celery=CeleryState(replied=None))
    assert history.fold(state, readings, Thresholds()).silence[N1] == before


RECEIVED = "[2023-11-14 22:13:10,000: INFO/MainProcess] Task demoapp.nap[t-1] received"
SUCCEEDED = ("[2023-11-14 22:13:50,000: INFO/MainProcess] Task demoapp.nap[t-1] succeeded in "
             "40.0s: 40")


def test_a_task_received_and_not_ended_is_running() -> None:
    """The log's "received" opens a task, its "succeeded in" (or failure, retry) ends it."""
    assert logs.running([RECEIVED], {}, NOW) == {"t-1": NOW - 10}
    assert logs.running([SUCCEEDED], {"t-1": NOW - 10}, NOW) == {}
    revoked = "[2023-11-14 22:13:50,000: INFO/MainProcess] Discarding revoked task: x[t-1]"
    assert logs.running([revoked], {"t-1": NOW - 10}, NOW) == {}


def test_a_worker_busy_by_its_log_is_not_unresponsive() -> None:
    """Its own log shows a task running: the silence is held (a solo pool answers nothing)."""
    state = State()
    readings = Readings(taken_at=NOW, workers=(worker(W1),), nodes=nodes(worker(W1)),
                        celery=celery(()), node_lines={N1: (RECEIVED,)})
    snapshot = history.fold(state, readings, Thresholds())
    assert snapshot.running == {N1: NOW - 10}  # the log's line is 10 s old
    busy = replace(snapshot, silence=snap().silence)
    assert worker_unresponsive.detect(busy) == []


def test_a_worker_busy_past_every_task_limit_is_stuck_not_busy() -> None:
    """A task received longer ago than the longest limit no longer holds the silence."""
    silent = snap(celery=celery(()), running={N1: NOW - 700},
                  thresholds=Thresholds(task_time_limit=300, task_limits={"app.long": 600}))
    [finding] = worker_unresponsive.detect(silent)
    assert (finding.unit, finding.evidence["silent_looks"]) == (W1, 5)
    held = replace(silent, thresholds=Thresholds(task_time_limit=800))
    assert worker_unresponsive.detect(held) == []


def test_a_restart_ends_what_the_run_before_was_running() -> None:
    """Tasks received before the unit's current start are not running any more."""
    state = State(running={N1: {"t-1": NOW - 700}})
    readings = Readings(taken_at=NOW, workers=(worker(W1),), nodes=nodes(worker(W1)),
                        node_lines={N1: ()})
    assert history.fold(state, readings, Thresholds()).running == {}


# the nodes of a celery multi unit

MULTI = "celery.service"


def multi(*states: tuple[str, str | None, float | None], up: float = 600,
          **kw: Any) -> Snapshot:  # noqa: ANN401
    """A multi unit active for ``up`` seconds, with nodes (name, /proc letter, pid file mtime)."""
    unit_ = replace(worker(MULTI, up=up, inactive_enter_us=since(up + 5)),
        main_pid=0)  # Type=forking with several nodes: systemd guesses none
    found = tuple(NodeState(name=name, unit=MULTI, pid=100 + i, pid_file=f"/run/{name}.pid",
                            written=written, process=letter)
                  for i, (name, letter, written) in enumerate(states))
    return Snapshot(taken_at=NOW, workers=(unit_,), nodes=found,
                    silence={n.name: Silence(started_us=unit_.active_enter_us, pid=n.pid,
                                             last_life=NOW - 600, looks=5, answered=True)
                             for n in found}, **kw)


def test_a_node_whose_pid_file_names_no_process_is_worker_down_on_its_unit() -> None:
    """One node gone, its file written in this run: worker_down at once, naming the node."""
    [finding] = worker_down.detect(multi((N1, None, NOW - 60), (N2, "S", NOW - 60),
                                         celery=celery((N2,))))
    assert (finding.scenario, finding.unit, finding.severity) == (
        Scenario.WORKER_DOWN, MULTI, Severity.HIGH)
    assert (finding.evidence["node"], finding.evidence["pid_file"], finding.hold) == (
        N1, f"/run/{N1}.pid", None)
    assert finding.summary == (f"node {N1} is gone (pid 100 of /run/{N1}.pid is not running); "
                               f"{MULTI} is still active")


def test_a_node_is_not_gone_while_it_may_be_starting_or_while_it_answers() -> None:
    """No pid file, or one left from before this run, within the grace; or it answers: none."""
    for written in (None, NOW - 700):
        assert worker_down.detect(multi((N1, None, written), up=10, celery=celery(()))) == []
    assert worker_down.detect(multi((N1, None, NOW - 60), celery=celery((N1,)))) == []
    [late] = worker_down.detect(multi((N1, None, None), up=60, celery=celery(())))
    assert late.severity == Severity.CRITICAL  # no node of any worker runs
    assert late.summary.startswith(f"node {N1} is gone (no pid file /run/{N1}.pid)")


def test_a_stopped_node_of_a_multi_unit_is_unresponsive_and_named() -> None:
    """A node in state T is proof: one finding on the unit naming it, high while another runs."""
    [finding] = worker_unresponsive.detect(multi((N1, "S", NOW), (N2, "T", NOW),
                                                 celery=celery((N1,))))
    assert (finding.unit, finding.severity) == (MULTI, Severity.HIGH)
    assert (finding.evidence["node"], finding.evidence["pid"],
            finding.evidence["process_state"]) == (N2, "101", "T")
    assert worker_unresponsive.detect(multi((N1, None, NOW), celery=celery(()))) == []  # gone


# critical tasks

TICK_OK = "[2023-11-14 22:13:10,000: INFO/ForkPoolWorker-1] Task app.tick[t-9] succeeded in 0.01s"


def test_a_critical_task_without_a_success_for_too_long_is_stalled() -> None:
    """The log's last success of a critical task, folded: stalled past stalled_after, else not."""
    limits = Thresholds(critical_tasks=("app.tick", "app.report"), stalled_after=60)
    state = State()
    at = logs.worker_lines([TICK_OK], NOW)[0][0].at
    first = history.fold(state, Readings(taken_at=at + 30, workers=(worker(W1),),
                                         worker_lines=(TICK_OK,)), limits)
    assert first.last_success == {"app.tick": at, "app.report": at + 30}
    assert critical_task_stalled.detect(first) == []
    later = history.fold(state, Readings(taken_at=at + 95, workers=(worker(W1),),
                                         worker_lines=()), limits)
    [finding] = critical_task_stalled.detect(later)
    assert (finding.scenario, finding.severity, finding.unit) == (
        Scenario.CRITICAL_TASK_STALLED, Severity.HIGH, None)
    assert finding.evidence == {"silent_s:app.report": 65.0, "silent_s:app.tick": 95.0}


def test_no_task_source_means_no_judgement_of_critical_tasks() -> None:
    """Without a worker log or task events, last_success is empty: nothing is claimed stalled."""
    limits = Thresholds(critical_tasks=("app.tick",), stalled_after=1)
    snapshot = history.fold(State(), Readings(taken_at=NOW, workers=(worker(W1),)), limits)
    assert snapshot.last_success == {}
    assert critical_task_stalled.detect(snapshot) == []


# stuck tasks


def test_inspect_active_start_times_are_read_as_wall_time_whichever_clock_said_them() -> None:
    """Celery 5.7's wall-clock time_start kept; an older pool's monotonic one converted."""
    active = {N1: [{"id": "a", "name": "app.nap", "time_start": NOW - 50, "worker_pid": 7},
                   {"id": "b", "name": "app.nap", "time_start": 900.0},
                   {"id": "c", "name": "app.nap"}, "junk"], N2: "not a list"}
    assert list(running(active, NOW, monotonic=1000.0)) == [
        ActiveTask(node=N1, id="a", name="app.nap", started=NOW - 50, pid=7),
        ActiveTask(node=N1, id="b", name="app.nap", started=NOW - 100)]


def test_a_task_past_its_limit_is_stuck_and_one_under_it_is_not() -> None:
    """Per name in task_limits, else task_time_limit: past it, task_stuck on its unit."""
    tasks = (ActiveTask(node=N1, id="a", name="app.nap", started=NOW - 50),
             ActiveTask(node=N1, id="b", name="app.report", started=NOW - 50))
    limits = Thresholds(task_time_limit=3600, task_limits={"app.nap": 30})
    [finding] = task_stuck.detect(snap(celery=CeleryState(replied=(N1,), tasks=tasks),
                                       thresholds=limits))
    assert (finding.scenario, finding.unit, finding.severity) == (
        Scenario.TASK_STUCK, W1, Severity.HIGH)
    assert finding.evidence == {"task": "app.nap", "task_id": "a", "node": N1,
                                "running_s": 50.0, "limit_s": 30}
    assert task_stuck.detect(snap(celery=CeleryState(replied=(N1,), tasks=tasks))) == []


def test_the_workers_are_asked_what_they_run_only_when_a_task_may_pass_its_limit() -> None:
    """After asking: again at the first start plus limit of a task seen, else a limit from now."""
    limits = Thresholds(task_time_limit=3600, task_limits={"app.nap": 30})
    state = State()
    seen = CeleryState(replied=(N1,), tasks=(
        ActiveTask(node=N1, id="a", name="app.nap", started=NOW - 10),))
    history.fold(state, Readings(taken_at=NOW, workers=(worker(W1),), celery=seen), limits)
    assert state.tasks_due == NOW + 20
    idle = CeleryState(replied=(N1,), tasks=())
    history.fold(state, Readings(taken_at=NOW, workers=(worker(W1),), celery=idle), limits)
    assert state.tasks_due == NOW + 30
    unasked = CeleryState(replied=(N1,))
    history.fold(state, Readings(taken_at=NOW + 5, workers=(worker(W1),), celery=unasked),
                 limits)
    assert state.tasks_due == NOW + 30
