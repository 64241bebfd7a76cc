"""`healer run` as a Type=notify unit of the sandbox's systemd, and crash safety under SIGKILL."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

from healer.doctor import AGENT
from healer.state import StateStore
from sandbox.base import wait_until
from sandbox.stack import WORKER, CeleryStack, free_port
from tests.conftest import audit_records, healer
from tests.integration.conftest import client, metrics, start_agent

pytestmark = pytest.mark.integration
SHIPPED = Path(__file__).resolve().parents[2] / "policies"


def agent_config(stack: CeleryStack, policies: Path, port: int) -> Path:
    """A config with its own policy folder, a one-second interval and a metrics endpoint."""
    return stack.config(paths=f'state_dir = "{stack.root / "state"}"\n'
                              f'audit_log = "{stack.audit_log}"\npolicies = "{policies}"',
                        agent=f'interval = 1\nmetrics_listen = "127.0.0.1:{port}"')


def copy_policies(stack: CeleryStack) -> Path:
    """A writable copy of the shipped policies."""
    folder = stack.root / "policies"
    shutil.copytree(SHIPPED, folder)
    return folder


def test_agent_heals_by_itself_and_reports(stack: CeleryStack) -> None:
    """The agent unit heals a killed worker unasked; STATUS shows it; metrics match the audit."""
    port = free_port()
    start_agent(stack, agent_config(stack, copy_policies(stack), port))
    assert stack.manager.show(AGENT, "ActiveState") == "active"
    assert stack.manager.show(AGENT, "WatchdogUSec") == "10s"
    stack.kill(WORKER)
    wait_until(lambda: "restart_unit hiringdog-celery.service: healed"
               in stack.manager.show(AGENT, "StatusText"), 40, "the agent's STATUS")
    assert stack.active(WORKER)
    samples = metrics(port)
    healed = [r for r in audit_records(stack.audit_log)
              if r["event"] == "action_finished" and r["outcome"] == "healed"]
    key = 'healer_actions_total{action="restart_unit",outcome="healed"}'
    assert samples[key] == len(healed) == 1
    assert samples['healer_findings_total{scenario="worker_down"}'] >= 1
    assert samples["healer_passes_total"] >= 1
    stack.manager.systemctl("stop", AGENT)
    assert stack.manager.show(AGENT, "Result") == "success"


def test_sighup_with_a_broken_policy_keeps_the_old_one(stack: CeleryStack) -> None:
    """SIGHUP with a broken policy file: the agent keeps running on the previous policies."""
    policies = copy_policies(stack)
    start_agent(stack, agent_config(stack, policies, free_port()))
    (policies / "worker_down.yaml").write_text("rules:\n  - name: broken\n    match: {}\n")
    stack.manager.systemctl("kill", "--signal=HUP", AGENT)
    wait_until(lambda: "reload failed" in stack.manager.show(AGENT, "StatusText"), 20,
               "the agent to report the failed reload")
    assert stack.manager.show(AGENT, "ActiveState") == "active"
    assert "worker_down.yaml:3" in stack.manager.show(AGENT, "StatusText")
    stack.kill(WORKER)
    wait_until(lambda: stack.active(WORKER), 40, "the worker healed on the old policy")


def steps_started(log: Path) -> int:
    """How many action_started records the log holds."""
    return log.read_bytes().count(b'"event":"action_started"') if log.exists() else 0


def begun_after(log: Path, seen: int) -> bool:
    """Whether a step was started since ``seen`` were."""
    return steps_started(log) > seen


def test_sigkill_at_random_moments_loses_nothing_and_keeps_the_limits(
        stack: CeleryStack) -> None:
    """50 SIGKILLs during remediation: the log verifies, every step has an end, nothing twice."""
    starts = stack.root / "starts.log"
    stack.manager.write_unit(WORKER, (  # restarted as often as healer likes: no start limit
        "[Unit]\nStartLimitIntervalSec=0\n"
        f"[Service]\nExecStart=/bin/sh -c 'echo start >> {starts}; sleep 1; exit 1'\n"))
    stack.manager.reload()
    stack.manager.systemctl("restart", WORKER)
    policies = stack.root / "policies"
    policies.mkdir()
    limit = 80  # remediation goes on through every kill: the worker fails again each second
    (policies / "p.yaml").write_text(
        "rules:\n  - name: loop\n    match: {scenario: worker_down}\n    ladder:\n"
        f"      - {{action: restart_unit, verify: 0.3s, limit: {{max: {limit}, within: 1h}}}}\n"
        "      - {action: escalate}\n")
    config = stack.config(paths=f'state_dir = "{stack.root / "state"}"\n'
                                f'audit_log = "{stack.audit_log}"\npolicies = "{policies}"',
                          agent="interval = 1", extra="[guard]\nbudget_per_hour = 1000\n")
    rng = random.Random(7)  # noqa: S311 - when to kill, not a secret
    for _ in range(50):
        begun = steps_started(stack.audit_log)
        agent = subprocess.Popen([sys.executable, "-m", "healer", "--config", str(config), "run"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(partial(begun_after, stack.audit_log, begun), 20, "a restart to begin",
                   pause=0.01)
        time.sleep(rng.uniform(0, 0.5))  # the job, the 0.3 s verify, the outcome, the next pass
        agent.send_signal(signal.SIGKILL)
        agent.wait()
    state = StateStore(stack.root / "state").load()
    attempts = state.actions.get(f"restart_unit:{WORKER}", [])
    healer(config, "pause", "--reason", "sets aside a torn tail, if any, by writing")
    healer(config, "run-once")  # paused: it acts on nothing, it only closes what was open
    verify = healer(config, "audit", "verify")
    assert verify.returncode == 0, verify.stdout
    records = audit_records(stack.audit_log)
    started = [r for r in records if r["event"] == "action_started"]
    ended = {r["action_id"]: r["event"] for r in records
             if r["event"] in {"action_finished", "action_interrupted"}}
    assert [r["action_id"] for r in started if r["action_id"] not in ended] == []
    interrupted = [r for r in records if r["event"] == "action_interrupted"]
    assert interrupted, "no kill landed mid-step: the test did not test"
    restarts = starts.read_text().count("start") - 1
    assert restarts <= len(started) <= len(attempts) <= limit
    assert restarts > 0
    listed = json.loads(healer(config, "audit", "list", "--json").stdout)
    steps = [step for incident in listed for step in incident["steps"]]
    assert steps.count("restart_unit:interrupted") == len(interrupted)
    assert StateStore(stack.root / "state").load().in_flight == {}


def test_agent_counts_task_failures_from_celery_events(stack: CeleryStack) -> None:
    """With task_events and no worker log, failures reach the agent through Celery's events."""
    port = free_port()
    config = stack.config(
        celery=f'broker_url = "{stack.broker_url}"\nqueues = ["celery"]\ntask_events = true',
        paths=f'state_dir = "{stack.root / "state"}"\naudit_log = "{stack.audit_log}"\n'
              f'policies = "{copy_policies(stack)}"',
        agent=f'interval = 1\nmetrics_listen = "127.0.0.1:{port}"')
    start_agent(stack, config)
    time.sleep(1.5)  # the receiver is connected before the tasks fail
    app = client(stack)
    for _ in range(3):
        app.send_task("demoapp.fail")
    wait_until(lambda: metrics(port).get('healer_findings_total{scenario="task_failures"}', 0) >= 1,
               30, "a task_failures finding from events")
    assert "task_failures" in stack.manager.show(AGENT, "StatusText")
