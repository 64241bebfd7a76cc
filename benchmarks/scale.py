"""One pass over 50 real worker units and 20 queues, beside one pass over 1 unit, same run.

    .venv/bin/python -m benchmarks.scale [UNITS]

The sandbox gets UNITS (default 50) solo-pool worker units, each its own node and log file
(discovered, as healer is told only the units); the config lists them all and 20 queues. A
pass is ``Pipeline.run_once`` as the agent runs it, over the real D-Bus backend, broker and
Celery probes; the median of 10 warm passes is printed, then the same for a config of the
first unit alone. Target: at most 0.5 s.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import TYPE_CHECKING

from celery import Celery

from healer import compose
from healer.clock import SystemClock
from healer.config import load_config
from sandbox.base import wait_until
from sandbox.stack import BEAT, CeleryStack

if TYPE_CHECKING:
    from pathlib import Path

QUEUES = ["celery", *(f"q{n}" for n in range(1, 20))]
PASSES = 10


def timed(config: Path) -> float:
    """The median seconds of a warm pass (after three to warm up)."""
    loaded = load_config(config)
    pipeline = compose.pipeline(loaded, compose.real_world(loaded, SystemClock()),
                                compose.rules(loaded, config))
    times = []
    for n in range(PASSES + 3):
        start = time.perf_counter()
        report = pipeline.run_once()
        if n >= 3:
            times.append(time.perf_counter() - start)
    if not report.healthy:
        raise RuntimeError(f"the sandbox is not healthy: {report.remaining}")
    return statistics.median(times)


def main(units: int) -> None:
    """Start the workers, then time both passes."""
    with CeleryStack() as stack:
        names = [f"w{n}.service" for n in range(units)]
        nodes = [f"w{n}@sandbox" for n in range(units)]
        for name, node in zip(names, nodes, strict=True):
            stack.add_worker(name, node, options="--pool=solo")
        app = Celery(broker=stack.broker_url, set_as_current=False)

        def answering() -> bool:
            replies = app.control.ping(destination=nodes, timeout=1.0) or []
            return len(replies) == len(nodes)

        wait_until(answering, 300, "every worker to answer")
        celery = f'broker_url = "{stack.broker_url}"\nqueues = {json.dumps(QUEUES)}'
        rest = f'beat = "{BEAT}"\nbroker = "{stack.broker_unit}"'
        figures = {
            f"{len(workers)} unit(s), {len(QUEUES)} queues": timed(stack.config(
                stack.root / f"{len(workers)}.toml", celery=celery,
                units=f"workers = {json.dumps(workers)}\n{rest}"))
            for workers in (names, names[:1])}
    print(f"one warm pass, median of {PASSES} (target: 0.5 s for 50 units)")
    for name, seconds in figures.items():
        print(f"  {name:<24} {seconds * 1000:7.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
