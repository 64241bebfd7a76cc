"""A real systemd *system* manager with dbus and polkitd, booted from the cached Debian root.

What it rests on (checked on Debian 12, systemd 252, polkitd 122, as root):
- systemd-nspawn needs a host system bus; instead ``unshare`` gives systemd private PID, mount,
  UTS, IPC and network namespaces (its own loopback, so its redis-server on 6379 and healer's
  metrics port collide with nothing), and it runs as PID 1 there.
- The root is the cached image under an overlay, entered with ``pivot_root``: under ``chroot``,
  units with ``PrivateUsers=`` (Debian's redis-server has it) fail with 217/USER.
- systemd starts in a cgroup of its own in every hierarchy it uses: in the root cgroup it would
  take over the host's cgroup tree, as a user manager does.
- The host is kept out of reach: a /dev of its own (the harmless nodes, its own pts and shm,
  /dev/console on /dev/null), /sys and /proc/sys read-only (the cgroup mounts below /sys stay
  writable for systemd).
- A host folder is bind-mounted on the root's /run/dbus, so the system bus socket is reachable
  from the host at ``bus_address``.
- ``run(..., user=...)`` runs a command inside as another uid (``setpriv``), which is how healer
  runs as its own unprivileged user against polkit.
- SIGRTMIN+4 powers the manager off; what is left in its cgroups is killed; the overlay's upper
  layer and every folder go with the sandbox.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.base import Sandbox, SandboxError, claim, hierarchies, remove, wait_until
from sandbox.rootimage import in_use
from sandbox.usermanager import check_prerequisites

if TYPE_CHECKING:
    from typing import Self

_BOOT = """
set -e
image="$1" layer="$2" root="$3" bus="$4"; shift 4
for procs in "$@"; do echo $$ > "$procs"; done
mount -t overlay healer-sandbox \
    -o "lowerdir=$image,upperdir=$layer/upper,workdir=$layer/work" "$root"
mount -t proc proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
mount --rbind /sys "$root/sys"
mount -o remount,bind,ro "$root/sys"
mount -t tmpfs -o mode=755,nosuid healer-sandbox "$root/dev"
for node in null zero full random urandom tty; do
    touch "$root/dev/$node"; mount --bind "/dev/$node" "$root/dev/$node"
done
touch "$root/dev/console"; mount --bind /dev/null "$root/dev/console"
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
mount -t tmpfs -o mode=1777,nosuid,nodev healer-sandbox "$root/dev/shm"
mount -t tmpfs -o mode=755 healer-sandbox "$root/run"
mount -t tmpfs -o mode=1777 healer-sandbox "$root/tmp"
mkdir "$root/run/dbus"
mount --bind "$bus" "$root/run/dbus"
cd "$root"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
cd /
exec env -i container=other PATH=/usr/sbin:/usr/bin:/sbin:/bin /lib/systemd/systemd --system
"""
_INSIDE_ENV = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/"]


class SystemManager(Sandbox):
    """One booted root; use as a context manager so it always goes away."""

    def __init__(self, image: Path, base: Path | None = None) -> None:
        check_prerequisites()
        self.image = image
        self.name, self.folder = claim(base)
        self.bus = self.folder / "bus"
        for sub in ("upper", "work", "root", "bus"):
            (self.folder / sub).mkdir(parents=True)
        self.bus.chmod(0o755)
        self.bus_address = f"unix:path={self.bus}/system_bus_socket"
        self._groups = [h / f"{self.name}.slice" for h in hierarchies(controllers=True)]
        self._process: subprocess.Popen[bytes] | None = None
        self._pid1 = 0
        self._image_held = contextlib.ExitStack()

    def start(self, timeout: float = 30) -> Self:
        """Boot, and wait until the manager says it is running (or degraded)."""
        self._image_held.enter_context(in_use(self.image))  # no run deletes it under us
        for group in self._groups:
            group.mkdir()
        with (self.folder / "manager.log").open("wb") as log:
            self._process = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--net",
                 "--propagation", "private", "--", "/bin/sh", "-c", _BOOT, "sh",
                 str(self.image), str(self.folder), str(self.folder / "root"), str(self.bus),
                 *(str(g / "cgroup.procs") for g in self._groups)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        atexit.register(self.stop)
        wait_until(self._booted, timeout, f"the system manager in {self.folder} (manager.log)")
        return self

    def _booted(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise SandboxError(
                f"the system manager exited with {self._process.returncode}: "
                f"{(self.folder / 'manager.log').read_text().strip()[-300:]}"
            )
        if not self._pid1:
            children = Path(f"/proc/{self._process.pid}/task/{self._process.pid}/children")
            first = children.read_text().split()[:1]
            if not first or Path(f"/proc/{first[0]}/exe").resolve().name != "systemd":
                return False
            self._pid1 = int(first[0])
        state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
        return state in {"running", "degraded"}

    @property
    def pid(self) -> int:
        """PID 1 of the root, as the host sees it."""
        assert self._pid1, "not started"
        return self._pid1

    def path(self, inside: str) -> Path:
        """Where a path of the root is, seen from the host."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def run(self, *argv: str, user: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command inside the root, as root or as ``user`` (its uid, gid and groups)."""
        as_user = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"] if user else []
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w",
             *_INSIDE_ENV, *as_user, *argv],
            capture_output=True, text=True, check=False, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise SandboxError(f"{' '.join(argv)} (in the root) exited with "
                               f"{result.returncode}: {result.stderr.strip()[-500:]}")
        return result

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Systemctl inside the root."""
        return self.run("systemctl", *args, check=check)

    def show(self, unit: str, prop: str) -> str:
        """One property of a unit, as systemctl prints it."""
        return self.systemctl("show", f"--property={prop}", "--value", unit).stdout.strip()

    def write(self, inside: str, content: str | bytes, mode: int = 0o644) -> None:
        """Write a file of the root (its folder is made if need be)."""
        path = self.path(inside)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")  # renamed: readers see all or nothing
        partial.write_bytes(content.encode() if isinstance(content, str) else content)
        partial.chmod(mode)
        partial.rename(path)

    def stop(self) -> None:
        """Power the manager off; kill what is left; remove the overlay and every folder."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            if self._pid1:
                os.kill(self._pid1, signal.SIGRTMIN + 4)  # systemd: poweroff
            try:
                process.wait(timeout=30 if self._pid1 else 0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        remove(self.name, self._groups, self.folder)
        self._image_held.close()
