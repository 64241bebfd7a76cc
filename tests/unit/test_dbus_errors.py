"""How D-Bus errors from systemd become healer's errors, before the pipeline sees them."""

from __future__ import annotations

import dbus.exceptions
import pytest

from healer.errors import BusUnavailable, SystemdError
from healer.systemd.dbus_backend import LOST, translate

DENIALS = {
    "org.freedesktop.DBus.Error.AccessDenied": "AccessDenied: polkit denies it: the rule does "
                                               "not cover this unit or verb",
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired":
        "InteractiveAuthorizationRequired: no polkit rule lets this user manage units: "
        "install the one `healer deploy polkit` prints",
}


@pytest.mark.parametrize("name", sorted(LOST))
def test_a_connection_lost_under_a_call_is_bus_unavailable(name: str) -> None:
    """Disconnected, NoReply and the like mean no bus, not a failed job: BusUnavailable."""
    error = translate(dbus.exceptions.DBusException("gone", name=name), "restart w.service")
    assert isinstance(error, BusUnavailable)
    assert str(error).startswith("restart w.service: lost the D-Bus connection")


@pytest.mark.parametrize(("name", "text"), sorted(DENIALS.items()))
def test_polkit_denials_name_the_error_and_what_to_do(name: str, text: str) -> None:
    """Each denial keeps its D-Bus name, and its message names it and says what to do."""
    error = translate(dbus.exceptions.DBusException("no", name=name), "restart w.service")
    assert isinstance(error, SystemdError)
    assert error.denied
    assert error.dbus_name == name
    assert str(error).startswith(f"restart w.service: {text}")


def test_other_systemd_errors_keep_name_and_message() -> None:
    """Any other error is systemd's own, not a denial, with its name and message."""
    name = "org.freedesktop.systemd1.NoSuchUnit"
    error = translate(dbus.exceptions.DBusException("Unit x not found.", name=name), "restart x")
    assert isinstance(error, SystemdError)
    assert not error.denied
    assert str(error) == f"restart x: {name}: Unit x not found."
