"""The incident document the runbook's post-incident step asks for, in Markdown.

From an incident's audit records alone: what it was and how it ended, the time to heal, the
findings with their evidence, each action and its outcome, each escalation and its
deliveries, and the whole timeline. The records come in redacted; cells are escaped.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from healer.vocabulary import Event

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from healer.audit.review import Timeline


def _cell(value: object) -> str:
    """A table cell: one line, no column break."""
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("\\", "\\\\").replace("|", "\\|")


def _table(head: tuple[str, ...], rows: Iterable[tuple[object, ...]]) -> Iterator[str]:
    rows = list(rows)
    if not rows:
        yield "None."
        return
    yield "| " + " | ".join(head) + " |"
    yield "|" + "---|" * len(head)
    for row in rows:
        yield "| " + " | ".join(_cell(v) for v in row) + " |"


def _of(records: list[dict[str, Any]], *events: Event) -> list[dict[str, Any]]:
    return [r for r in records if r["event"] in events]


def markdown(incident: Timeline, records: list[dict[str, Any]]) -> str:
    """The document of one incident (``records``: its audit records, redacted)."""
    closed = _of(records, Event.INCIDENT_RESOLVED, Event.INCIDENT_DROPPED)
    heal = f"{incident.time_to_heal:g} s" if incident.time_to_heal is not None else "not healed"
    where = ", ".join(sorted(incident.units)) or "the host"
    lines = [
        f"# Incident {_cell(incident.id)}: {_cell(incident.scenario)} on {_cell(where)}", "",
        f"- Outcome: {incident.outcome}",
        f"- First seen: {incident.first_seen}",
        f"- Closed: {closed[-1]['ts'] if closed else 'still open'}",
        f"- Time to heal: {heal}", "",
        "## Findings", "",
        *_table(("seen", "scenario", "severity", "unit", "summary", "evidence"), (
            (r["ts"], r.get("scenario"), r.get("severity"), r.get("unit"), r.get("summary"),
             json.dumps(r.get("evidence"), sort_keys=True)) for r in
            _of(records, Event.INCIDENT_OPENED))),
        "", "## Actions", "",
        *_table(("ended", "action", "unit", "outcome", "detail"), (
            (r["ts"], r.get("action"), r.get("unit"), r.get("outcome"), r.get("detail"))
            for r in _of(records, Event.ACTION_FINISHED, Event.ACTION_INTERRUPTED))),
        "", "## Escalations", "",
        *_table(("tried", "kind", "tier", "attempt", "outcome", "reason", "error"), (
            (r["ts"], r.get("action"), r.get("tier"), r.get("attempt"), r.get("outcome"),
             r.get("reason"), r.get("error")) for r in _of(records, Event.ESCALATION))),
        "", "## Timeline", "",
        *_table(("time", "event", "outcome", "action", "unit", "detail"), (
            (r["ts"], r["event"], r.get("outcome"), r.get("action"), r.get("unit"),
             r.get("detail") or r.get("reason") or r.get("summary")) for r in records)),
    ]
    return "\n".join(lines) + "\n"
