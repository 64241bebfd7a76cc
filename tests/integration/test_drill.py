"""`healer drill` on the real sandbox: every drill heals; without a remedy, all is put back."""

from __future__ import annotations

import shelve
import shutil
from pathlib import Path

import pytest

from healer.doctor import AGENT
from healer.probes import process
from sandbox.base import wait_until
from sandbox.stack import WORKER, CeleryStack, free_port
from tests.conftest import audit_records, healer
from tests.integration.conftest import metrics, start_agent

pytestmark = pytest.mark.integration
SHIPPED = Path(__file__).resolve().parents[2] / "policies"


def drills(stack: CeleryStack, records: str = "drill_ended") -> list[dict[str, object]]:
    """The audit log's records of that drill event."""
    return [r for r in audit_records(stack.audit_log) if r["event"] == records]


@pytest.mark.parametrize("scenario", ["worker-kill", "worker-stop", "broker-stop",
                                      "beat-corrupt-schedule", "queue-consumer-cancel"])
def test_every_drill_heals_end_to_end(stack: CeleryStack, scenario: str) -> None:
    """The fault is injected, found and healed by the passes the drill runs; the log says so."""
    config = stack.config(thresholds="not_consuming_after = 5")  # beat's ticks pile up fast
    run = healer(config, "drill", scenario, "--yes", "--timeout", "90s")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "healed; detected after" in run.stdout
    [ended] = drills(stack)
    assert (ended["drill"], ended["outcome"], ended["restored"]) == (scenario, "healed", False)
    assert 0 <= float(str(ended["detect_s"])) <= float(str(ended["heal_s"]))
    assert healer(config, "diagnose").returncode == 0


def test_a_running_agent_heals_the_drill(stack: CeleryStack) -> None:
    """With healer.service active the drill only watches: the agent restarts the worker."""
    port = free_port()
    config = stack.config(agent=f'interval = 1\nmetrics_listen = "127.0.0.1:{port}"')
    start_agent(stack, config)
    run = healer(config, "drill", "worker-kill", "--yes", "--timeout", "60s")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"the agent ({AGENT}) runs: watching it heal" in run.stdout
    assert metrics(port)['healer_actions_total{action="restart_unit",outcome="healed"}'] == 1


def without(stack: CeleryStack, policy: str, scenario: str) -> Path:
    """A drill of ``scenario`` that cannot heal: the shipped policies but ``policy``; the config."""
    policies = stack.root / "policies"
    shutil.copytree(SHIPPED, policies)
    (policies / policy).unlink()
    config = stack.config(paths=f'state_dir = "{stack.root / "state"}"\n'
                                f'audit_log = "{stack.audit_log}"\npolicies = "{policies}"')
    run = healer(config, "drill", scenario, "--yes", "--timeout", "8s")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "NOT HEALED within 8s" in run.stdout
    assert "put back" in run.stdout
    [ended] = drills(stack)
    assert (ended["outcome"], ended["restored"]) == ("not_healed", True)
    return config


def test_without_a_remedy_a_stopped_worker_is_continued(stack: CeleryStack) -> None:
    """No rule for worker_unresponsive: not healed in time, SIGCONT, the same worker answers."""
    pid = stack.main_pid(WORKER)
    config = without(stack, "worker_unresponsive.yaml", "worker-stop")
    assert stack.main_pid(WORKER) == pid
    assert process.state(pid) not in process.STOPPED
    wait_until(lambda: healer(config, "diagnose").returncode == 0, 30, "the worker to answer")


def test_without_a_remedy_beats_schedule_is_put_back(stack: CeleryStack) -> None:
    """No rule for beat: the copy taken first replaces the corrupt schedule; beat runs on it."""
    config = without(stack, "beat.yaml", "beat-corrupt-schedule")
    assert not list(stack.schedule.parent.glob("*.drill"))
    wait_until(lambda: healer(config, "diagnose").returncode == 0, 30, "beat to run again")
    with shelve.open(str(stack.schedule), flag="r") as schedule:  # noqa: S301 - beat's own
        assert "tick" in schedule["entries"]


def test_a_drill_is_refused_without_yes_off_the_allowlist_or_on_an_unwell_host(
        stack: CeleryStack) -> None:
    """Exit 2 and nothing injected: no --yes, a unit not in [units], a worker already down."""
    config = stack.config()
    pid = stack.main_pid(WORKER)
    for args, said in ((("worker-kill",), "add --yes"),
                       (("worker-kill", "--yes", "--unit", "other.service"), "not one"),
                       (("beat-corrupt-schedule", "--yes", "--unit", WORKER), "not one")):
        run = healer(config, "drill", *args)
        assert (run.returncode, said in run.stderr) == (2, True), run.stderr
    assert stack.main_pid(WORKER) == pid
    stack.kill(WORKER)
    run = healer(config, "drill", "worker-stop", "--yes")
    assert run.returncode == 2
    assert "not while the host is unhealthy: worker_down" in run.stderr
    assert drills(stack, "drill_started") == []
