"""A unit's processes from its cgroup: cgroup.procs of the group and its sub-groups."""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.probes.usage import members

if TYPE_CHECKING:
    from pathlib import Path

GROUP = "/app.slice/w1.service"


def tree(root: Path, procs: dict[str, str]) -> Path:
    """A cgroup tree under root: folder -> its cgroup.procs."""
    for folder, text in procs.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "cgroup.procs").write_text(text)
    return root


def test_the_pids_of_a_group_and_its_sub_groups(tmp_path: Path) -> None:
    """A delegated unit's sub-groups count: every pid below the unit's group is its."""
    root = tree(tmp_path, {"app.slice/w1.service": "10\n11\n",
                           "app.slice/w1.service/pool": "12\n",
                           "app.slice/w2.service": "20\n"})
    assert sorted(members(GROUP, (root,)) or []) == [10, 11, 12]


def test_the_hybrid_layout_is_found_in_its_unified_hierarchy(tmp_path: Path) -> None:
    """The hybrid layout (v1 with the unified tree beside it): the first root with the group."""
    tree(tmp_path / "unified", {"app.slice/w1.service": "10\n"})
    assert members(GROUP, (tmp_path, tmp_path / "unified")) == [10]


def test_a_group_that_cannot_be_read_here_is_none(tmp_path: Path) -> None:
    """No such group, no group, or a cgroup.procs that is not a list of pids: None, not []."""
    root = tree(tmp_path, {"app.slice/w1.service": "ten\n"})
    assert members(GROUP, (root,)) is None
    assert members("/app.slice/gone.service", (root,)) is None
    assert members("", (root,)) is None


def test_an_empty_group_has_no_pids(tmp_path: Path) -> None:
    """A group whose processes all left: [] (nothing runs), not None (unreadable)."""
    root = tree(tmp_path, {"app.slice/w1.service": ""})
    assert members(GROUP, (root,)) == []
