"""The quick-start demo: break a real Celery stack in a private systemd sandbox, let healer heal it.

    python -m sandbox.demo

Starts redis-server, a Celery worker and beat as units of a private systemd user manager,
kills the worker with SIGKILL, runs ``healer run-once`` (dry run first, then for real) over
D-Bus, prints what it found and did, the audit records and ``healer audit list|verify``, and
tears everything down.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from sandbox.base import SandboxError
from sandbox.stack import WORKER, CeleryStack

if TYPE_CHECKING:
    from pathlib import Path


def step(text: str) -> None:
    """A heading for the next part of the demo."""
    print(f"\n==> {text}", flush=True)


def run_healer(config: Path, *args: str) -> int:
    """Run the healer CLI as an operator would, showing its output and timing."""
    print(f"$ healer {' '.join(args)}", flush=True)
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "healer", "--config", str(config), *args],
                            check=False)
    print(f"(exit {result.returncode}, {time.monotonic() - start:.2f}s)", flush=True)
    return result.returncode


def demo() -> bool:
    """Run the demo; True when healer behaved as it should at every step."""
    ok = True
    step("starting a private systemd user manager with redis, a Celery worker and beat")
    with CeleryStack() as stack:
        config = stack.config()
        print(f"sandbox {stack.root}, manager pid {stack.manager.pid}, broker {stack.broker_url}")
        step("a healthy stack: healer finds nothing")
        ok &= run_healer(config, "run-once") == 0

        step(f"fault: SIGKILL to the worker's main process ({WORKER}, Restart=no)")
        ready = stack.log("celery.log").count(" ready.")
        pid = stack.kill(WORKER)
        state = {p: stack.manager.show(WORKER, p) for p in ("ActiveState", "Result",
                                                            "ExecMainStatus")}
        print(f"killed pid {pid}; systemd says {state}")

        step("dry run: what healer would do, changing nothing")
        ok &= run_healer(config, "run-once", "--dry-run") == 1

        step("healer run-once: detect, restart over D-Bus, verify")
        ok &= run_healer(config, "run-once") == 0
        print(f"worker now {stack.manager.show(WORKER, 'ActiveState')}, "
              f"pid {stack.main_pid(WORKER)}")

        step(f"audit log ({stack.audit_log})")
        for line in stack.audit_log.read_text().splitlines():
            record = json.loads(line)
            extra = record.get("detail") or record.get("reason") or record.get("summary") or ""
            print(f"{record['ts']} {record['event']:<17} {record.get('outcome', ''):<9} "
                  f"{record.get('unit', '')} {extra}")

        step("after the incident: the review an engineer would run")
        ok &= run_healer(config, "audit", "list") == 0
        ok &= run_healer(config, "audit", "verify") == 0

        step("a second pass: nothing left to do")
        stack.wait_worker_ready(seen=ready)
        ok &= run_healer(config, "run-once") == 0
        step("tearing the sandbox down")
    print("demo " + ("passed: the worker was killed and healer healed it" if ok else "FAILED"))
    return ok


def main() -> int:
    """Entry point: 0 when the demo went as expected."""
    try:
        return 0 if demo() else 1
    except SandboxError as exc:
        print(f"demo: sandbox: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
