"""Each executor action over FakeSystemd and ManualClock: what it calls and how it verifies."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

import pytest

from healer.errors import ActionError, NotAllowed
from healer.executor.executor import Executor
from healer.policy.models import Step
from healer.testing import FakeSystemd, ManualClock, unit

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from healer.model import UnitState
    from healer.policy.models import Action
    from healer.systemd.backend import JobVerb

W1 = "celery-w1.service"
W2 = "celery-w2.service"
BEAT = "celery-beat.service"
BROKER = "redis.service"
OTHER = "flower.service"
ALLOWED = frozenset({W1, W2, BEAT, BROKER, OTHER})


class FakeChecks:
    """Re-probes the test controls: the broker answers after so many asks; silent workers."""

    def __init__(self, answers_after: int | None = 0, silent: Iterable[str] = (),
                 silent_for: int | None = None) -> None:
        self.answers_after = answers_after
        self.silent = list(silent)
        self.silent_for = silent_for
        self.asked = 0
        self.pinged = 0

    def broker_answers(self) -> bool:
        """False for the first ``answers_after`` asks, then True (never, when None)."""
        self.asked += 1
        return self.answers_after is not None and self.asked > self.answers_after

    def silent_workers(self) -> list[str]:
        """The workers set as silent (for the first ``silent_for`` asks only, when set)."""
        self.pinged += 1
        if self.silent_for is not None and self.pinged > self.silent_for:
            return []
        return list(self.silent)


class SystemdFake(FakeSystemd):
    """FakeSystemd, except that stopping a failed unit leaves it failed, as systemd does.

    (systemd's unit_stop returns -EALREADY for an inactive-or-failed unit and the job ends
    "done" with the state unchanged; the shipped fake makes it inactive.)
    """

    def job(self, verb: JobVerb, name: str, timeout: float) -> str:
        """Stop of a failed unit: recorded, nothing changes; otherwise as FakeSystemd."""
        if verb == "stop" and self.unit_state(name).active_state == "failed":
            self.calls.append((verb, name))
            return "done"
        return super().job(verb, name, timeout)


def step(action: Action, verify: float = 5) -> Step:
    """A step of the action, on the unit it is given."""
    return Step(action=action, verify=verify)


def executor(fake: FakeSystemd, clock: ManualClock | None = None,
             checks: FakeChecks | None = None, schedule_file: Path | None = None) -> Executor:
    """An Executor over the fake with every test unit allowed, W1 and W2 as workers."""
    return Executor(fake, ALLOWED, clock or ManualClock(), checks=checks,
                    schedule_file=schedule_file, workers=(W1, W2))


def stamp(clock: ManualClock) -> str:
    """The UTC stamp of the clock's time, as backups are named."""
    return datetime.fromtimestamp(clock.time(), timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# -- clear_beat_schedule ---------------------------------------------------------------------


def test_clear_beat_schedule_moves_files_aside_between_stop_and_start(tmp_path: Path) -> None:
    """Beat is stopped, each schedule file moved to <name>.healer-<stamp>, then beat started."""
    schedule = tmp_path / "schedule"
    files = {f"schedule{s}": f"content {s}" for s in (".dat", ".dir", ".bak")}
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    fake = FakeSystemd(unit(BEAT))
    clock = ManualClock()
    seen: list[list[str]] = []

    def look(state: UnitState) -> UnitState:
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        return state

    fake.outcomes[BEAT] = look
    when = stamp(clock)

    done = executor(fake, clock, schedule_file=schedule).execute(
        step("clear_beat_schedule"), BEAT)

    assert fake.calls == [("stop", BEAT), ("start", BEAT)]
    backups = sorted(f"{name}.healer-{when}" for name in files)
    assert seen == [backups]
    assert sorted(p.name for p in tmp_path.iterdir()) == backups
    for name, content in files.items():
        assert (tmp_path / f"{name}.healer-{when}").read_text() == content
    assert done.outcome == "healed"
    assert "3 files" in done.detail
    listed = str(done.evidence["backups"]).split(", ")
    assert sorted(listed) == sorted(str(tmp_path / b) for b in backups)
    assert fake.units[BEAT].active_state == "active"


def test_clear_beat_schedule_resets_a_failed_beat_before_start(tmp_path: Path) -> None:
    """A beat still failed after its stop is reset-failed, then started; no files is fine."""
    fake = SystemdFake(unit(BEAT, "failed", "exit-code"))

    done = executor(fake, schedule_file=tmp_path / "schedule").execute(
        step("clear_beat_schedule"), BEAT)

    assert fake.calls == [("stop", BEAT), ("reset-failed", BEAT), ("start", BEAT)]
    assert done.outcome == "healed"
    assert done.evidence["backups"] is None


def test_clear_beat_schedule_without_schedule_file_is_an_action_error() -> None:
    """Without [beat] schedule_file the action raises ActionError and calls nothing."""
    fake = FakeSystemd(unit(BEAT))

    with pytest.raises(ActionError, match="schedule_file"):
        executor(fake).execute(step("clear_beat_schedule"), BEAT)

    assert fake.calls == []


# -- restart_broker --------------------------------------------------------------------------


def test_restart_broker_restarts_only_the_broker_and_reports_silent_workers() -> None:
    """Only the broker is restarted; a running worker still silent after the wait is reported."""
    fake = FakeSystemd(unit(BROKER, "failed", "signal"), unit(W1), unit(W2))
    checks = FakeChecks(answers_after=2, silent=[W1])

    done = executor(fake, checks=checks).execute(step("restart_broker"), BROKER)

    assert fake.calls == [("restart", BROKER)]
    assert checks.asked == 3
    assert done.outcome == "healed"
    assert done.evidence["silent_workers"] == W1
    assert f"{W1} not reconnected" in done.detail


def test_restart_broker_waits_only_for_configured_workers() -> None:
    """Silent units that are not configured workers are neither waited for nor reported."""
    fake = FakeSystemd(unit(BROKER), unit(W1), unit(W2), unit(OTHER))
    checks = FakeChecks(silent=[OTHER, W2, "unknown.service"])

    done = executor(fake, checks=checks).execute(step("restart_broker"), BROKER)

    assert fake.calls == [("restart", BROKER)]
    assert done.evidence["silent_workers"] == W2


def test_restart_broker_with_workers_reconnected_restarts_only_the_broker() -> None:
    """No silent workers: only the broker is restarted and no worker is named."""
    fake = FakeSystemd(unit(BROKER), unit(W1), unit(W2))

    done = executor(fake, checks=FakeChecks()).execute(step("restart_broker"), BROKER)

    assert fake.calls == [("restart", BROKER)]
    assert done.outcome == "healed"
    assert done.evidence["silent_workers"] is None
    assert "running workers reconnected" in done.detail


def test_restart_broker_leaves_a_worker_that_reconnects_while_waiting() -> None:
    """A running worker silent at first but answering within verify is not reported."""
    fake = FakeSystemd(unit(BROKER), unit(W1), unit(W2))

    done = executor(fake, checks=FakeChecks(silent=[W1], silent_for=3)).execute(
        step("restart_broker"), BROKER)

    assert fake.calls == [("restart", BROKER)]
    assert done.outcome == "healed"
    assert done.evidence["silent_workers"] is None


def test_restart_broker_that_never_answers_is_not_healed() -> None:
    """An active broker unit whose broker never answers within verify is not_healed."""
    fake = FakeSystemd(unit(BROKER), unit(W1))
    clock = ManualClock()
    checks = FakeChecks(answers_after=None, silent=[W1])

    done = executor(fake, clock, checks=checks).execute(step("restart_broker", 5), BROKER)

    assert done.outcome == "not_healed"
    assert "does not answer" in done.detail
    assert fake.calls == [("restart", BROKER)]
    assert clock.monotonic() >= 10  # 5 s settling, then 5 s waiting for an answer


def test_restart_broker_without_checks_only_restarts_the_broker() -> None:
    """Without re-probes the broker restart is verified through systemd alone."""
    fake = FakeSystemd(unit(BROKER, "failed", "signal"), unit(W1))

    done = executor(fake).execute(step("restart_broker"), BROKER)

    assert fake.calls == [("restart", BROKER)]
    assert done.outcome == "healed"


# -- reset_failed, daemon_reload, restart ----------------------------------------------------


def test_reset_failed_on_a_failed_unit_is_not_healed() -> None:
    """reset-failed leaves a failed unit inactive: not_healed, it still needs starting."""
    fake = FakeSystemd(unit(W1, "failed", "exit-code"))

    done = executor(fake).execute(step("reset_failed"), W1)

    assert fake.calls == [("reset-failed", W1)]
    assert done.outcome == "not_healed"
    assert "still needs starting" in done.detail
    assert done.evidence == {"active_state": "inactive"}


def test_reset_failed_on_an_active_unit_is_healed() -> None:
    """reset-failed on a unit that is active is healed."""
    fake = FakeSystemd(unit(W1))

    done = executor(fake).execute(step("reset_failed"), W1)

    assert fake.calls == [("reset-failed", W1)]
    assert done.outcome == "healed"


def test_daemon_reload_reloads_then_restarts() -> None:
    """daemon_reload calls daemon-reload, then restarts the unit and verifies it."""
    fake = FakeSystemd(unit(W1, "failed", "signal"))

    done = executor(fake).execute(step("daemon_reload"), W1)

    assert fake.calls == [("daemon-reload", ""), ("restart", W1)]
    assert done.outcome == "healed"
    assert done.detail.startswith("daemon-reload, then ")
    assert done.evidence["active_state"] == "active"


@pytest.mark.parametrize(
    "action",
    ["restart_unit", "reset_failed", "daemon_reload", "restart_broker", "clear_beat_schedule"],
)
def test_unit_outside_the_allowlist_is_refused(action: Action, tmp_path: Path) -> None:
    """Every action on a unit outside [units] raises NotAllowed before calling anything."""
    fake = FakeSystemd(unit("postgresql.service", "failed", "signal"))

    with pytest.raises(NotAllowed, match="not in \\[units\\]"):
        executor(fake, checks=FakeChecks(), schedule_file=tmp_path / "schedule").execute(
            step(action), "postgresql.service")

    assert fake.calls == []


def test_escalate_is_not_an_executor_action() -> None:
    """The executor refuses escalate (the pipeline's business) with ActionError, calling nothing."""
    fake = FakeSystemd(unit(W1))

    with pytest.raises(ActionError, match="not an executor action"):
        executor(fake).execute(step("escalate"), W1)

    assert fake.calls == []
