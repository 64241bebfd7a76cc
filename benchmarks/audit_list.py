"""`healer audit list` with a unit and a time filter over 1,000,000 audit records.

    .venv/bin/python -m benchmarks.audit_list [RECORDS]

Writes a chained log of RECORDS records (incidents on 20 units over 30 days, about a tenth
of them on the unit asked for), then times the cold command against a baseline measured in
the same run: reading every line and parsing it as JSON, the least a review without the raw
filters would do. Target: the command in 2 s or less.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from healer.audit.chain import seal

UNITS = [f"celery-{i:02d}.service" for i in range(20)]


def write_log(path: Path, records: int) -> None:
    """A sealed log (its genesis left out: a review ignores it), in incidents of four records."""
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    step = timedelta(days=30) / records
    last = None
    with path.open("wb") as out:
        for i in range(records):
            incident, phase = divmod(i, 4)
            unit = UNITS[incident % len(UNITS)]
            when = (start + step * i).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            event = ("incident_opened", "action_started", "action_finished",
                     "incident_resolved")[phase]
            record: dict[str, object] = {"ts": when, "event": event, "incident": f"{incident:012x}",
                      "scenario": "worker_down", "unit": unit, "action": "restart_unit",
                      "outcome": "healed" if phase == 2 else "started", "dry_run": False}
            if phase == 3:
                record["duration_s"] = 5.1
            line, last = seal(record, last)
            out.write(line + b"\n")


def main() -> None:
    """Write the log, time the baseline and the command, print the figures."""
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "audit.jsonl"
        write_log(log, records)
        start = time.perf_counter()
        with log.open("rb") as handle:
            parsed = sum(1 for line in handle if json.loads(line))
        baseline = time.perf_counter() - start
        argv = [sys.executable, "-m", "healer", "audit", "list", "--log", str(log),
                "--unit", UNITS[3], "--since", "2026-10-20", "--until", "2026-10-25", "--json"]
        start = time.perf_counter()
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        command = time.perf_counter() - start
    print(f"records: {records} ({log.name}, {parsed} parsed by the baseline)")
    print(f"baseline (read and json-parse every line): {baseline:.2f}s")
    print(f"healer audit list --unit --since --until (cold process): {command:.2f}s, "
          f"{len(json.loads(out))} incidents")
    print(f"ratio baseline/command: {baseline / command:.1f}x; target <= 2 s: "
          f"{'met' if command <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
