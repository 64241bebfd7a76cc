"""One error hierarchy for healer; every error healer raises on purpose is one of these.

    HealerError
    ├── ConfigError          bad configuration or policy input (exit 2); names file, key or line
    │   └── AuditCorrupt     an audit log's file is not what healer wrote (a torn .gz rotation)
    ├── ProbeError           the world could not be read (exit 3 from run-once)
    │   └── BusUnavailable   no D-Bus connection to systemd
    ├── ActionError          a remediation could not be carried out
    │   ├── NotAllowed       the unit is not in [units]; nothing was called
    │   ├── SystemdError     systemd answered a D-Bus call with an error (its name kept)
    │   └── JobFailed        a systemd job ended in a result other than done/skipped, or timed out
    ├── StateError           the state store could not be read or written
    ├── FleetUnreachable     the fleet's coordination store did not answer
    └── NotifyError          an escalation could not be delivered

Lower-level errors (dbus, redis, OS) are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations


class HealerError(Exception):
    """Base of every error healer raises on purpose."""


class ConfigError(HealerError):
    """Bad configuration or policy input; the message names the file and key or line."""


class AuditCorrupt(ConfigError):
    """An audit log file cannot be read back as written (``audit verify`` says BROKEN)."""


class ProbeError(HealerError):
    """A probe could not read the state of the world."""


class BusUnavailable(ProbeError):
    """No D-Bus connection to systemd could be made."""


class FleetUnreachable(HealerError):
    """The fleet's store (Redis) could not be reached; the agent falls back to its own guard."""


class ActionError(HealerError):
    """A remediation step could not be carried out."""


class NotAllowed(ActionError):
    """The target unit is outside the [units] allowlist."""


ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
AUTH_REQUIRED = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
DENIALS = frozenset({ACCESS_DENIED, AUTH_REQUIRED})


class SystemdError(ActionError):
    """systemd refused or failed a D-Bus call; ``dbus_name`` keeps the D-Bus error name."""

    def __init__(self, message: str, dbus_name: str | None = None) -> None:
        super().__init__(message)
        self.dbus_name = dbus_name

    @property
    def denied(self) -> bool:
        """Polkit said no: retrying, or trying the next step, cannot help."""
        return self.dbus_name in DENIALS


class JobFailed(ActionError):
    """A systemd job finished with a failing result or did not finish before its deadline."""

    def __init__(self, message: str, result: str) -> None:
        super().__init__(message)
        self.result = result


class StateError(HealerError):
    """The state store could not be read or written."""


class NotifyError(HealerError):
    """An escalation could not be delivered (after retries)."""
