"""systemd over D-Bus with dbus-python: LoadUnit + GetAll to read, jobs awaited on JobRemoved.

A unit's object path is asked for once (LoadUnit); later reads are two GetAll calls on it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
from typing import TYPE_CHECKING, Any

import dbus
import dbus.bus
from dbus.mainloop.glib import DBusGMainLoop

from healer.errors import (
    ACCESS_DENIED,
    AUTH_REQUIRED,
    BusUnavailable,
    ProbeError,
    SystemdError,
)
from healer.model import UnitState
from healer.wait import until

if TYPE_CHECKING:
    from healer.clock import Clock
    from healer.systemd.backend import JobVerb

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
SERVICE = "org.freedesktop.systemd1.Service"
PROPERTIES = "org.freedesktop.DBus.Properties"
BUS_DRIVER = "org.freedesktop.DBus"
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
_JOB_METHODS = {"start": "StartUnit", "stop": "StopUnit", "restart": "RestartUnit"}
_PUMP_PAUSE = 0.005
_PUMP_BATCH = 100
# The signals arrive on GLib's default main context, which dbus-python's main loop uses.
# One call of libglib (already loaded by dbus.mainloop.glib) turns it: PyGObject would cost
# the agent 5 MiB for this alone.
_GLIB = ctypes.CDLL("libglib-2.0.so.0")
_GLIB.g_main_context_iteration.argtypes = [ctypes.c_void_p, ctypes.c_int]
_GLIB.g_main_context_iteration.restype = ctypes.c_int
UNKNOWN = 2**64 - 1
LOST = frozenset(f"org.freedesktop.DBus.Error.{name}"
                 for name in ("Disconnected", "NoReply", "NoServer", "ServiceUnknown"))
RELOAD_TIMEOUT = 120.0
CONNECT_TIMEOUT = 5.0


def bus_address(spec: str) -> str:
    """Turn the config's ``bus`` ("system", "user" or an address) into a D-Bus address."""
    if spec == "system":
        return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dbus/system_bus_socket")
    if spec == "user":
        if "DBUS_SESSION_BUS_ADDRESS" in os.environ:
            return os.environ["DBUS_SESSION_BUS_ADDRESS"]
        runtime = os.environ.get("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
        return f"unix:path={runtime}/bus"
    return spec


def check_answers(address: str, timeout: float) -> None:
    """Fail fast, within ``timeout``, when a unix-socket bus does not answer the handshake.

    libdbus waits without a bound for a peer that accepts and then says nothing.
    """
    if not address.startswith("unix:path="):
        return
    path = address.removeprefix("unix:path=").split(",")[0]
    uid = str(os.getuid()).encode().hex().encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(b"\0AUTH EXTERNAL " + uid + b"\r\n")
            reply = sock.recv(128)
        except OSError as exc:
            raise BusUnavailable(f"cannot reach systemd on D-Bus at {address}: "
                                 f"{exc.strerror or exc}") from exc
    if not reply:
        raise BusUnavailable(f"cannot reach systemd on D-Bus at {address}: it hung up")


def _known(value: object) -> int | None:
    """A counter systemd reports, or None when it reads 2^64-1 (unknown)."""
    return None if value is None or int(str(value)) >= UNKNOWN else int(str(value))


HINTS = {
    ACCESS_DENIED:
        "polkit denies it: the rule does not cover this unit or verb; regenerate it with "
        "`healer deploy polkit` after changing [units] or the policies",
    AUTH_REQUIRED:
        "no polkit rule lets this user manage units: install the one `healer deploy polkit` "
        "prints in /etc/polkit-1/rules.d/",
}


def translate(exc: dbus.exceptions.DBusException, doing: str) -> SystemdError | BusUnavailable:
    """A D-Bus error as healer's: lost bus, polkit denial (with what to do), or systemd's own."""
    name = exc.get_dbus_name()
    if name in LOST:  # what became of the call is unknown: the next pass looks again
        return BusUnavailable(f"{doing}: lost the D-Bus connection to systemd ({name})")
    hint = HINTS.get(name)
    text = (f"{doing}: {name.rsplit('.', 1)[-1]}: {hint}" if hint else
            f"{doing}: {name}: {exc.get_dbus_message()}")
    return SystemdError(text, dbus_name=name)


class DBusSystemd:
    """The real backend, connected on first use and again after the bus was lost.

    Each connection subscribes to JobRemoved before any job is queued.
    """

    def __init__(self, bus: str, clock: Clock, call_timeout: float = 25.0) -> None:
        self._clock = clock
        self._call_timeout = call_timeout
        self._address = bus_address(bus)
        self._finished: dict[str, str] = {}
        self._paths: dict[str, str] = {}  # object path -> unit name, for the units read
        self._units: dict[str, str] = {}  # and back
        self._changed: set[str] = set()
        self._stale = False  # systemd left the bus (a re-exec): its subscription went with it
        self._missed = False  # a connection was lost since changes() last said so
        self._bus: Any = None
        self._manager: Any = None

    def _connected(self) -> Any:  # noqa: ANN401 - dbus proxies are untyped
        if self._stale:
            self._drop()
        if self._manager is not None:
            return self._manager
        check_answers(self._address, CONNECT_TIMEOUT)
        DBusGMainLoop(set_as_default=True)
        try:
            bus = dbus.bus.BusConnection(self._address)
            bus.add_signal_receiver(
                self._on_job_removed,
                signal_name="JobRemoved",
                dbus_interface=MANAGER,
                path=MANAGER_PATH,
            )
            bus.add_signal_receiver(self._on_properties, signal_name="PropertiesChanged",
                                    dbus_interface=PROPERTIES, path_keyword="path")
            bus.add_signal_receiver(self._on_owner_changed, signal_name="NameOwnerChanged",
                                    dbus_interface=BUS_DRIVER, arg0=SYSTEMD)
            bus.call_on_disconnection(self._on_disconnected)
            manager = dbus.Interface(bus.get_object(SYSTEMD, MANAGER_PATH, introspect=False),
                                     MANAGER)
            manager.Subscribe(timeout=self._call_timeout)
        except dbus.exceptions.DBusException as exc:
            raise BusUnavailable(
                f"cannot reach systemd on D-Bus at {self._address}: {exc.get_dbus_message()}"
            ) from exc
        self._bus, self._manager = bus, manager
        return manager

    def _failure(self, exc: dbus.exceptions.DBusException, doing: str
                 ) -> SystemdError | BusUnavailable:
        """``translate``, forgetting a connection that is gone so the next call connects again."""
        error = translate(exc, doing)
        if isinstance(error, BusUnavailable):
            self._drop()
        return error

    def _drop(self) -> None:
        """Close the connection; the next call connects (and subscribes) again."""
        with contextlib.suppress(Exception):
            self._bus.close()
        self._bus = self._manager = None
        self._stale, self._missed = False, True

    def _on_job_removed(self, _id: int, job: str, _unit: str, result: str) -> None:
        self._finished[str(job)] = str(result)

    def _on_properties(self, interface: str, changed: dict[str, Any], _invalidated: list[str],
                       path: str = "") -> None:
        if interface == UNIT and "ActiveState" in changed and str(path) in self._paths:
            self._changed.add(self._paths[str(path)])

    def _on_disconnected(self, _bus: object) -> None:
        self._drop()

    def _on_owner_changed(self, _name: str, old: str, _new: str) -> None:
        if old:  # the systemd this connection subscribed to is gone
            self._stale = True

    def _pump(self) -> None:
        """Deliver the signals waiting, a bounded batch."""
        for _ in range(_PUMP_BATCH):
            if not _GLIB.g_main_context_iteration(None, 0):  # the default context, not blocking
                break

    def changes(self) -> set[str] | None:
        """Units read before whose ActiveState systemd signalled since the last call.

        Every connection subscribes (Subscribe, PropertiesChanged). After one was lost (also
        when a read has connected again since: changes may have been missed) this says None,
        and keeps saying it until a read connects again.
        """
        if self._bus is not None:
            self._pump()
            if self._stale:  # systemd left the bus: this connection's subscription is gone
                self._drop()
        if self._bus is None or self._missed:
            self._missed = self._bus is None
            return None
        changed, self._changed = self._changed, set()
        return changed

    def _properties(self, path: str, interface: str) -> dict[str, Any]:
        """GetAll, sent to systemd's bus name as it is (a proxy would ask the bus its owner)."""
        props: dict[str, Any] = self._bus.call_blocking(
            SYSTEMD, path, PROPERTIES, "GetAll", "s", (interface,), timeout=self._call_timeout)
        return props

    def _load(self, manager: Any, name: str) -> str:  # noqa: ANN401 - dbus proxies are untyped
        path = str(manager.LoadUnit(name, timeout=self._call_timeout))
        self._paths[path], self._units[name] = name, path
        return path

    def unit_state(self, name: str) -> UnitState:
        """GetAll on the unit's path, which the first read asks LoadUnit for.

        LoadUnit, not GetUnit: it fails for garbage-collected units; a path that systemd no
        longer knows is loaded again.

        A read that finds a connection it had lost (systemd got another name on the bus, say)
        connects again and reads once more: reading twice changes nothing.
        """
        connected = self._manager is not None
        try:
            return self._read(name)
        except BusUnavailable:
            if not connected:
                raise
            return self._read(name)

    def _read(self, name: str) -> UnitState:
        manager = self._connected()
        try:
            path = self._units.get(name) or self._load(manager, name)
            try:
                unit = self._properties(path, UNIT)
            except dbus.exceptions.DBusException as exc:  # a unit read before, unloaded since
                if exc.get_dbus_name() != UNKNOWN_OBJECT:
                    raise
                path = self._load(manager, name)
                unit = self._properties(path, UNIT)
            service = self._properties(path, SERVICE) if name.endswith(".service") else {}
        except dbus.exceptions.DBusException as exc:
            error = self._failure(exc, f"reading {name}")
            raise error if isinstance(error, BusUnavailable) else ProbeError(str(error)) from exc
        return UnitState(
            name=name,
            load_state=str(unit["LoadState"]),
            active_state=str(unit["ActiveState"]),
            sub_state=str(unit["SubState"]),
            unit_id=str(unit["Id"]) if str(unit["Id"]) != name else None,
            result=str(service.get("Result", "success")),
            n_restarts=int(service.get("NRestarts", 0)),
            main_pid=int(service.get("MainPID", 0)),
            exec_main_status=int(service.get("ExecMainStatus", 0)),
            active_enter_us=int(unit["ActiveEnterTimestamp"]),
            inactive_enter_us=int(unit["InactiveEnterTimestamp"]),
            argv=tuple(str(a) for a in service["ExecStart"][0][1]) if service.get("ExecStart")
            else (),
            memory_bytes=_known(service.get("MemoryCurrent")),
            cpu_nsec=_known(service.get("CPUUsageNSec")),
            environment=tuple(str(v) for v in service.get("Environment", ())),
            environment_files=tuple((str(p), bool(m)) for p, m in
                                    service.get("EnvironmentFiles", ())),
            working_directory=str(service.get("WorkingDirectory", "")),
            stdout=str(service.get("StandardOutput", "")),
            stderr=str(service.get("StandardError", "")),
            unit_files=tuple(str(p) for p in (unit.get("FragmentPath", ""),
                                              *unit.get("DropInPaths", ())) if p),
            control_group=str(service.get("ControlGroup", "")),
            restart=str(service.get("Restart", "")),
            kill_mode=str(service.get("KillMode", "")),
            timeout_stop_us=_known(service.get("TimeoutStopUSec")),
            memory_max=_known(service.get("MemoryMax")),
            watchdog_us=_known(service.get("WatchdogUSec")) or 0,
            user=str(service.get("User", "")),
        )

    def job(self, verb: JobVerb, name: str, timeout: float) -> str:
        """Queue the job, then turn GLib's loop until its JobRemoved arrives or time is up."""
        method = getattr(self._connected(), _JOB_METHODS[verb])
        try:
            job = str(method(name, "replace", timeout=self._call_timeout))
        except dbus.exceptions.DBusException as exc:
            raise self._failure(exc, f"{verb} {name}") from exc
        def removed() -> str | None:
            if job not in self._finished:
                self._pump()
            return self._finished.pop(job, None)

        return until(removed, timeout, self._clock, _PUMP_PAUSE) or "timeout"

    def reload(self) -> None:
        """Manager.Reload, which returns when the reload is done (a generous timeout)."""
        try:
            self._connected().Reload(timeout=RELOAD_TIMEOUT)
        except dbus.exceptions.DBusException as exc:
            raise self._failure(exc, "daemon-reload") from exc

    def reset_failed(self, name: str) -> None:
        """ResetFailedUnit."""
        try:
            self._connected().ResetFailedUnit(name, timeout=self._call_timeout)
        except dbus.exceptions.DBusException as exc:
            raise self._failure(exc, f"reset-failed {name}") from exc
