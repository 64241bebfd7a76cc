"""Load policy files; every error names the file, the line and the field."""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from healer.errors import ConfigError
from healer.policy.models import PolicyFile, Rule

if TYPE_CHECKING:
    from pathlib import Path


def _node_at(node: yaml.Node, loc: tuple[int | str, ...]) -> yaml.Node:
    """The deepest YAML node along a pydantic error location (for its line number)."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == part), None)
            if found is None:
                key = next((k for k, _ in node.value if k.value == part), None)
                return key or node
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def _duplicate_key(node: yaml.Node) -> yaml.Node | None:
    """The first mapping key that appears twice (PyYAML would silently keep the last)."""
    children: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        keys: list[yaml.Node] = [key for key, _ in node.value]
        names = [key.value for key in keys]
        duplicate: yaml.Node | None = next(
            (k for i, k in enumerate(keys) if k.value in names[:i]), None)
        if duplicate is not None:
            return duplicate
        children = [value for _, value in node.value]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    return next((d for child in children if (d := _duplicate_key(child)) is not None), None)


def _describe(path: Path, root: yaml.Node | None, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if isinstance(p, int | str))
    line = _node_at(root, loc).start_mark.line + 1 if root is not None else 1
    field = ".".join(str(p) for p in loc) or "(top level)"
    msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{path}:{line}: {field}: {msg.removeprefix('Value error, ')}{more}"


def load_file(path: Path) -> list[Rule]:
    """Parse and validate one policy file."""
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise ConfigError(f"{path}:{line}: invalid YAML: {exc.problem}") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read policy: {exc}") from exc
    if root is not None and (dup := _duplicate_key(root)) is not None:
        raise ConfigError(f"{path}:{dup.start_mark.line + 1}: {dup.value}: duplicate key")
    try:
        return PolicyFile.model_validate(data or {}).rules
    except ValidationError as exc:
        raise ConfigError(_describe(path, root, exc)) from exc


def load_policies(path: Path) -> list[Rule]:
    """All rules of a policy file, or of every *.yaml file in a folder, in file-name order."""
    if path.is_dir():
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    elif path.exists():
        files = [path]
    else:
        raise ConfigError(f"{path}: no such policy file or folder")
    rules: list[Rule] = []
    seen: dict[str, Path] = {}
    for file in files:
        for rule in load_file(file):
            if rule.name in seen:
                raise ConfigError(
                    f"{file}: rule {rule.name!r} is already defined in {seen[rule.name]}")
            seen[rule.name] = file
            rules.append(rule)
    return rules
