"""Load policy files; every error names the file, the line and the field.

A policy file is read only if it is a regular file of at most 1 MiB, nested at most 64 deep,
and at most 20,000 nodes once every YAML alias is expanded (a 300-byte alias bomb expands to
billions): these bounds are structural, checked before anything walks the expanded document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

from healer import codec, safefile
from healer.errors import ConfigError
from healer.policy.models import PolicyFile, Rule

if TYPE_CHECKING:
    from pathlib import Path


def _node_at(node: yaml.Node, loc: tuple[int | str, ...]) -> yaml.Node:
    """The deepest YAML node along an error's location (for its line number)."""
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


MAX_POLICY = 2**20
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it: 10x
MAX_DEPTH = 64
MAX_NODES = 20_000


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_depth(path: Path, text: str) -> None:
    """Nesting within MAX_DEPTH, read from the parser's events (composing would recurse)."""
    depth = 0
    for event in yaml.parse(text, Loader=LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else 1
                raise ConfigError(f"{path}:{line}: nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_expansion(path: Path, root: yaml.Node) -> list[yaml.Node]:
    """Every distinct node, once each; refuses a recursive alias or too large an expansion.

    Sizes are counted bottom-up with each shared node counted once per use, without ever
    walking the expansion itself.
    """
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()
    nodes: list[yaml.Node] = []
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            ancestors.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[id(node)] > MAX_NODES:
                raise ConfigError(f"{path}:{node.start_mark.line + 1}: more than {MAX_NODES} "
                                  "nodes once its aliases are expanded")
            continue
        if id(node) in sizes:
            continue
        ancestors.add(id(node))
        nodes.append(node)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in ancestors:
                raise ConfigError(f"{path}:{child.start_mark.line + 1}: an alias that "
                                  "contains itself")
            if id(child) not in sizes:
                stack.append((child, False))
    return nodes


def _duplicate_key(nodes: list[yaml.Node]) -> yaml.Node | None:
    """The first mapping key that appears twice (PyYAML would silently keep the last)."""
    found = []
    for node in nodes:
        if isinstance(node, yaml.MappingNode):
            names = [key.value for key, _ in node.value]
            found += [k for i, (k, _) in enumerate(node.value) if k.value in names[:i]]
    return min(found, key=lambda k: k.start_mark.index, default=None)


def _construct(text: str, root: yaml.Node | None) -> object:
    """The document's data, built from the nodes already composed and checked."""
    if root is None:
        return None
    loader = LOADER(text)
    try:
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _describe(path: Path, root: yaml.Node | None, exc: codec.Invalid) -> str:
    line = _node_at(root, exc.where).start_mark.line + 1 if root is not None else 1
    field = ".".join(map(str, exc.where)) or "(top level)"
    why = "unknown field" if exc.why == codec.UNKNOWN else exc.why  # a policy's keys are fields
    return f"{path}:{line}: {field}: {why}"


def load_file(path: Path) -> list[Rule]:
    """Parse and validate one policy file."""
    try:
        text = safefile.read_capped(path, MAX_POLICY).decode("utf-8")
        _check_depth(path, text)
        root = yaml.compose(text, Loader=LOADER)
        nodes = _check_expansion(path, root) if root is not None else []
        if (dup := _duplicate_key(nodes)) is not None:
            raise ConfigError(f"{path}:{dup.start_mark.line + 1}: {dup.value}: duplicate key")
        data = _construct(text, root)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise ConfigError(f"{path}:{line}: invalid YAML: {exc.problem}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read policy: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read policy: {exc}") from exc
    try:
        return codec.convert(data or {}, PolicyFile).rules
    except codec.Invalid as exc:
        raise ConfigError(_describe(path, root, exc)) from exc


def load_policies(path: Path) -> list[Rule]:
    """All rules of a policy file, or of every *.yaml file in a folder, in file-name order."""
    try:
        if path.is_dir():
            files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        elif path.exists():
            files = [path]
        else:
            raise ConfigError(f"{path}: no such policy file or folder")
    except OSError as exc:  # a name too long, a folder that cannot be listed
        raise ConfigError(f"{path}: cannot read policy: {exc.strerror or exc}") from exc
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
