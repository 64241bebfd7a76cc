"""The runbook's deployment on a real system manager, with healer installed for its own user.

Debian's redis-server, a Celery worker and beat as system units of a ``celery`` user, and healer
installed as the README's "Installing on a host" says.

Unit names and paths are those of ``deploy/healer.toml``, so the shipped config works unchanged.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

from sandbox.base import SandboxError, wait_until
from sandbox.rootimage import VENV, ensure_image
from sandbox.stack import APP_DIR, BEAT, NODE, WORKER, Deployment, beat_command, worker_command
from sandbox.systemmanager import SystemManager

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Self

BROKER = "redis-server.service"
HEALER = f"{VENV}/bin/healer"
RULE = "/etc/polkit-1/rules.d/50-healer.rules"
_RULES_LOADED = "Finished loading, compiling and executing"  # polkitd, after (re)loading
APP_INSIDE = "/opt/healer/app"  # the sandbox's demoapp.py, copied in: healer's wheel lacks it
_COMMANDS = {
    WORKER: worker_command(f"{VENV}/bin/python", NODE, APP_INSIDE),
    BEAT: beat_command(f"{VENV}/bin/python", "/var/lib/celery/beat-schedule", APP_INSIDE),
}


def _unit(description: str, command: str) -> str:
    return (
        f"[Unit]\nDescription={description}\nAfter={BROKER}\n\n"
        "[Service]\nType=simple\nRestart=no\nUser=celery\nGroup=celery\n"
        "StateDirectory=celery\nWorkingDirectory=/var/lib/celery\n"
        "Environment=PYTHONUNBUFFERED=1\n"
        f"ExecStart={command}\n\n[Install]\nWantedBy=multi-user.target\n"
    )


class SystemStack(Deployment):
    """redis-server, a worker and beat on a booted root, with healer installed next to them."""

    def __init__(self, project: Path, manager: SystemManager | None = None) -> None:
        self.project = project
        self.manager = manager or SystemManager(ensure_image(project))

    def start(self, timeout: float = 60) -> Self:
        """Boot, install healer, start the Celery units and wait until they work."""
        self.manager.start()
        self._install_healer()
        run = self.manager.run
        run("useradd", "--system", "--home-dir", "/var/lib/celery", "--shell",
            "/usr/sbin/nologin", "celery")
        for unit, command in _COMMANDS.items():
            self.manager.write(f"/etc/systemd/system/{unit}", _unit("Celery", command))
        self.manager.systemctl("daemon-reload")
        self.manager.systemctl("enable", "--now", WORKER, BEAT)
        self.wait_worker_ready(timeout)
        self.wait_beat_sending(timeout)
        return self

    def _install_healer(self) -> None:
        """The README's install steps that the cached image has not done already."""
        # Built on the host (pip would resolve /proc/PID/root to the host's /), from a copy of
        # the source (setuptools leaves build/ behind, and would pack stale files from it).
        source, wheels = self.manager.folder / "source", self.manager.folder / "dist"
        shutil.copytree(self.project, source, ignore=shutil.ignore_patterns(
            ".*", "build", "*.egg-info", "__pycache__", "tests", "benchmarks", "sandbox"))
        built = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
             str(wheels), str(source)], capture_output=True, text=True, check=False,
        )
        if built.returncode != 0:
            raise SandboxError(f"building healer's wheel failed: {built.stderr.strip()[-300:]}")
        wheel = next(wheels.glob("healer-*.whl"))
        inside = f"/opt/healer/{wheel.name}"
        self.manager.write(inside, wheel.read_bytes())
        self.manager.write(f"{APP_INSIDE}/demoapp.py", (APP_DIR / "demoapp.py").read_bytes())
        run = self.manager.run
        run(f"{VENV}/bin/pip", "install", "--quiet", "--no-index", "--no-deps", inside)
        run("useradd", "--system", "--home-dir", "/var/lib/healer", "--shell",
            "/usr/sbin/nologin", "--groups", "systemd-journal", "healer")
        self.manager.write("/etc/healer/healer.toml",
                           (self.project / "deploy" / "healer.toml").read_text())

    def unit_log(self, unit: str) -> str:
        """Everything the root's journal holds for a unit, one message per line."""
        return self.manager.run("journalctl", "--no-pager", "-o", "cat", "-u", unit).stdout

    def show(self, unit: str, prop: str) -> str:
        """One property of a unit of the root's manager."""
        return self.manager.show(unit, prop)

    def kill(self, unit: str) -> None:
        """SIGKILL the unit's main process, as the OOM killer would; wait until it is down."""
        self.manager.systemctl("kill", "--kill-who=main", "--signal=KILL", unit)
        self.wait_down(unit)

    def install_rule(self, config: str = "/etc/healer/healer.toml") -> str:
        """Install what `healer deploy polkit` prints for a config, as the README does."""
        text = self.healer("deploy", "polkit", config=config).stdout
        self._change_rules(lambda: self.manager.write(RULE, text))
        return text

    def remove_rule(self) -> None:
        """No polkit rule for healer at all."""
        self._change_rules(lambda: self.manager.path(RULE).unlink(missing_ok=True))

    def _change_rules(self, change: Callable[[], None]) -> None:
        """Change rules.d, and wait until a running polkitd has loaded it again."""
        if not self.manager.path(RULE).parent.exists() or not self.active("polkit.service"):
            change()  # polkitd is started on demand and loads the rules then
            return
        loaded = self.unit_log("polkit.service").count(_RULES_LOADED)
        change()
        wait_until(lambda: self.unit_log("polkit.service").count(_RULES_LOADED) > loaded, 20,
                   "polkitd to load its rules again")

    def healer(self, *args: str, config: str = "/etc/healer/healer.toml", user: str = "healer",
               check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the healer command line inside the root, as the healer user by default."""
        return self.manager.run(HEALER, "--config", config, *args, user=user, check=check)

    def stop(self) -> None:
        """Tear the whole sandbox down."""
        self.manager.stop()
