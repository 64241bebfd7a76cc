"""load_config on TOML files: validation, error messages and path resolution."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from healer.config import DEFAULT_POLICIES, load_config
from healer.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

MINIMAL = '[units]\nworkers = ["celery.service"]\n'


def write(tmp_path: Path, text: str, name: str = "healer.toml") -> Path:
    """Write a config file into tmp_path and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    """A file with only [units].workers is valid; everything else takes its default."""
    config = load_config(write(tmp_path, MINIMAL))
    assert config.units.workers == ["celery.service"]
    assert config.units.all() == ("celery.service",)
    assert config.systemd.bus == "system"
    assert config.paths.policies == DEFAULT_POLICIES


def test_full_config_loads(tmp_path: Path) -> None:
    """Every documented section is accepted; units.all() lists broker, workers, then beat."""
    config = load_config(write(tmp_path, """
[systemd]
bus = "user"
[celery]
broker_url = "redis://127.0.0.1:6379/0"
queues = ["celery", "mail"]
[units]
workers = ["w1.service", "w2@1.service"]
beat = "beat.service"
broker = "redis.service"
[beat]
schedule_file = "/var/lib/celery/beat-schedule"
[paths]
state_dir = "/var/lib/healer"
[agent]
interval = 2
"""))
    assert config.units.all() == ("redis.service", "w1.service", "w2@1.service", "beat.service")
    assert config.celery.queues == ["celery", "mail"]
    assert config.agent.interval == 2


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    """An unknown top-level key is an error naming the file and the key."""
    path = write(tmp_path, MINIMAL + "[sytemd]\nbus = 'user'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "sytemd: unknown key" in message


def test_unknown_key_in_section_is_named_dotted(tmp_path: Path) -> None:
    """An unknown key inside a section is named with its dotted path (units.wokers)."""
    path = write(tmp_path, '[units]\nworkers = ["a.service"]\nwokers = ["b.service"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "units.wokers: unknown key" in message


def test_missing_units_section_is_named(tmp_path: Path) -> None:
    """Without [units] the error names units (the allowlist is mandatory)."""
    path = write(tmp_path, '[systemd]\nbus = "user"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))
    assert "units" in str(info.value)


def test_empty_workers_is_an_error(tmp_path: Path) -> None:
    """An empty workers list is refused and named."""
    path = write(tmp_path, "[units]\nworkers = []\n")
    with pytest.raises(ConfigError, match=r"units\.workers"):
        load_config(path)


@pytest.mark.parametrize("name", ["celery", "celery.service; rm -rf /", "../x.service", ""])
def test_bad_unit_name_is_named(tmp_path: Path, name: str) -> None:
    """A string that is not a systemd unit name is an error naming the key and the value."""
    path = write(tmp_path, f'[units]\nworkers = ["ok.service", "{name}"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "units.workers.1" in message
    assert "not a systemd unit name" in message


def test_bad_beat_unit_name_is_named(tmp_path: Path) -> None:
    """The beat and broker units are validated like the workers."""
    path = write(tmp_path, MINIMAL + 'beat = "beat"\n')
    with pytest.raises(ConfigError, match=r"units\.beat"):
        load_config(path)


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    """Invalid TOML is a ConfigError naming the file."""
    path = write(tmp_path, "[units\nworkers = [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: invalid TOML")


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    """A missing config file is a ConfigError naming the path."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "no such config file" in str(info.value)


def test_wrong_type_is_named(tmp_path: Path) -> None:
    """A value of the wrong type names its dotted key."""
    path = write(tmp_path, MINIMAL + "[agent]\ninterval = 'fast'\n")
    with pytest.raises(ConfigError, match=r"agent\.interval"):
        load_config(path)


def test_relative_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    """Relative [paths] are taken from the config file's folder, absolute ones kept as given."""
    folder = tmp_path / "etc"
    folder.mkdir()
    path = write(folder, MINIMAL + '[paths]\nstate_dir = "state"\naudit_log = "../log/a.jsonl"\n'
                 f'policies = "{tmp_path / "abs"}"\n')
    config = load_config(path)
    assert config.paths.state_dir == (folder / "state").resolve()
    assert config.paths.audit_log == (tmp_path / "log" / "a.jsonl").resolve()
    assert config.paths.policies == tmp_path / "abs"


def test_every_relative_path_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    """Log, schedule and journal paths, not only [paths], resolve against the config's folder."""
    config = tmp_path / "etc" / "healer.toml"
    config.parent.mkdir()
    config.write_text('[units]\nworkers = ["a.service"]\n[celery]\nworker_log = "log/w.log"\n'
                      '[beat]\nschedule_file = "s/sched"\nlog = "journal"\n'
                      '[journal]\ndirectory = "j"\n')
    loaded = load_config(config)
    assert loaded.celery.worker_log == str(config.parent / "log" / "w.log")
    assert loaded.beat.schedule_file == config.parent / "s" / "sched"
    assert loaded.beat.log == "journal"
    assert loaded.journal.directory == config.parent / "j"
