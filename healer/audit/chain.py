"""The hash chain of the audit log: each record carries the hash of the one before it.

``hash = sha256(canonical JSON of the record with "prev", without "hash")``. Editing any byte
of an old record breaks its hash, or the next record's ``prev``.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime


def timestamp(when: datetime) -> str:
    """A record's ``ts``: UTC to the millisecond, with Z (selection compares it as text)."""
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical(record: dict[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, no spaces, "hash" left out."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def seal(record: dict[str, Any], prev: str | None) -> dict[str, Any]:
    """The record with ``prev`` and its own ``hash`` added."""
    chained = {**record, "prev": prev}
    return {**chained, "hash": hashlib.sha256(canonical(chained)).hexdigest()}


def intact(record: dict[str, Any]) -> bool:
    """Whether the record's hash matches its content."""
    return record.get("hash") == hashlib.sha256(canonical(record)).hexdigest()
