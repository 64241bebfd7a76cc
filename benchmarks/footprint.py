"""The idle agent's footprint on the sandbox, beside a bare Python process that imports Celery.

    .venv/bin/python -m benchmarks.footprint [SECONDS]

healer's agent runs at a 5 s interval over a healthy sandbox (worker, beat, redis); after a
warm-up its RSS is read, and its CPU time over SECONDS (default 60). The baseline, over the
same minute: a bare Python process that imports Celery (``from celery import Celery``).
Targets: at most 50 MiB RSS and 1 % of a core.
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from sandbox.stack import CeleryStack

WARM_UP = 15.0
MIB = 2**20


def measure(processes: list[subprocess.Popen[bytes]], seconds: float
            ) -> list[tuple[float, float]]:
    """For each process, over the same ``seconds``: RSS in MiB at the end, CPU % of one core."""
    watched = [psutil.Process(p.pid) for p in processes]
    before = [sum(ps.cpu_times()[:2]) for ps in watched]
    time.sleep(seconds)
    return [(ps.memory_info().rss / MIB, 100 * (sum(ps.cpu_times()[:2]) - used) / seconds)
            for ps, used in zip(watched, before, strict=True)]


def main(seconds: float) -> None:
    """Run both and print their figures side by side."""
    with CeleryStack() as stack:
        config = stack.config(agent="interval = 5")
        agent = subprocess.Popen([sys.executable, "-m", "healer", "--config", str(config), "run"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bare = subprocess.Popen([sys.executable, "-c",
                                 "from celery import Celery; import time; time.sleep(1e6)"])
        try:
            time.sleep(WARM_UP)
            figures = dict(zip(("healer run (idle, 5 s interval)",
                                "python + Celery imported (baseline)"),
                               measure([agent, bare], seconds), strict=True))
        finally:
            for process in (agent, bare):
                process.terminate()
                process.wait(timeout=30)
    print(f"idle over {seconds:g} s (targets: 50 MiB, 1 % of a core)")
    for name, (rss, cpu) in figures.items():
        print(f"  {name:<36} RSS {rss:6.1f} MiB   CPU {cpu:5.2f} %")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)
