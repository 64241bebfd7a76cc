"""Worker units as Celery's docs write them, on the real sandbox, with healer told only their names.

A ``celery multi`` unit (two nodes, EnvironmentFile, Type=forking, ``%n`` and ``%I`` in its
file names), a template instance (``celery@w1.service``), and a worker that logs nowhere.
"""

from __future__ import annotations

import json
import os
import signal
from typing import TYPE_CHECKING, Any

import pytest

from sandbox.base import wait_until
from sandbox.stack import BEAT, CeleryStack
from tests.conftest import healer
from tests.integration.conftest import client

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

MULTI = "celery.service"
OPTIONAL = {"database_unreachable", "critical_task_stalled"}  # not set up: no [database], [tasks]


def config(stack: CeleryStack, unit: str, name: str) -> Path:
    """A config naming only ``unit`` as its worker: no nodes, no worker_log, no beat log."""
    root = stack.root / name
    root.mkdir()
    return stack.config(
        root / "healer.toml",
        celery=f'broker_url = "{stack.broker_url}"',
        units=f'workers = ["{unit}"]\nbeat = "{BEAT}"\n'
              f'broker = "{stack.broker_unit}"',
        beat=f'schedule_file = "{stack.schedule}"',
        paths=f'state_dir = "{root / "state"}"\naudit_log = "{root / "audit.jsonl"}"',
    )


def diagnosis(path: Path) -> tuple[int, dict[str, Any]]:
    """Exit code and the JSON of ``healer diagnose --json``."""
    result = healer(path, "diagnose", "--json")
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def answering(stack: CeleryStack, nodes: list[str]) -> set[str]:
    """The nodes among ``nodes`` that answer a ping now."""
    replies = client(stack).control.ping(destination=nodes, timeout=1.0) or []
    return {name for reply in replies for name in reply}


@pytest.fixture(scope="module")
def docs() -> Iterator[tuple[CeleryStack, list[str]]]:
    """Broker, beat and a ``celery multi`` unit of two nodes, both answering."""
    with CeleryStack(worker=False) as stack:
        nodes = stack.add_multi(MULTI)
        wait_until(lambda: answering(stack, nodes) == set(nodes), 30, "both nodes to answer")
        yield stack, nodes


def test_a_multi_unit_is_discovered_and_its_healthy_stack_is_ok(
        docs: tuple[CeleryStack, list[str]]) -> None:
    """Both nodes, their logs and beat's log are found: OK, with nothing of theirs unwatched."""
    stack, _ = docs
    path = config(stack, MULTI, "healthy")
    code, seen = diagnosis(path)
    assert (code, seen["status"], seen["findings"], seen["unknown"]) == (0, "OK", [], {})
    assert set(seen["unwatched"]) == OPTIONAL
    text = healer(path, "diagnose").stdout.splitlines()
    assert text[0] == ("healer diagnose: OK "
                       "(not watching: database_unreachable, critical_task_stalled)")


def test_task_failures_are_found_in_the_discovered_log(
        docs: tuple[CeleryStack, list[str]]) -> None:
    """Failing tasks are counted from the nodes' ``%n%I`` log files, with no worker_log set."""
    stack, _ = docs
    path = config(stack, MULTI, "failures")
    assert diagnosis(path)[0] == 0  # the logs' cursors start here
    for _ in range(3):
        client(stack).send_task("demoapp.fail")
    wait_until(lambda: sum(f.read_text().count("raised unexpected")
                           for f in (stack.root / "celery").glob("*.log")) >= 3, 20,
               "three failures in the nodes' logs")
    _, seen = diagnosis(path)
    assert [(f["scenario"], f["unit"]) for f in seen["findings"]] == [("task_failures", MULTI)]
    assert seen["findings"][0]["evidence"] == {"failed:demoapp.fail": 3}


def test_a_stopped_node_is_found(docs: tuple[CeleryStack, list[str]]) -> None:
    """A SIGSTOPped node of an active unit is worker_unresponsive on the unit, naming the node."""
    stack, nodes = docs
    pid = stack.node_pid(nodes[1])
    os.kill(pid, signal.SIGSTOP)
    try:
        code, seen = diagnosis(config(stack, MULTI, "stopped"))
    finally:
        os.kill(pid, signal.SIGCONT)
    assert code == 2  # the failures of the test before are in the logs' last 64 KiB too
    [finding] = [f for f in seen["findings"] if f["scenario"] != "task_failures"]
    assert (finding["scenario"], finding["unit"]) == ("worker_unresponsive", MULTI)
    assert (finding["evidence"]["node"], finding["evidence"]["process_state"]) == (nodes[1], "T")
    assert stack.active(MULTI)


def test_a_node_killed_while_the_unit_stays_active_is_healed(
        docs: tuple[CeleryStack, list[str]]) -> None:
    """One node SIGKILLed, the unit still active: worker_down naming it, restart, both answer."""
    stack, nodes = docs
    os.kill(stack.node_pid(nodes[0]), signal.SIGKILL)
    wait_until(lambda: nodes[0] not in answering(stack, nodes), 10, "the node to be gone")
    assert stack.active(MULTI)
    result = healer(config(stack, MULTI, "killed"), "run-once", "--json")
    report = json.loads(result.stdout)
    [finding] = [f for f in report["findings"] if f["scenario"] != "task_failures"]
    assert (finding["scenario"], finding["unit"], finding["evidence"]["node"]) == (
        "worker_down", MULTI, nodes[0])
    assert [(a["action"], a["outcome"]) for a in report["actions"]
            if a["scenario"] == "worker_down"] == [("restart_unit", "healed")]
    wait_until(lambda: answering(stack, nodes) == set(nodes), 30, "both nodes to answer again")


@pytest.fixture(scope="module")
def shapes() -> Iterator[CeleryStack]:
    """Broker and beat, a template instance ``celery@w1``, and ``mute@quiet`` that logs nowhere."""
    with CeleryStack(worker=False) as stack:
        stack.add_instance("w1")
        stack.add_instance("quiet", output="null", template="mute")
        yield stack


def instance(stack: CeleryStack, unit: str) -> tuple[Path, str, dict[str, Any]]:
    """The config of an instance once its node ``%i@HOST`` answers, and what diagnose says (OK)."""
    path = config(stack, unit, unit.partition(".")[0])
    node = f"{unit.partition('@')[2].partition('.')[0]}@{os.uname().nodename}"
    wait_until(lambda: answering(stack, [node]) == {node}, 30, f"the node of {unit}")
    code, seen = diagnosis(path)
    assert (code, seen["findings"]) == (0, [])
    return path, node, seen


def test_a_template_instance_is_discovered_and_healed(shapes: CeleryStack) -> None:
    """``celery@w1.service``: its node ``w1@%h`` is found, and a SIGSTOP of it healed."""
    unit = "celery@w1.service"
    path, node, seen = instance(shapes, unit)
    assert set(seen["unwatched"]) == OPTIONAL  # its log: append:log/%i.log
    os.kill(shapes.main_pid(unit), signal.SIGSTOP)
    report = json.loads(healer(path, "run-once", "--json").stdout)
    assert [(f["scenario"], f["evidence"]["node"]) for f in report["findings"]] == [
        ("worker_unresponsive", node)]
    assert [(a["action"], a["outcome"]) for a in report["actions"]] == [
        ("restart_unit", "healed")]
    wait_until(lambda: answering(shapes, [node]) == {node}, 30, "the node to answer again")


def test_a_worker_that_logs_nowhere_says_task_failures_are_unwatched(
        shapes: CeleryStack) -> None:
    """No log anywhere and task events off: task_failures is unwatched, the code still OK."""
    unit = "mute@quiet.service"
    path, _, seen = instance(shapes, unit)
    assert seen["unwatched"]["task_failures"] == (
        f"no worker log found for {unit} ({unit} sends its output to null), and task "
        "events are off")
    text = healer(path, "diagnose").stdout
    assert f"NOT WATCHED task_failures: no worker log found for {unit}" in text
    said = healer(path, "run-once").stdout.splitlines()
    assert said[0] == ("healthy: nothing found (not watching: task_failures, "
                       "database_unreachable, critical_task_stalled)")
    assert said[1].startswith("not watched: task_failures: no worker log found for")
