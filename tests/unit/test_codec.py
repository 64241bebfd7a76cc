"""Typed data from outside: where a bad value is, why, and the text a key or path is kept as."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from healer import codec
from healer.config import Config
from healer.state import Breaker, State
from healer.vocabulary import FindingKey, Scenario

UNITS = {"workers": ["a.service"]}


@pytest.mark.parametrize(("data", "where", "why"), [
    ({"units": {"workers": ["a.service", "b"]}}, ("units", "workers", 1),
     "'b' is not a systemd unit name"),
    ({"units": {**UNITS, "wokers": []}}, ("units", "wokers"), "unknown key"),
    ({}, ("units",), "required"),
    ({"units": UNITS, "journal": {"scope": "host"}}, ("journal", "scope"),
     "(one of: system, user)"),
    ({"units": UNITS, "agent": {"interval": float("nan")}}, ("agent", "interval"), "> 0"),
    ({"units": UNITS, "paths": {"state_dir": "a\x00b"}}, ("paths", "state_dir"), "NUL byte"),
])
def test_a_bad_value_is_named_where_it_is(data: dict[str, object], where: tuple[str | int, ...],
                                          why: str) -> None:
    """Invalid names the dotted place of the first bad value, and the reason, in one line."""
    with pytest.raises(codec.Invalid) as info:
        codec.convert(data, Config)
    assert info.value.where == where
    assert why in info.value.why
    assert "\n" not in str(info.value)


def test_keys_and_paths_are_kept_as_text() -> None:
    """A FindingKey is stored as scenario:unit and a path as its text, and both read back."""
    key = FindingKey(Scenario.WORKER_DOWN, None)
    state = State(breakers={key: Breaker(opened=1.0, incident="i", reason="r")})
    assert codec.dump(state)["breakers"] == {"worker_down:-": {
        "opened": 1.0, "incident": "i", "reason": "r"}}
    assert codec.decode(codec.encode(state), State) == state
    assert codec.dump({"p": Path("/x")}) == {"p": "/x"}


def test_a_parsed_kind_is_written_as_its_base_type() -> None:
    """A unit name read from a config is plain text again in JSON."""
    config = codec.convert({"units": UNITS}, Config)
    assert msgspec.json.decode(codec.encode(config.units)) == {
        "workers": ["a.service"], "beat": None, "broker": None}
