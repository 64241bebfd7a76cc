r"""The hash chain of the audit log: each record carries its number and the hash of the one before.

A sealed record's line is its canonical form: ``ts`` and ``seq`` first, the other keys sorted
(at every depth), no spaces, non-ASCII as is, and ``hash`` last, the sha256 of all before it.
Parsing and re-serialising a line must give back its exact bytes, so a JSON escape (``\u002e``)
or a duplicated key is an edit even where it would keep the hash. ``seq`` counts up by one from
the genesis record (``audit_started``, seq 0) across rotations; ``prev`` is the hash before.

Records written before sealing (no ``seq``) keep the old rule: the hash covers the record with
sorted keys, and the line's own bytes are not checked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

FORMAT = 2  # sealed records: seq, canonical lines; 1 was the chain without them
UNSEALED = -1  # the seq of a record written before sealing: the genesis after it is seq 0


@dataclass(frozen=True)
class Link:
    """Where the chain ends: the last record's number (UNSEALED before seq) and its hash."""

    seq: int
    hash: str

    @property
    def sealed(self) -> bool:
        """Whether the chain ends in a sealed record (else the next one is the genesis)."""
        return self.seq != UNSEALED


def timestamp(when: datetime) -> str:
    """A record's ``ts``: UTC to the millisecond, with Z (selection compares it as text)."""
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_FIRST = ("ts", "seq")


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _body(record: dict[str, Any]) -> str:
    """The canonical text of the record without its hash: ts and seq first, the rest sorted."""
    head = "".join(f'"{k}":{_dumps(record[k])},' for k in _FIRST if k in record)
    rest = _dumps({k: v for k, v in record.items() if k not in _FIRST and k != "hash"})
    return "{" + (head + rest[1:] if rest != "{}" else head[:-1] + "}")


def _sealed_line(body: str) -> str:
    digest = hashlib.sha256(body.encode()).hexdigest()
    return body[:-1] + ',"hash":"' + digest + '"}'


def seal(record: dict[str, Any], last: Link | None) -> tuple[bytes, Link]:
    """The record's line (no newline), numbered after ``last`` and chained to it."""
    seq = 0 if last is None else last.seq + 1
    line = _sealed_line(_body({**record, "seq": seq, "prev": last.hash if last else None}))
    return line.encode(), Link(seq, line[-66:-2])


def link(record: object) -> Link:
    """The chain's end at this record; ValueError when it is not a record healer wrote."""
    if not isinstance(record, dict) or not isinstance(record.get("hash"), str):
        raise ValueError(  # noqa: TRY004 - the writer reports every unusable end alike
            "its last line is not a record (see `healer audit verify`)")
    seq = record.get("seq", UNSEALED)
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < UNSEALED:
        raise ValueError("its last record has no valid seq (see `healer audit verify`)")
    return Link(seq, record["hash"])


def flaw(raw: bytes, record: dict[str, Any]) -> str | None:
    """What is wrong with a record's line under its rule, or None when it holds.

    ValueError when the record cannot be serialised at all (NaN, a lone surrogate).
    """
    if "seq" not in record:  # written before sealing
        legacy = _dumps({k: v for k, v in record.items() if k != "hash"})
        digest = hashlib.sha256(legacy.encode()).hexdigest()
        return None if record.get("hash") == digest else "does not match its hash (edited?)"
    line = _sealed_line(_body(record))
    if record.get("hash") != line[-66:-2]:
        return "does not match its hash (edited?)"
    if raw != line.encode():
        return "is not in canonical form (an escaped or duplicated key: edited?)"
    return None
