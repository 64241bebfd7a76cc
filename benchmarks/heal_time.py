"""Time to heal on the sandbox: healer's agent beside monit and beside healer polling only.

    .venv/bin/python -m benchmarks.heal_time [ROUNDS]

Each system watches its own fresh sandbox at a 5 s cycle, and each round injects four faults:
SIGKILL of the worker; SIGSTOP of the worker 10 s after that heal; SIGKILL of the broker;
SIGKILL of beat. The time runs from the fault until the worker answers a ping again (for beat:
until beat is active again with a new PID). The systems:

- healer: the agent with ``[agent] events = true`` (the default);
- healer, polling: the same with ``events = false``;
- monit 5.33 (installed from Debian when missing), with the common Celery recipe: a process
  check per service that starts it again, and an ``inspect ping`` program check that restarts
  the worker when it fails "for 2 cycles".

Targets: SIGKILL at most 0.6x monit's time, SIGSTOP at most 0.5x; broker and beat no slower.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from celery import Celery

from sandbox.stack import APP_DIR, BEAT, NODE, WORKER, CeleryStack

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

CYCLE = 5
FAULTS = ("worker SIGKILL", "worker SIGSTOP", "broker SIGKILL", "beat SIGKILL")
TARGETS = {"worker SIGKILL": 0.6, "worker SIGSTOP": 0.5, "broker SIGKILL": 1.0,
           "beat SIGKILL": 1.0}
POLICY = "rules:\n" + "".join(  # every remedy at once, with no limit in the way
    f"  - name: {scenario}\n    match: {{scenario: {scenario}}}\n    ladder: [{{action: {action}, "
    "verify: 3s, limit: {max: 100, within: 1h}}]\n"
    for scenario, action in (("worker_down", "restart_unit"), ("worker_unresponsive",
                             "restart_unit"), ("broker_unreachable", "restart_broker"),
                             ("beat_down", "restart_unit")))


def wait(check: Callable[[], bool], timeout: float = 120) -> float:
    """Poll until ``check`` holds; the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise RuntimeError("no heal within two minutes")
        time.sleep(0.02)
    return time.monotonic() - start


def answers(app: Any) -> bool:  # noqa: ANN401 - Celery is untyped
    """Whether the worker answers a ping now (not while the broker is down)."""
    try:
        return bool(app.control.ping(destination=[NODE], timeout=0.2))
    except Exception:  # the broker is down: nobody answers
        return False


def round_of_faults(stack: CeleryStack, app: Any, rng: random.Random  # noqa: ANN401
                    ) -> dict[str, float]:
    """The four faults, one after another, each timed from the fault to the heal.

    Each fault but the SIGSTOP (10 s after a heal) comes at a random moment of the cycle, so
    a poller is met at every phase of its cycle, not always at the same one.
    """
    took: dict[str, float] = {}

    def settle() -> None:
        time.sleep(2 + rng.uniform(0, CYCLE))

    wait(lambda: answers(app))
    settle()
    os.kill(stack.main_pid(WORKER), signal.SIGKILL)
    took["worker SIGKILL"] = wait(lambda: answers(app))
    time.sleep(10)
    os.kill(stack.main_pid(WORKER), signal.SIGSTOP)
    took["worker SIGSTOP"] = wait(lambda: answers(app))
    settle()
    os.kill(stack.main_pid(stack.broker_unit), signal.SIGKILL)
    took["broker SIGKILL"] = wait(lambda: answers(app))
    settle()
    beat = stack.main_pid(BEAT)
    os.kill(beat, signal.SIGKILL)
    took["beat SIGKILL"] = wait(lambda: stack.active(BEAT) and stack.main_pid(BEAT) not in
                                {0, beat})
    return took


def with_healer(stack: CeleryStack, events: bool) -> None:
    """The agent as a unit of the sandbox, on the benchmark's policy."""
    folder = stack.root / "policies"
    folder.mkdir(exist_ok=True)
    (folder / "bench.yaml").write_text(POLICY)
    config = stack.config(
        paths=f'state_dir = "{stack.root / "state"}"\naudit_log = "{stack.audit_log}"\n'
              f'policies = "{folder}"',
        agent=f"interval = {CYCLE}\nevents = {'true' if events else 'false'}",
        extra="[guard]\nbudget_per_hour = 1000\n")
    stack.manager.write_unit("healer.service", (
        "[Service]\nType=notify\nNotifyAccess=main\n"
        f"ExecStart={sys.executable} -m healer --config {config} run\n"))
    stack.manager.reload()
    stack.manager.systemctl("start", "healer.service")


def monit_binary() -> str:
    """monit, installed from Debian's archive when missing."""
    if shutil.which("monit") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "monit"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       capture_output=True)
    found = shutil.which("monit")
    assert found is not None
    return found


def with_monit(stack: CeleryStack) -> subprocess.Popen[bytes]:
    """Run monit in the foreground, with the process and ping checks, restarting through systemd."""
    env = stack.manager.env
    ctl = (f"/usr/bin/env XDG_RUNTIME_DIR={env['XDG_RUNTIME_DIR']} DBUS_SESSION_BUS_ADDRESS="
           f"{env['DBUS_SESSION_BUS_ADDRESS']} /usr/bin/systemctl --user")
    ping = stack.root / "ping.sh"
    ping.write_text(f"#!/bin/sh\nexport HEALER_DEMO_BROKER={stack.broker_url}\n"
                    f"exec {sys.executable} -m celery --workdir={APP_DIR} -A demoapp inspect "
                    f"ping -d {NODE} -t 1\n")
    ping.chmod(0o755)
    control: Path = stack.root / "monitrc"
    control.write_text(
        f"set daemon {CYCLE}\nset logfile {stack.root / 'monit.log'}\n"
        f"set pidfile {stack.root / 'monit.pid'}\nset idfile {stack.root / 'monit.id'}\n"
        f"set statefile {stack.root / 'monit.state'}\n"
        f'check process worker matching "hostname={NODE}"\n'
        f'  start program = "{ctl} start {WORKER}"\n  stop program = "{ctl} stop {WORKER}"\n'
        f'check program worker_ping with path "{ping}"\n'
        f'  if status != 0 for 2 cycles then exec "{ctl} restart {WORKER}"\n'
        f'check process broker matching "redis-server 127.0.0.1:{stack.port}"\n'
        f'  start program = "{ctl} start {stack.broker_unit}"\n'
        f'check process beat matching "demoapp beat"\n'
        f'  start program = "{ctl} start {BEAT}"\n')
    control.chmod(0o600)
    return subprocess.Popen([monit_binary(), "-c", str(control), "-I"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(system: str, rounds: int) -> dict[str, list[float]]:
    """Every fault's heal times under one system, on a sandbox of its own."""
    times: dict[str, list[float]] = {fault: [] for fault in FAULTS}
    rng = random.Random(14)  # noqa: S311 - when to inject a fault, not a secret
    with CeleryStack() as stack:
        app = Celery(broker=stack.broker_url, set_as_current=False)
        monit = with_monit(stack) if system == "monit" else None
        if monit is None:
            with_healer(stack, events=system == "healer")
        time.sleep(CYCLE)
        try:
            for _ in range(rounds):
                for fault, took in round_of_faults(stack, app, rng).items():
                    times[fault].append(took)
        finally:
            if monit is not None:
                monit.terminate()
                monit.wait()
    return times


def main() -> None:
    """Measure the three systems and print the medians side by side."""
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    results = {system: measure(system, rounds) for system in ("healer", "polling", "monit")}
    print(f"rounds: {rounds}, cycle {CYCLE} s; fault until the worker answers a ping again "
          "(beat: active with a new PID); median (min-max) seconds")
    print(f"{'fault':<16} {'healer':>18} {'healer polling':>18} {'monit':>18}  healer/monit")
    for fault in FAULTS:
        cells = [f"{statistics.median(t):.1f} ({min(t):.1f}-{max(t):.1f})"
                 for t in (results[s][fault] for s in ("healer", "polling", "monit"))]
        ratio = statistics.median(results["healer"][fault]) / statistics.median(
            results["monit"][fault])
        met = "met" if ratio <= TARGETS[fault] else "NOT met"
        print(f"{fault:<16} {cells[0]:>18} {cells[1]:>18} {cells[2]:>18}  {ratio:.2f} "
              f"(target <= {TARGETS[fault]}: {met})")


if __name__ == "__main__":
    main()
