"""Typed data from outside and back: msgspec structs, and the few types healer parses itself.

Config, policies and the state file are converted into structs with ``convert`` and
``decode``; a bad value raises ``Invalid`` with where it is (``units.workers.1``) and what is
wrong. A field typed with a ``parsed`` kind (a unit name, a duration) is handed to its
parse function, which raises ValueError or TypeError with the reason. ``dump`` and ``encode``
write every value back as JSON would hold it: a FindingKey as ``scenario:unit``, a path as
its text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from healer.vocabulary import FindingKey

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")
_PARSERS: dict[type, Callable[[Any], Any]] = {}
_SCHEMAS: dict[type, dict[str, Any]] = {}
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<at>.*)`)?$", re.DOTALL)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
UNKNOWN = "unknown key"
_FIELD = re.compile(r"^Object (contains unknown|missing required) field `(.*)`$")


class Invalid(ValueError):
    """A value that does not fit its type: ``where`` it is, and ``why``."""

    def __init__(self, where: tuple[str | int, ...], why: str) -> None:
        super().__init__(f"{'.'.join(map(str, where)) or '(top level)'}: {why}")
        self.where, self.why = where, why


def parsed(base: type[T], name: str, parse: Callable[[Any], T], schema: dict[str, Any]
           ) -> type[T]:
    """A subclass of ``base`` whose values are read by ``parse``; ``schema`` is its JSON schema."""
    kind = type(name, (base,), {"__doc__": parse.__doc__, "__module__": parse.__module__})
    _PARSERS[kind] = lambda value: kind(parse(value))
    _SCHEMAS[kind] = schema
    return kind


def file_path(value: object) -> Path:
    """A path from its text: a string with a file name and no NUL byte."""
    if not isinstance(value, str):
        raise TypeError(f"expected a path (a string), got {type(value).__name__}")
    if "\x00" in value or not Path(value).name:
        raise ValueError("not a file path (a NUL byte, or no file name)")
    return Path(value)


def _decode_hook(kind: type, value: object) -> object:
    if kind is Path:
        return file_path(value)
    if kind is FindingKey:
        if not isinstance(value, str):
            raise TypeError(f"expected scenario:unit, got {type(value).__name__}")
        return FindingKey.parse(value)
    if kind in _PARSERS:
        return _PARSERS[kind](value)
    raise NotImplementedError(kind)


def _encode_hook(value: object) -> object:
    for plain in (str, float, int):  # a parsed kind is written as its base type
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, Path | FindingKey):
        return str(value)
    raise NotImplementedError(type(value))


def _choices(kind: type, where: list[str | int]) -> list[str]:
    """The values the enum or literal at ``where`` in ``kind`` allows."""
    from msgspec import inspect  # noqa: PLC0415 - only to explain a bad value

    info: Any = inspect.type_info(kind)
    for step in [*where, None]:
        while isinstance(info, inspect.UnionType):
            info = next(t for t in info.types if not isinstance(t, inspect.NoneType))
        if isinstance(info, inspect.StructType):
            info = next((f.type for f in info.fields if f.encode_name == step), None)
        elif isinstance(info, inspect.ListType | inspect.VarTupleType) and step is not None:
            info = info.item_type
        elif isinstance(info, inspect.DictType) and step is not None:
            info = info.value_type
    if isinstance(info, inspect.EnumType):
        return [str(member.value) for member in info.cls]
    return [str(value) for value in info.values] if isinstance(info, inspect.LiteralType) else []


def _invalid(exc: msgspec.ValidationError, kind: type) -> Invalid:
    """``exc`` as where and why: ``$.a.b[1]`` as ``a.b.1``; a field named in the message too."""
    found = _AT.match(str(exc))
    msg, at = (found["msg"], found["at"] or "") if found else (str(exc), "")
    where: list[str | int] = [name or int(index) for name, index in
                              ((m[1], m[2]) for m in _STEP.finditer(at)) if name or index]
    field = _FIELD.match(msg)
    if field:
        where.append(field[2])
        msg = UNKNOWN if field[1] == "contains unknown" else "required"
    elif msg.startswith("Invalid enum value") and (allowed := _choices(kind, where)):
        msg += f" (one of: {', '.join(allowed)})"
    return Invalid(tuple(where), msg)


def convert(data: object, kind: type[T]) -> T:
    """``data`` (TOML's, YAML's) as a ``kind``, or Invalid."""
    try:
        return msgspec.convert(data, kind, dec_hook=_decode_hook)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, kind) from exc


def decode(data: bytes, kind: type[T]) -> T:
    """JSON text as a ``kind``, or Invalid (or ValueError: not JSON)."""
    try:
        return msgspec.json.decode(data, type=kind, dec_hook=_decode_hook)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, kind) from exc
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from exc


def encode(value: object) -> bytes:
    """Compact JSON of structs and builtins."""
    return msgspec.json.encode(value, enc_hook=_encode_hook)


def dump(value: object) -> Any:  # noqa: ANN401 - JSON's builtins
    """Structs as dicts, enums as their values, keys and paths as text: ready for json.dumps."""
    return msgspec.to_builtins(value, enc_hook=_encode_hook, str_keys=True)


def schema(kind: type) -> dict[str, Any]:
    """The JSON schema of ``kind``."""
    return msgspec.json.schema(kind, schema_hook=lambda t: _SCHEMAS[t])
