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
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import Self

PREFIX = "healer-sandbox-"
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


class SandboxError(RuntimeError):
    """The sandbox could not be started or used; the message says what is missing."""


def wait_until(check: Callable[[], bool], timeout: float, what: str, pause: float = 0.05) -> None:
    """Poll ``check`` until it is true; raise SandboxError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SandboxError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(pause)


# v1 controllers a system manager uses; cpuset is left out (a new cpuset group starts empty).
CONTROLLERS = ("memory", "pids", "devices", "cpu", "cpuacct", "blkio", "freezer")


def _cgroup_hierarchies(controllers: bool = False) -> list[Path]:
    """Where this process sits in name=systemd (v1) and cgroup2 (+ v1 ``controllers``)."""
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")
        fstype, _, options = fields[1].split()[:3]
        point = Path(line.split()[4])
        if fstype == "cgroup2":
            mounts["0::"] = point
        elif fstype == "cgroup" and "name=systemd" in options:
            mounts["name=systemd"] = point
        elif fstype == "cgroup" and controllers:
            # keyed as /proc/self/cgroup names it: "memory", or "cpu,cpuacct" when co-mounted
            names = [o for o in options.split(",") if o in CONTROLLERS]
            if names:
                mounts[",".join(names)] = point
    places = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, hierarchy, path = line.split(":", 2)
        key = "0::" if number == "0" else hierarchy
        if key in mounts:
            places.append(mounts[key] / path.lstrip("/"))
    if not places:
        raise SandboxError("no cgroup hierarchy for systemd found in /proc/self/mountinfo")
    return places


def _kill_cgroup(group: Path) -> None:
    """SIGKILL every process in the cgroup tree, then remove the tree, deepest first."""
    if not group.exists():
        return
    for _ in range(100):
        pids = {
            int(p)
            for procs in group.rglob("cgroup.procs")
            for p in procs.read_text().split()
        }
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    for sub in sorted((d for d in group.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        group.rmdir()


def _cgroups_of(proc: Path) -> str:
    try:
        return (proc / "cgroup").read_text()
    except OSError:  # gone meanwhile
        return ""


def _members(name: str) -> list[int]:
    """Processes, zombies awaiting their reaper included, still in a cgroup of this name."""
    return [int(p.name) for p in Path("/proc").glob("[0-9]*") if f"/{name}." in _cgroups_of(p)]


def _owner_alive(name: str) -> bool:
    try:
        owner = int(name.removeprefix(PREFIX).split("-")[0])
    except ValueError:
        return True
    return Path(f"/proc/{owner}").exists()


def reap_stale(base: Path) -> list[str]:
    """Tear down sandboxes whose owning process is gone (a test run killed mid-way)."""
    reaped = []
    for hierarchy in _cgroup_hierarchies(controllers=True):
        for group in hierarchy.glob(PREFIX + "*"):
            if not _owner_alive(group.name):
                _kill_cgroup(group)
                reaped.append(group.name)
    for folder in base.glob(PREFIX + "*"):
        if not _owner_alive(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
            reaped.append(folder.name)
    return sorted(set(reaped))


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


class UserManager:
    """One private ``systemd --user``; use as a context manager so it always goes away."""

    def __init__(self, base: Path | None = None) -> None:
        check_prerequisites()
        base = base or Path(tempfile.gettempdir())
        reap_stale(base)
        self.name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.root = base / self.name
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
        self._slices = [h / f"{self.name}.slice" for h in _cgroup_hierarchies()]
        self._cgroups = [s / f"user@{os.getuid()}.service" for s in self._slices]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20) -> Self:
        """Start the manager and wait until it answers on its bus."""
        for group in self._cgroups:
            group.mkdir(parents=True)
        log = (self.root / "manager.log").open("wb")
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
        for group in self._slices:
            _kill_cgroup(group)
        # Killed orphans (journald) linger as zombies until the host's init reaps them.
        wait_until(lambda: not _members(self.name), 10, f"the processes of {self.name} to go")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
