"""Files healer writes belong to the owner of their folder, also when root runs it by hand.

The service runs as its own user; an operator who runs ``healer run-once`` as root would
otherwise leave a root-owned audit log, lock or state file the service can no longer write.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def adopt(fd: int, folder: Path) -> None:
    """As root, give the open file the owner and group of ``folder`` (a no-op otherwise)."""
    if os.geteuid() != 0:
        return
    owner, mine = folder.stat(), os.fstat(fd)
    if (mine.st_uid, mine.st_gid) != (owner.st_uid, owner.st_gid):
        os.fchown(fd, owner.st_uid, owner.st_gid)
