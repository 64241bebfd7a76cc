"""The state store: atomic JSON round trips and clear errors on a bad file."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from healer.errors import StateError
from healer.state import Incident, State, StateStore
from healer.vocabulary import FindingKey, Outcome

if TYPE_CHECKING:
    from pathlib import Path

NOBODY = 65534


def test_round_trip(tmp_path: Path) -> None:
    """What is saved loads back equal."""
    store = StateStore(tmp_path / "state")
    state = State(
        actions={"restart_unit:w1.service": [1_700_000_000.0, 1_700_000_010.5]},
        incidents={FindingKey.parse("worker_down:w1.service"): Incident(
            id="abc", opened=1_700_000_000.0, last_decision=Outcome.HELD)},
    )
    store.save(state)
    assert store.load() == state


def test_missing_file_gives_fresh_state(tmp_path: Path) -> None:
    """With no state file yet, load returns an empty State and creates nothing."""
    store = StateStore(tmp_path / "state")
    assert store.load() == State()
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("content", [b"{not json", b'{"actions": {"k": "soon"}}', b"\xff\xfe"])
def test_corrupt_file_is_state_error_naming_path(tmp_path: Path, content: bytes) -> None:
    """An unreadable state file raises StateError naming the file."""
    store = StateStore(tmp_path)
    store.path.write_bytes(content)
    with pytest.raises(StateError) as info:
        store.load()
    assert str(store.path) in str(info.value)


def test_save_leaves_no_temp_file(tmp_path: Path) -> None:
    """After save, only state.json is left: the temp file was renamed over it."""
    store = StateStore(tmp_path / "state")
    store.save(State())
    store.save(State(actions={"a:b.service": [1.0]}))
    assert sorted(p.name for p in store.dir.iterdir()) == ["state.json"]
    assert store.load().actions == {"a:b.service": [1.0]}


def test_locked_creates_dir_and_allows_save(tmp_path: Path) -> None:
    """The pass lock creates the state dir and a save inside it works."""
    store = StateStore(tmp_path / "deep" / "state")
    with store.locked():
        store.save(State())
    assert store.path.exists()


def test_files_root_writes_belong_to_the_folders_owner(tmp_path: Path) -> None:
    """Saved as root in the service user's state dir, state.json and the lock stay that user's."""
    folder = tmp_path / "state"
    folder.mkdir()
    os.chown(folder, NOBODY, NOBODY)
    store = StateStore(folder)
    with store.locked():
        store.save(State())
    for written in (folder / "state.json", folder / "lock"):
        assert (written.stat().st_uid, written.stat().st_gid) == (NOBODY, NOBODY)
