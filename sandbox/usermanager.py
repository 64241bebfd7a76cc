"""A private systemd user manager in its own mount namespace and cgroup, torn down completely.

Facts this rests on (checked on Debian 12, systemd 252, as root):
- ``systemd --user`` runs only when /run/systemd/system exists and XDG_RUNTIME_DIR is set, so it
  gets a tmpfs on /run/systemd in a private mount namespace; the host's /run is untouched.
- Started in the root cgroup it adopts the whole root cgroup (it moves every process there into
  ``init.scope``), so each sandbox starts it in a cgroup of its own. That also keeps sandboxes
  apart and lets teardown kill every process the sandbox ever started.
- The user bus is socket-activated at $XDG_RUNTIME_DIR/bus (Debian's dbus-user-session).
- journald tags a unit's entries from its cgroup path, which must look like a user manager's
  (``X.slice/user@UID.service/app.slice/UNIT``): so the sandbox cgroup is named that way, and a
  journald of its own writes (runtime journal) into ``root/journal``, read with
  ``journalctl --directory``. /var/log/journal is masked so nothing reaches the host's journal.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.base import Sandbox, SandboxError, claim, hierarchies, remove, wait_until

if TYPE_CHECKING:
    from typing import Self

SYSTEMD = "/usr/lib/systemd/systemd"
JOURNALD = "/lib/systemd/systemd-journald"
_LAUNCH = """
set -e
journal="$1"; shift
for procs in "$@"; do echo $$ > "$procs"; done
mount -t tmpfs -o mode=755 healer-sandbox /run/systemd
mkdir -p /run/systemd/system
mount -t tmpfs -o mode=755 healer-sandbox /run/log
mkdir -p /run/log/journal
mount --bind "$journal" /run/log/journal
if [ -d /var/log/journal ]; then mount -t tmpfs -o mode=755 healer-sandbox /var/log/journal; fi
{journald} &
exec {systemd} --user
"""


def check_prerequisites() -> None:
    """Fail with one line naming what is missing, instead of a hang or a traceback later."""
    if os.geteuid() != 0:
        raise SandboxError("the sandbox needs root (mount namespaces and cgroups)")
    for tool in ("unshare", "systemctl"):
        if shutil.which(tool) is None:
            raise SandboxError(f"{tool} not found (Debian packages util-linux, systemd)")
    for binary in (SYSTEMD, JOURNALD):
        if not Path(binary).exists():
            raise SandboxError(f"{binary} not found (Debian package systemd)")
    if not Path("/usr/lib/systemd/user/dbus.socket").exists():
        raise SandboxError("no user bus socket unit (Debian package dbus-user-session)")
    for folder in ("/run/systemd", "/run/log"):
        if not Path(folder).is_dir():
            raise SandboxError(f"{folder} does not exist to mount the sandbox's tmpfs on")


class UserManager(Sandbox):
    """One private ``systemd --user``; use as a context manager so it always goes away."""

    def __init__(self, base: Path | None = None) -> None:
        check_prerequisites()
        self.name, self.root = claim(base)
        self.runtime = self.root / "run"
        self.unit_dir = self.root / "config" / "systemd" / "user"
        self.unit_dir.mkdir(parents=True)
        self.runtime.mkdir(mode=0o700)
        self.journal = self.root / "journal"
        self.journal.mkdir()
        self.bus_address = f"unix:path={self.runtime}/bus"
        self.env = {
            **os.environ,
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "DBUS_SESSION_BUS_ADDRESS": self.bus_address,
        }
        self._slices = [h / f"{self.name}.slice" for h in hierarchies()]
        self._cgroups = [s / f"user@{os.getuid()}.service" for s in self._slices]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20) -> Self:
        """Start the manager and wait until it answers on its bus."""
        for group in self._cgroups:
            group.mkdir(parents=True)
        with (self.root / "manager.log").open("wb") as log:
            self._process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--",
                 "/bin/sh", "-c", _LAUNCH.format(systemd=SYSTEMD, journald=JOURNALD), "sh",
                 str(self.journal), *(str(g / "cgroup.procs") for g in self._cgroups)],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )
        atexit.register(self.stop)
        wait_until(self._ready, timeout, f"systemd --user in {self.root} (see manager.log)")
        return self

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise SandboxError(
                f"systemd --user exited with {self._process.returncode}: "
                f"{(self.root / 'manager.log').read_text().strip()[-300:]}"
            )
        state = self.systemctl("show", "--property=SystemState", "--value", check=False)
        return state.returncode == 0 and state.stdout.strip() in {"running", "degraded"}

    @property
    def pid(self) -> int:
        """The manager's PID on the host."""
        assert self._process is not None, "not started"
        return self._process.pid

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``systemctl --user`` against this manager."""
        result = subprocess.run(
            ["systemctl", "--user", *args], env=self.env, capture_output=True, text=True,
            check=False, timeout=60,
        )
        if check and result.returncode != 0:
            raise SandboxError(f"systemctl --user {' '.join(args)}: {result.stderr.strip()}")
        return result

    def write_unit(self, name: str, text: str) -> None:
        """Write a unit file; call ``reload`` when the manager is already running."""
        (self.unit_dir / name).write_text(text)

    def reload(self) -> None:
        """daemon-reload."""
        self.systemctl("daemon-reload")

    def journal_text(self, unit: str) -> str:
        """Every message the sandbox's journald holds for a unit, one per line."""
        result = subprocess.run(
            ["journalctl", f"--directory={self.journal}", f"--user-unit={unit}", "-o", "cat",
             "--no-pager"], capture_output=True, text=True, check=False, timeout=30,
        )
        return result.stdout

    def show(self, unit: str, prop: str) -> str:
        """One property of a unit, as systemctl prints it."""
        return self.systemctl("show", f"--property={prop}", "--value", unit).stdout.strip()

    def stop(self) -> None:
        """Ask the manager to stop its units and exit; kill what is left; remove every trace."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            self.systemctl("exit", check=False)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        remove(self.name, self._slices, self.root)
