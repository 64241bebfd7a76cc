"""Doctor's checks that the sandbox cannot stage: old kombu, and an install on a system bus."""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer import doctor
from healer.config import Config, PathsConfig, SystemdConfig, UnitsConfig
from healer.systemd.fake import FakeSystemd, unit
from healer.vocabulary import Verdict

if TYPE_CHECKING:
    from pathlib import Path

REPORT = "software -> celery:5.7.0 (opalescent) kombu:{} py:3.11.7\nplatform -> ..."


def verdict_of(checks: list[doctor.Check], name: str) -> Verdict:
    """The verdict of the one check of that name."""
    [found] = [c for c in checks if c.name == name]
    return found.verdict


def test_kombu_before_the_consuming_fix_warns() -> None:
    """Kombu 5.3.7 warns (celery#8030); 5.4.0 is ok; a report without kombu is unknown."""
    for version, expected in (("5.3.7", Verdict.WARNING), ("5.4.0", Verdict.OK)):
        checks = list(doctor.app("w@h", {}, REPORT.format(version), ()))
        assert verdict_of(checks, "versions") == expected, version
    assert verdict_of(list(doctor.app("w@h", {}, "", ())), "versions") == Verdict.UNKNOWN


def test_a_system_install_checks_folders_and_the_watchdog(tmp_path: Path) -> None:
    """On the system bus: missing folders and an agent without WatchdogSec each warn."""
    config = Config(units=UnitsConfig(workers=["w.service"]), systemd=SystemdConfig(bus="system"),
                    paths=PathsConfig(state_dir=tmp_path / "state",
                                      audit_log=tmp_path / "log" / "audit.jsonl"))
    systemd = FakeSystemd(unit(doctor.AGENT, watchdog_us=0))
    checks = list(doctor.deployment(config, systemd, ["w.service"], tmp_path / "50-healer.rules"))
    assert [(c.name, c.verdict) for c in checks if c.name != "polkit"] == [
        ("folders", Verdict.WARNING), ("folders", Verdict.WARNING),
        ("watchdog", Verdict.WARNING)]
    (tmp_path / "state").mkdir()
    (tmp_path / "log").mkdir()
    systemd.units[doctor.AGENT] = unit(doctor.AGENT, watchdog_us=30_000_000)
    checks = list(doctor.deployment(config, systemd, ["w.service"], tmp_path / "50-healer.rules"))
    assert {c.verdict for c in checks if c.name != "polkit"} == {Verdict.OK}


def test_exit_codes_follow_nagios() -> None:
    """Critical 2 over warning 1 over unknown 3 over ok 0."""
    def of(*verdicts: Verdict) -> int:
        return doctor.nagios([doctor.Check("c", "s", v, "") for v in verdicts])

    assert (of(Verdict.OK, Verdict.NOT_APPLICABLE), of(Verdict.UNKNOWN), of(Verdict.WARNING,
            Verdict.UNKNOWN), of(Verdict.CRITICAL, Verdict.WARNING)) == (0, 3, 1, 2)
