"""sd_notify(3) without libsystemd: datagrams to $NOTIFY_SOCKET (READY, STATUS, WATCHDOG)."""

from __future__ import annotations

import os
import socket


class SdNotify:
    """Sends state to the service manager; does nothing when not run under Type=notify."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self._address = address or None

    @property
    def enabled(self) -> bool:
        """Whether there is a manager to tell."""
        return self._address is not None

    def send(self, **fields: str) -> None:
        """One message, e.g. ``send(READY="1", STATUS="...")``; lost messages are not errors."""
        if self._address is None:
            return
        message = "\n".join(f"{k}={v.replace(chr(10), ' ')}" for k, v in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(message.encode())
        except OSError:
            return


def watchdog_interval() -> float | None:
    """Half of $WATCHDOG_USEC in seconds, when this process is the one being watched."""
    usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6
