"""The audit log's files: the current one and its rotations, read as one history.

Rotations follow logrotate's names: ``audit.jsonl.1`` (newest), ``audit.jsonl.2.gz``, ...
A last line without its newline is a torn write (a crash mid-append): readers report it, and
the writer sets it aside in ``audit.jsonl.torn`` before appending again.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import zlib
from collections import deque
from functools import partial
from typing import IO, TYPE_CHECKING, NamedTuple, cast

from healer import safefile
from healer.errors import AuditCorrupt, ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TAIL = 64 * 1024
MAX_LINE = 4 * 2**20  # a longer line is not a record healer wrote: it is read as a bad one


class Line(NamedTuple):
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


@contextlib.contextmanager
def _open(path: Path, follow: bool = True) -> Iterator[IO[bytes]]:
    """A rotation or the current file, for reading (gunzipped when it ends in .gz).

    It must be a regular file; a .gz that ends early or is not gzip is AuditCorrupt. The
    writer reads its own files with ``follow`` off: a link planted in its folder is refused.
    """
    try:
        with safefile.reading(path, follow) as raw:
            if path.suffix != ".gz":
                yield raw
                return
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield cast("IO[bytes]", unzipped)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise AuditCorrupt(f"{path}: not a whole gzip file ({exc})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the audit log: {exc.strerror or exc}") from exc


def _lines(handle: IO[bytes]) -> Iterator[bytes]:
    """Each line with its newline; a line longer than MAX_LINE comes cut (it cannot parse)."""
    for line in iter(partial(handle.readline, MAX_LINE), b""):  # the loop stays in C
        if len(line) == MAX_LINE and not line.endswith(b"\n"):
            while (rest := handle.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                pass
            line += b"\n" if rest else b""  # noqa: PLW2901 - the cut line, whole again
        yield line


def _complete_lines(file: Path) -> Iterator[Line]:
    if not file.exists() and not file.is_symlink():
        return
    with _open(file) as handle:
        for number, raw in enumerate(_lines(handle), 1):
            if raw.endswith(b"\n"):
                yield Line(file, number, raw[:-1])


def history(path: Path) -> Iterator[Line]:
    """Every complete line of every file, oldest first; a torn tail is left out."""
    for file in [*rotations(path), path]:
        yield from _complete_lines(file)


def recent(path: Path) -> Iterator[Line]:
    """The complete lines of the newest rotation and the current file: the latest records."""
    for file in [*rotations(path)[-1:], path]:
        yield from _complete_lines(file)


def _end(file: Path, follow: bool) -> bytes:
    """The file's last complete line whole and any torn tail after it; memory stays bounded."""
    with _open(file, follow) as handle:
        if file.suffix == ".gz":  # a gzip stream cannot seek: keep the last two lines read
            return b"".join(deque(_lines(handle), maxlen=2))
        size = handle.seek(0, 2)
        for window in (TAIL, TAIL + MAX_LINE):
            start = max(0, size - window)
            handle.seek(start)
            data = handle.read()
            if not start or data.count(b"\n") >= 2:
                return data
    raise AuditCorrupt(f"{file}: its last line is longer than {MAX_LINE} bytes: "
                       "healer did not write it")


def torn_tail(path: Path, follow: bool = False) -> bytes:
    """The bytes after the current file's last newline (b"" when it ends cleanly)."""
    if not path.exists():
        return b""
    data = _end(path, follow)
    return data[data.rfind(b"\n") + 1:]


def _newest_first(path: Path) -> Iterator[Path]:
    """The current file, then the rotations newest first (the folder is only listed if asked)."""
    yield path
    yield from reversed(rotations(path))


def last_line(path: Path) -> bytes | None:
    """The last complete line of the history (the current file, else its newest rotation)."""
    for file in _newest_first(path):
        if file.exists():
            data = _end(file, follow=False)
            lines = data[: data.rfind(b"\n") + 1].splitlines()
            if lines:
                return lines[-1]
    return None
