"""Probes: the only code that reads the world. They build one Snapshot per pass."""
