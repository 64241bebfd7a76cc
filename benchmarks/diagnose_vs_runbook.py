"""healer diagnose versus the runbook's health check, cold process to cold process.

    .venv/bin/python -m benchmarks.diagnose_vs_runbook [ROUNDS]

On one healthy sandbox, times `healer diagnose --json` and the runbook's two commands
(`celery -A app inspect ping` then `celery -A app inspect stats`), alternating, and prints
the medians and their ratio. Also times one healthy `healer run-once` pass, and a warm
probe pass inside one process (what the agent pays every interval).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from healer import compose
from healer.clock import SystemClock
from healer.config import load_config
from sandbox.stack import APP_DIR, CeleryStack


def timed(*commands: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds to run the commands one after another."""
    start = time.perf_counter()
    for argv in commands:
        subprocess.run(argv, check=False, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    """Run the rounds and print the figures."""
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with CeleryStack() as stack:
        config = str(stack.config())
        healer = [sys.executable, "-m", "healer", "--config", config]
        celery = [sys.executable, "-m", "celery", f"--workdir={APP_DIR}", "-A", "demoapp",
                  "inspect"]
        env = {**os.environ, "HEALER_DEMO_BROKER": stack.broker_url}
        diagnose, runbook, run_once = [], [], []
        for _ in range(rounds):
            diagnose.append(timed([*healer, "diagnose", "--json"]))
            runbook.append(timed([*celery, "ping"], [*celery, "stats"], env=env))
            run_once.append(timed([*healer, "run-once"]))
        path = stack.config()
        loaded = load_config(path)
        pipeline = compose.pipeline(loaded, compose.real_world(loaded, SystemClock()),
                                    compose.rules(loaded, path))
        warm = []
        for _ in range(rounds * 10):
            start = time.perf_counter()
            pipeline.diagnose()
            warm.append(time.perf_counter() - start)
    d, r, o, w = (statistics.median(x) for x in (diagnose, runbook, run_once, warm))
    print(f"rounds: {rounds}")
    print(f"runbook check (inspect ping + inspect stats): median {r:.3f}s")
    print(f"healer diagnose --json:                       median {d:.3f}s")
    print(f"healer run-once (healthy pass):               median {o:.3f}s")
    print(f"warm probe pass in one process:               median {w * 1000:.1f}ms")
    print(f"ratio runbook/diagnose (cold): {r / d:.1f}x")
    print(f"ratio runbook/probe pass (warm): {r / w:.0f}x")


if __name__ == "__main__":
    main()
