"""A minimal Debian root with systemd, polkitd, redis-server and healer's locked dependencies.

Built once with debootstrap from the mirror apt already uses and cached under
/var/cache/healer, keyed by what goes into it (suite, packages, masked units, the lock file); a
change to any of those builds a new one and removes the old. The system sandbox boots it
read-only under an overlay, so a boot never changes the cached root.

Python packages are built into wheels on the host, by the host's pip with its own configuration
and hash checking, and installed in the root with ``--no-index``: the root needs no compiler,
headers or network.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import tomllib

from sandbox.base import SandboxError

if TYPE_CHECKING:
    from collections.abc import Iterator

SUITE = "bookworm"
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "polkitd",  # polkitd needs libpam-systemd
    "python3-venv", "libglib2.0-0", "libdbus-1-3",  # healer's runtime (dbus-python, its GLib loop)
    "redis-server",  # the broker of the deployment under management
)
# They would touch the host's console and kernel settings.
MASKED = ("console-getty.service", "getty@tty1.service", "systemd-sysctl.service",
          "systemd-modules-load.service")
CACHE = Path("/var/cache/healer")
VENV = "/opt/healer/venv"
_CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
              "PIP_CONFIG_FILE": "/dev/null", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian archive apt is configured with (deb822 ``URIs:`` or a sources.list line)."""
    candidates: list[str] = []
    for path in sorted(sources.glob("sources.list.d/*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:"):
                candidates += line.split()[1:]
    for path in [sources / "sources.list", *sorted(sources.glob("sources.list.d/*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                fields = line.split()
                if fields[:1] == ["deb"]:
                    candidates += [f for f in fields[1:] if "://" in f][:1]
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    raise SandboxError(f"no Debian archive (a URI ending in /debian) in {sources}/sources.list*")


def _run(argv: list[str], what: str, log: Path, env: dict[str, str] | None = None) -> None:
    with log.open("ab") as out:
        try:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    env=env, check=False, timeout=1800)
        except subprocess.TimeoutExpired as exc:
            raise SandboxError(f"{what} took over {exc.timeout:.0f}s; see {log}") from exc
    if result.returncode != 0:
        raise SandboxError(f"{what} failed with {result.returncode}; see {log}")


def _runtime_requirements(project: Path) -> list[str]:
    return list(tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"])


def image_key(project: Path) -> str:
    """What the image is made of, hashed: a change to any part means a new image."""
    digest = hashlib.sha256()
    for part in (SUITE, *PACKAGES, *MASKED, *_runtime_requirements(project)):
        digest.update(part.encode() + b"\0")
    digest.update((project / "requirements.lock").read_bytes())
    return digest.hexdigest()[:16]


def _build(root: Path, project: Path, log: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise SandboxError("debootstrap not found (Debian package debootstrap)")
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
          str(root), debian_mirror()], "debootstrap", log)
    for unit in MASKED:
        (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
    wheels = root / "opt/healer/wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--require-hashes",
          "-r", str(project / "requirements.lock"), "--wheel-dir", str(wheels)],
         "building the locked wheels", log)
    _run(["chroot", str(root), "python3", "-m", "venv", VENV], "making the venv", log,
         _CLEAN_ENV)
    _run(["chroot", str(root), f"{VENV}/bin/pip", "install", "--quiet", "--no-index",
          "--find-links", "/opt/healer/wheels", *_runtime_requirements(project)],
         "installing the runtime dependencies", log, _CLEAN_ENV)
    shutil.rmtree(wheels)


@contextlib.contextmanager
def in_use(image: Path, exclusive: bool = False) -> Iterator[None]:
    """Hold an image: shared while booted from, exclusive (else BlockingIOError) to delete it."""
    with (image / ".complete").open() as marker:
        fcntl.flock(marker, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
        yield


def _unmount_below(folder: Path) -> None:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((p for p in points if p.startswith(f"{folder}/")), reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)


def ensure_image(project: Path, cache: Path = CACHE) -> Path:
    """The cached root for this project's lock file, built first if need be (about 1-2 min)."""
    key = image_key(project)
    image = cache / f"system-root-{key}"
    if (image / ".complete").exists():
        return image
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "system-root.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be building it
        if (image / ".complete").exists():
            return image
        for old in cache.glob("system-root-*"):
            if not old.is_dir():
                old.unlink()
                continue
            with contextlib.suppress(BlockingIOError), in_use(old, exclusive=True):
                shutil.rmtree(old, ignore_errors=True)  # not booted by another run just now
        building = cache / f"building-{key}"
        _unmount_below(building)  # a killed debootstrap leaves its proc and sys mounts
        shutil.rmtree(building, ignore_errors=True)
        log = cache / f"system-root-{key}.log"
        with contextlib.suppress(FileNotFoundError):
            log.unlink()
        _build(building, project, log)
        (building / ".complete").touch()
        building.rename(image)
        return image
