"""The audit log's anchor: the last record's seq and hash, kept apart from the log.

The writer moves it after every append (written atomically); ``audit verify`` then sees a cut
tail or a re-sealed log. It lives in the state dir, which only healer writes: an attacker with
root rewrites both, and only a copy kept off the host survives that.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from healer import safefile
from healer.audit.chain import Link, link
from healer.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

NAME = "audit.anchor"
MAX_ANCHOR = 4096


def write(path: Path, end: Link) -> None:
    """Move the anchor to this end of the chain."""
    safefile.replace(path, json.dumps({"seq": end.seq, "hash": end.hash}).encode())


def read(path: Path) -> Link | None:
    """The anchored end, or None when there is no anchor file; ConfigError when unreadable."""
    try:
        data = json.loads(safefile.read_capped(path, MAX_ANCHOR))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the anchor: {exc.strerror or exc}") from exc
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{path}: not an audit anchor (not JSON)") from exc
    try:
        end = link(data)
    except ValueError:
        end = None
    if end is None or not end.sealed:
        raise ConfigError(f"{path}: not an audit anchor (needs seq and hash)")
    return end
