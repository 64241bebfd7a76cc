"""Policy files: loading, durations, errors with line numbers, and rule selection."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from healer import codec
from healer.errors import ConfigError
from healer.model import Finding
from healer.policy.engine import PolicyEngine
from healer.policy.loader import load_file, load_policies
from healer.policy.models import Limit, Match, PolicyFile, Rule, Step, parse_duration
from healer.vocabulary import Scenario, Severity

SHIPPED = Path(__file__).resolve().parents[2] / "policies"

VALID = """\
rules:
  - name: restart-dead-worker
    match:
      scenario: worker_down
    ladder:
      - action: restart_unit
        verify: {verify}
        limit: {{max: 3, within: 15m}}
"""


def write(folder: Path, text: str, name: str = "p.yaml") -> Path:
    """Write a policy file and return its path."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def finding(
    scenario: Scenario = Scenario.WORKER_DOWN,
    unit: str | None = "celery-w1.service",
    severity: Severity = Severity.CRITICAL,
) -> Finding:
    """A finding with the given identity and no evidence."""
    return Finding(scenario=scenario, severity=severity, unit=unit, summary="test", evidence={})


def rule(name: str, scenario: Scenario = Scenario.WORKER_DOWN, unit: str = "*",
         severity: list[Severity] | None = None) -> Rule:
    """A one-step restart rule with the given match."""
    return Rule(name=name, match=Match(scenario=scenario, unit=unit, severity=severity),
                ladder=[Step(action="restart_unit")])


def load_error(tmp_path: Path, text: str) -> tuple[Path, str]:
    """Load a policy that must fail; return its path and the error message."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_file(path)
    return path, str(info.value)


def test_shipped_policies_load_and_match_worker_down() -> None:
    """The shipped policies/ folder loads; all workers down escalates after 10 min, some not."""
    rules = load_policies(SHIPPED)
    assert rules
    engine = PolicyEngine(rules)
    all_down, some_down = engine.rule_for(finding()), engine.rule_for(
        replace(finding(), severity=Severity.HIGH))
    assert all_down is not None
    assert some_down is not None
    assert (all_down.name, all_down.escalate_after) == ("all-workers-down", 600)
    assert (some_down.name, some_down.escalate_after) == ("restart-dead-worker", None)
    assert all_down.ladder == some_down.ladder
    assert all_down.ladder[0].action == "restart_unit"
    assert all_down.ladder[0].limit == Limit(max=3, within=900)


def test_single_file_loads_like_a_folder() -> None:
    """load_policies accepts a single file as well as a folder (whose rules include the file's)."""
    single = load_policies(SHIPPED / "worker_down.yaml")
    assert single
    assert all(rule in load_policies(SHIPPED) for rule in single)


def test_missing_policy_path_is_error(tmp_path: Path) -> None:
    """A policy path that does not exist is a ConfigError naming it."""
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match="no such policy file or folder") as info:
        load_policies(missing)
    assert str(info.value).startswith(str(missing))


def test_a_policy_path_the_system_cannot_look_up_is_error(tmp_path: Path) -> None:
    """A name longer than the file system allows is a ConfigError naming it, not a crash."""
    long = tmp_path / ("x" * 5000)
    with pytest.raises(ConfigError, match="cannot read policy: File name too long"):
        load_policies(long)


def test_empty_file_has_no_rules(tmp_path: Path) -> None:
    """An empty policy file is valid and holds no rules."""
    assert load_file(write(tmp_path, "")) == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h30m", 5400), ("250ms", 0.25), ("1.5s", 1.5),
     ("2d", 172_800), ("1h 30m", 5400), ("45", 45), ("2.5", 2.5)],
)
def test_durations_parse(tmp_path: Path, text: str, seconds: float) -> None:
    """Durations with units, combined units and bare numbers all become seconds."""
    rules = load_file(write(tmp_path, VALID.format(verify=text)))
    assert rules[0].ladder[0].verify == pytest.approx(seconds)
    assert rules[0].ladder[0].limit.within == 900


@pytest.mark.parametrize("value", ["30", "5x", "m5", "1h30", "s", "1h-30m"])
def test_parse_duration_rejects_non_durations(value: str) -> None:
    """Strings that are not number-unit pairs are refused."""
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        pytest.param(VALID.format(verify="soon"), 7, "rules.0.ladder.0.verify",
                     "is not a duration", id="bad-duration"),
        pytest.param(VALID.format(verify="0s"), 7, "rules.0.ladder.0.verify",
                     "greater than 0", id="zero-duration"),
        pytest.param(VALID.format(verify="5s").replace("{max: 3, within: 15m}",
                                                       "{max: 3, within: ages}"),
                     8, "rules.0.ladder.0.limit.within", "is not a duration",
                     id="bad-limit-window"),
        pytest.param(VALID.format(verify="5s") + "        retries: 2\n", 9,
                     "rules.0.ladder.0.retries", "unknown field", id="unknown-step-field"),
        pytest.param(VALID.format(verify="5s").replace(
            "scenario: worker_down", "scenario: worker_down\n      sevrity: [high]"),
                     5, "rules.0.match.sevrity", "unknown field", id="unknown-match-field"),
        pytest.param(VALID.format(verify="5s").replace("worker_down", "worker_dead"), 4,
                     "rules.0.match.scenario", "(one of: worker_down,", id="unknown-scenario"),
        pytest.param(VALID.format(verify="5s").replace("restart_unit", "reboot_host"), 6,
                     "rules.0.ladder.0.action", "restart_unit", id="unknown-action"),
        pytest.param("rules:\n  - name: r\n    match: {scenario: worker_down}\n    ladder: []\n",
                     2, "rules.0", "a rule needs a ladder, or escalate_after",
                     id="empty-ladder-without-escalate-after"),
        pytest.param("# comment\n\nrules:\n  - name: r\n    match: {scenario: worker_down}\n"
                     "    ladder:\n      - action: restart_unit\n        unit: not a unit\n",
                     8, "rules.0.ladder.0.unit", "not a systemd unit name", id="bad-unit"),
    ],
)
def test_validation_error_names_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, message: str
) -> None:
    """A bad field is reported as path:LINE: field: reason, with the field's own line."""
    path, error = load_error(tmp_path, text)
    assert error.startswith(f"{path}:{line}: {field}: "), error
    assert message in error


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    """Invalid YAML is reported with the line where the parser stopped."""
    path, error = load_error(
        tmp_path, "rules:\n  - name: r\n    match: scenario: worker_down\n"
    )
    assert error.startswith(f"{path}:3: invalid YAML: ")


def test_tab_indentation_names_line(tmp_path: Path) -> None:
    """A tab used for indentation is invalid YAML reported on its line."""
    path, error = load_error(tmp_path, "rules:\n  - name: r\n\tmatch: x\n")
    assert error.startswith(f"{path}:3: invalid YAML: ")


def test_top_level_list_is_error(tmp_path: Path) -> None:
    """A document that is not a mapping is an error on line 1."""
    path, error = load_error(tmp_path, "- restart\n")
    assert error.startswith(f"{path}:1: (top level): ")


def test_duplicate_rule_names_across_files(tmp_path: Path) -> None:
    """Two files defining the same rule name is an error naming both files."""
    first = write(tmp_path, VALID.format(verify="5s"), "a.yaml")
    second = write(tmp_path, VALID.format(verify="9s"), "b.yml")
    with pytest.raises(ConfigError) as info:
        load_policies(tmp_path)
    message = str(info.value)
    assert message.startswith(str(second))
    assert str(first) in message
    assert "restart-dead-worker" in message


def test_folder_rules_come_in_file_name_order(tmp_path: Path) -> None:
    """Rules from a folder are in file-name order, then file order; other files are ignored."""
    step = "    match: {scenario: worker_down}\n    ladder: [{action: restart_unit}]\n"
    write(tmp_path, f"rules:\n  - name: b1\n{step}", "b.yaml")
    write(tmp_path, f"rules:\n  - name: a1\n{step}  - name: a2\n{step}", "a.yaml")
    write(tmp_path, "not: [valid", "notes.txt")
    assert [r.name for r in load_policies(tmp_path)] == ["a1", "a2", "b1"]


def test_engine_picks_first_matching_rule() -> None:
    """When several rules match, the first in order wins."""
    engine = PolicyEngine([rule("first"), rule("second")])
    chosen = engine.rule_for(finding())
    assert chosen is not None
    assert chosen.name == "first"


def test_engine_honours_unit_globs_and_severities() -> None:
    """Unit globs and severity lists narrow a rule; later rules catch the rest."""
    engine = PolicyEngine([
        rule("web-critical", unit="web-*.service", severity=[Severity.CRITICAL]),
        rule("web-any", unit="web-*.service"),
        rule("anything"),
    ])

    def name(f: Finding) -> str | None:
        chosen = engine.rule_for(f)
        return chosen.name if chosen else None

    assert name(finding(unit="web-1.service")) == "web-critical"
    assert name(finding(unit="web-1.service", severity=Severity.HIGH)) == "web-any"
    assert name(finding(unit="mail-1.service")) == "anything"
    assert name(finding(unit=None)) == "anything"


def test_engine_returns_none_without_matching_rule() -> None:
    """A finding no rule covers gets no rule, scenario mismatch included."""
    engine = PolicyEngine([rule("workers", unit="celery-*.service")])
    assert engine.rule_for(finding(unit="redis.service")) is None
    assert engine.rule_for(finding(scenario=Scenario.BEAT_DOWN)) is None


_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
            | st.sampled_from(["worker_down", "beat_down", "restart_unit", "5s", "10m", "0s",
                               "x.service", "*", "high", "critical"]))
_KEYS = st.sampled_from(["rules", "name", "match", "ladder", "scenario", "unit", "severity",
                         "action", "verify", "limit", "max", "within", "bogus"]) | st.text(
                             max_size=8)
_DATA = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=25,
)


def _mostly(valid: st.SearchStrategy[object], other: st.SearchStrategy[object] = _SCALARS
            ) -> st.SearchStrategy[object]:
    """Three times in four a valid value, else anything: rules valid often enough to load."""
    return st.sampled_from([valid, valid, valid, other]).flatmap(lambda chosen: chosen)


# Nearly valid rules, so that validation (not only parsing) is explored deeply.
_STEP = st.fixed_dictionaries(
    {"action": _mostly(st.just("restart_unit"))},
    optional={"verify": _mostly(st.sampled_from(["5s", "1h30m", 2])),
              "unit": _mostly(st.just("x.service")), "bogus": _SCALARS,
              "limit": _mostly(st.fixed_dictionaries(
                  {}, optional={"max": _mostly(st.integers(1, 5)),
                                "within": _mostly(st.sampled_from(["10m", 60]))}), _DATA)},
)
_RULE = st.fixed_dictionaries(
    {"name": _mostly(st.uuids().map(str)),
     "match": _mostly(st.fixed_dictionaries(
         {"scenario": _mostly(st.sampled_from([s.value for s in Scenario]))},
         optional={"unit": _mostly(st.just("x*")),
                   "severity": _mostly(st.lists(st.sampled_from(["high", "low"])), _DATA)}),
         _DATA),
     "ladder": _mostly(st.lists(_STEP, min_size=1, max_size=2), _DATA)},
    optional={"bogus": _DATA},
)
_TEXTS = st.one_of(
    st.text(),
    _DATA.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    st.lists(_RULE, max_size=3).map(lambda r: yaml.safe_dump({"rules": r}, allow_unicode=True)),
)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_TEXTS)
def test_any_policy_text_gives_rules_or_config_error(text: str) -> None:
    """Any file content loads as rules or fails as a ConfigError starting with the file's path."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8")
        outcome: list[Rule] | str
        try:
            outcome = load_file(path)
        except ConfigError as exc:
            outcome = str(exc)
    if isinstance(outcome, str):
        assert outcome.startswith(f"{path}:")
        line = re.match(r":(\d+): ", outcome.removeprefix(str(path)))
        if line:
            assert 1 <= int(line.group(1)) <= len(text.splitlines()) + 1
    else:
        assert all(isinstance(r, Rule) for r in outcome)


def test_duplicate_key_is_an_error_on_its_line(tmp_path: Path) -> None:
    """A key given twice in one mapping is an error naming the second one's line."""
    path = tmp_path / "dup.yaml"
    path.write_text(
        "rules:\n  - name: a\n    match: {scenario: worker_down}\n"
        "    ladder: [{action: restart_unit}]\n    ladder: []\n"
    )
    with pytest.raises(ConfigError, match=r"dup\.yaml:5: ladder: duplicate key"):
        load_file(path)


def test_shipped_json_schema_matches_the_models() -> None:
    """policies/policy.schema.json is exactly the schema the models export (kept in sync)."""
    shipped = json.loads((SHIPPED / "policy.schema.json").read_text())
    assert shipped == codec.schema(PolicyFile)
