"""The boundary to systemd: one interface, a D-Bus backend and a fake for unit tests."""

from healer.systemd.backend import JobVerb, Systemd

__all__ = ["JobVerb", "Systemd"]
