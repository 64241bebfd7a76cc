"""Proof is acted on at once, silence only once confirmed, and a busy worker is left alone.

On the real sandbox: solo-pool workers busy in a task (answering neither ping nor heartbeat),
SIGSTOPped workers, the agent following systemd's state changes, and losing them.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from healer.doctor import AGENT
from sandbox.base import wait_until
from sandbox.stack import WORKER, CeleryStack
from tests.conftest import audit_records, healer
from tests.integration.conftest import client, start_agent

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration
SOLO, SOLO_NODE = "celery-solo.service", "solo@sandbox"


@pytest.fixture
def journaled() -> Iterator[CeleryStack]:
    """The sandbox with its workers logging to the journal, which healer reads unit by unit."""
    with CeleryStack(logs="journal") as running:
        yield running


def config(stack: CeleryStack, interval: float = 1, thresholds: str = "") -> Path:
    """A config for the stack with the agent's interval and these [thresholds] lines."""
    return stack.config(agent=f"interval = {interval}", thresholds=thresholds)


def solo(stack: CeleryStack, options: str) -> Any:  # noqa: ANN401 - Celery is untyped
    """A solo-pool worker on its own queue, answering once; a client of the broker."""
    stack.add_worker(SOLO, SOLO_NODE, options=f"--pool=solo -Q solo {options}")
    app = client(stack)
    wait_until(lambda: bool(app.control.ping(destination=[SOLO_NODE], timeout=0.5)), 30,
               "the solo worker to answer")
    return app


def listening(stack: CeleryStack) -> None:
    """Once the agent has passed and its event listener is connected (it hears what follows)."""
    wait_until(lambda: stack.manager.show(AGENT, "StatusText").startswith("healthy"), 20,
               "the agent's first pass")
    time.sleep(2)  # the listener connects in its own thread, within about a second


def restarts(stack: CeleryStack, unit: str) -> list[dict[str, Any]]:
    """The audit log's action_started records on ``unit``."""
    return [r for r in audit_records(stack.audit_log)
            if r["event"] == "action_started" and r["unit"] == unit]


def missed_pings(app: Any, seconds: float) -> int:  # noqa: ANN401
    """Ping the solo node for ``seconds``: how many pings it left unanswered."""
    missed, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        missed += not app.control.ping(destination=[SOLO_NODE], timeout=0.5)
        time.sleep(0.5)
    return missed


def test_a_busy_solo_worker_with_task_events_is_not_restarted(journaled: CeleryStack) -> None:
    """Its 40 s task running, a silence longer than the window holds no restart."""
    stack = journaled
    app = solo(stack, "-E")
    pid = stack.main_pid(SOLO)
    start_agent(stack, config(stack, thresholds="startup_grace = 1\nsilence_window = 3\n"
                                                "silence_probes = 2"))
    listening(stack)
    app.send_task("demoapp.nap", args=[40], queue="solo")
    assert missed_pings(app, 12) >= 10  # silent far beyond its window, and busy
    assert restarts(stack, SOLO) == []
    assert stack.main_pid(SOLO) == pid
    stack.kill(SOLO)  # rather than wait out its task at the sandbox's stop


def test_a_busy_solo_worker_without_task_events_is_not_restarted(journaled: CeleryStack
                                                                 ) -> None:
    """No task events: a worker silent 10 s in its task is left alone."""
    stack = journaled
    app = solo(stack, "")
    pid = stack.main_pid(SOLO)
    start_agent(stack, config(stack, thresholds="startup_grace = 1"))
    listening(stack)
    app.send_task("demoapp.nap", args=[10], queue="solo")
    assert missed_pings(app, 12) >= 1  # the agent's pings went unanswered as well
    assert restarts(stack, SOLO) == []
    assert stack.main_pid(SOLO) == pid
    wait_until(lambda: bool(app.control.ping(destination=[SOLO_NODE], timeout=0.5)), 10,
               "the solo worker to answer again after its task")


def test_a_stopped_solo_worker_is_restarted_by_the_first_pass(stack: CeleryStack) -> None:
    """SIGSTOP is proof: the first pass restarts it, though it started seconds ago (its grace)."""
    solo(stack, "")
    os.kill(stack.main_pid(SOLO), signal.SIGSTOP)
    result = healer(config(stack), "run-once", "--json")
    actions = json.loads(result.stdout)["actions"]
    assert [(a["unit"], a["action"], a["outcome"]) for a in actions] == [
        (SOLO, "restart_unit", "healed")]
    assert [r["scenario"] for r in restarts(stack, SOLO)] == ["worker_unresponsive"]


def test_a_worker_that_hangs_soon_after_its_heal_is_found_at_once(stack: CeleryStack) -> None:
    """Healed, then SIGSTOPped 5 s later: restarted within seconds, not after the 30 s grace."""
    start_agent(stack, config(stack))
    stack.kill(WORKER)
    wait_until(lambda: len(restarts(stack, WORKER)) == 1 and stack.active(WORKER), 30,
               "the first heal")
    stack.wait_worker_ready(seen=1)
    time.sleep(5)
    os.kill(stack.main_pid(WORKER), signal.SIGSTOP)
    stopped = time.monotonic()
    wait_until(lambda: len(restarts(stack, WORKER)) == 2, 15, "the hung worker's restart")
    assert time.monotonic() - stopped < 10
    assert restarts(stack, WORKER)[1]["scenario"] == "worker_unresponsive"


def agent_log(stack: CeleryStack) -> list[str]:
    """The events the agent logged, in order."""
    path = stack.root / "healer.log"
    return [json.loads(line).get("event", "") for line in path.read_text().splitlines()
            if line.startswith("{")] if path.exists() else []


def test_an_event_starts_a_pass_and_polling_takes_over_when_events_are_lost(
        stack: CeleryStack) -> None:
    """A kill heals before the next interval pass; events lost (a re-exec), polling heals."""
    interval = 8.0
    policies = stack.root / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(  # no backoff: the second kill is restarted at once
        "rules:\n  - name: restart\n    match: {scenario: worker_down}\n    ladder:\n"
        "      - {action: restart_unit, verify: 2s, limit: {max: 5, within: 10m}}\n")
    start_agent(stack, stack.config(agent=f"interval = {interval}", paths=(
        f'state_dir = "{stack.root / "state"}"\naudit_log = "{stack.audit_log}"\n'
        f'policies = "{policies}"')))
    wait_until(lambda: stack.manager.show(AGENT, "StatusText").startswith("healthy"), 20,
               "the agent's first pass")
    killed = time.time()
    stack.kill(WORKER)
    wait_until(lambda: len(restarts(stack, WORKER)) == 1, 20, "the event-driven restart")
    started = datetime.fromisoformat(restarts(stack, WORKER)[0]["ts"].replace("Z", "+00:00"))
    assert started.timestamp() - killed < interval / 2
    wait_until(lambda: stack.active(WORKER) and "healthy" in stack.manager.show(
        AGENT, "StatusText"), 30, "the heal")
    stack.manager.systemctl("daemon-reexec")
    wait_until(lambda: "events_lost" in agent_log(stack), 10, "the agent to see events lost")
    stack.kill(WORKER)
    wait_until(lambda: len(restarts(stack, WORKER)) == 2, 3 * interval, "the polled restart")
    wait_until(lambda: "events_resubscribed" in agent_log(stack), 3 * interval,
               "the agent to subscribe again")
