"""The audit log's files: the current one and its rotations, read as one history.

Rotations follow logrotate's names: ``audit.jsonl.1`` (newest), ``audit.jsonl.2.gz``, ...
A last line without its newline is a torn write (a crash mid-append): readers report it, and
the writer sets it aside in ``audit.jsonl.torn`` before appending again.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from io import BufferedReader
    from pathlib import Path

TAIL = 64 * 1024


@dataclass(frozen=True)
class Line:
    """One complete line of the history: where it is, and its bytes (no newline)."""

    file: Path
    number: int
    raw: bytes


def rotations(path: Path) -> list[Path]:
    """The rotated files, oldest first (highest number first)."""
    pattern = re.compile(re.escape(path.name) + r"\.(\d+)(\.gz)?$")
    found = [(int(m.group(1)), p) for p in path.parent.glob(path.name + ".*")
             if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def _open(path: Path) -> gzip.GzipFile | BufferedReader:
    """A rotation or the current file, for reading (gunzipped when it ends in .gz)."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def history(path: Path) -> Iterator[Line]:
    """Every complete line of every file, oldest first; a torn tail is left out."""
    for file in [*rotations(path), path]:
        if not file.exists():
            continue
        with _open(file) as handle:
            for number, raw in enumerate(handle, 1):
                if raw.endswith(b"\n"):
                    yield Line(file, number, raw[:-1])


def _end(file: Path) -> bytes:
    """Enough of the file's end to hold its last complete line whole, and any torn tail."""
    if file.suffix == ".gz":
        with _open(file) as whole:
            return whole.read()
    with file.open("rb") as handle:
        size = handle.seek(0, 2)
        start = max(0, size - TAIL)
        handle.seek(start)
        data = handle.read()
    if start and data.count(b"\n") < 2:  # the last line is longer than the window
        return file.read_bytes()
    return data


def torn_tail(path: Path) -> bytes:
    """The bytes after the current file's last newline (b"" when it ends cleanly)."""
    if not path.exists():
        return b""
    data = _end(path)
    return data[data.rfind(b"\n") + 1:]


def _newest_first(path: Path) -> Iterator[Path]:
    """The current file, then the rotations newest first (the folder is only listed if asked)."""
    yield path
    yield from reversed(rotations(path))


def last_line(path: Path) -> bytes | None:
    """The last complete line of the history (the current file, else its newest rotation)."""
    for file in _newest_first(path):
        if file.exists():
            data = _end(file)
            lines = data[: data.rfind(b"\n") + 1].splitlines()
            if lines:
                return lines[-1]
    return None
