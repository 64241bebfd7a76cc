"""Opening files so that a planted link, a FIFO, a device or a huge file is refused, not used.

healer may run as root in folders another user owns (its state dir, its log dir). A file it
writes is created exclusively when new, and given its folder's owner only then; an existing one
is opened without following a link and must be a regular file, with one name, owned by healer
or by the folder's owner. Nothing blocks on a FIFO: every open is non-blocking. Inputs (config,
policies, state, audit logs) must be regular files and are read with a size cap.

Refusals are ``RefusedFile``, an OSError, so callers report them as they report any I/O error,
naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

_OPEN = os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY


class RefusedFile(OSError):
    """A path healer will not read or write through; the message says why."""


def _refuse(path: Path, why: str) -> RefusedFile:
    return RefusedFile(errno.EPERM, f"{why}: refused", str(path))


def _blocking(fd: int) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)


def _check_written(fd: int, path: Path) -> None:
    """An existing file healer may write: regular, one link, healer's or its folder's."""
    mine, folder = os.fstat(fd), path.parent.stat()
    if not stat.S_ISREG(mine.st_mode):
        raise _refuse(path, "not a regular file")
    if mine.st_nlink != 1:
        raise _refuse(path, f"a regular file with {mine.st_nlink} names (a planted hard link?)")
    if mine.st_uid not in {os.geteuid(), folder.st_uid}:
        raise _refuse(path, f"owned by uid {mine.st_uid}, neither healer nor the folder's owner")


def open_for_writing(path: Path, append: bool = False, mode: int = 0o640,
                     new: bool = False) -> int:
    """A descriptor to write ``path``: a new file, exclusively created, or a checked old one.

    With ``new`` only a new file will do. Without ``append`` an old file is truncated. As root,
    a file created here gets the owner and group of its folder, so the service's user can go on
    writing what an operator's command created; an old file keeps its owner.
    """
    flags = os.O_WRONLY | _OPEN | (os.O_APPEND if append else 0)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
        created = True
    except FileExistsError:
        if new:
            raise
        flags |= 0 if append else os.O_TRUNC
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            if exc.errno in {errno.ELOOP, errno.ENXIO, errno.EISDIR}:
                raise _refuse(path, "a link, a FIFO or a folder") from exc
            raise
        created = False
    try:
        if created:
            _adopt(fd, path)
        else:
            _check_written(fd, path)
        _blocking(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _adopt(fd: int, path: Path) -> None:
    """As root, give a file just created the owner and group of its folder."""
    if os.geteuid() != 0:
        return
    folder = path.parent.stat()
    os.fchown(fd, folder.st_uid, folder.st_gid)


def replace(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write ``path`` whole and atomically: a fresh temp file, fsync, rename over, fsync folder.

    A stale or planted temp file is removed first (its target is untouched), the new one must
    be created here, and the rename replaces a link at ``path`` rather than writing through it.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = open_for_writing(tmp, mode=mode, new=True)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (one write may take only part of them)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@contextlib.contextmanager
def reading(path: Path, follow: bool = True) -> Iterator[BinaryIO]:
    """``path`` open for reading; it must be a regular file, seen before it is opened.

    The path is first opened only as a location (O_PATH), so a FIFO or a device behind it is
    refused without ever being opened (nothing blocks, no device acts on an open).
    ``follow`` is off for files in healer's own folders, where a link would be planted.
    """
    where = os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        spot = os.open(path, where)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(path, "a link") from exc
        raise
    try:
        mode = os.fstat(spot).st_mode
        if not follow and stat.S_ISLNK(mode):
            raise _refuse(path, "a link")
        if not stat.S_ISREG(mode):
            raise _refuse(path, "not a regular file")
        fd = os.open(f"/proc/self/fd/{spot}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    finally:
        os.close(spot)
    with os.fdopen(fd, "rb") as handle:
        yield handle


def read_capped(path: Path, cap: int, follow: bool = True) -> bytes:
    """The whole of a regular file of at most ``cap`` bytes."""
    with reading(path, follow) as handle:
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise RefusedFile(errno.EFBIG, f"larger than {cap} bytes: refused", str(path))
    return data
