"""Analyzer results as tagged JSON, decoded only into the types the caller registered.

Analyzer results (KernelInfo, InitrdInfo, ... from boot/, a layer the cache must not import) are
encoded generically as tagged dataclasses, enums, tuples, bytes and mappings, and decoded only
into the registered types (closed over their field types), so a cache file can name no other
class.  A result of any other type is Unencodable: its layer is not cached.  A type is tagged by
its module and qualified name, so moving a stored type renames its tag (see layer.AnalysisFailed).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..layer import AnalysisFailed


class Unencodable(Exception):
    """A value the codec cannot store (never shown to users: its layer is just not cached)."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _tag(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _closure(roots: Iterable[type]) -> dict[str, type]:
    """The registered types and every dataclass or enum their field annotations name."""
    found: dict[str, type] = {}
    todo = list(roots)
    while todo:
        cls = todo.pop()
        if not isinstance(cls, type) or _tag(cls) in found:
            continue
        if not (dataclasses.is_dataclass(cls) or issubclass(cls, enum.Enum)):
            continue
        found[_tag(cls)] = cls
        if dataclasses.is_dataclass(cls):
            try:
                hints = typing.get_type_hints(cls)
            except (NameError, TypeError):
                hints = {}
            todo.extend(_named_types(hints.values()))
    return found


def _named_types(annotations: Iterable[Any]) -> Iterator[type]:
    for annotation in annotations:
        if isinstance(annotation, type):
            yield annotation
        yield from _named_types(typing.get_args(annotation))


class AnalysisCodec:
    """Tagged JSON for analyzer results.  Every JSON object is a tag, so none is ambiguous:
    {"b": base64}, {"t": tuple}, {"s": frozenset}, {"m": [[key, value], ...]},
    {"e": enum type, "v": value}, {"d": dataclass type, "f": {field: value}}."""

    def __init__(self, types: Iterable[type]) -> None:
        self.types = _closure([AnalysisFailed, *types])

    def _registered(self, cls: type) -> str:
        tag = _tag(cls)
        if self.types.get(tag) is not cls:
            raise Unencodable(f"{tag} is not a registered analysis type")
        return tag

    def encode(self, value: Any) -> Any:
        if isinstance(value, enum.Enum):  # before str/int: StrEnum members are strs too
            return {"e": self._registered(type(value)), "v": value.value}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, bytes):
            return {"b": b64(value)}
        if isinstance(value, tuple):
            return {"t": [self.encode(v) for v in value]}
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if isinstance(value, frozenset):
            return {"s": [self.encode(v) for v in value]}
        if isinstance(value, Mapping):
            return {"m": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            tag = self._registered(type(value))
            fields = {
                f.name: self.encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
            }
            return {"d": tag, "f": fields}
        raise Unencodable(f"cannot store a {type(value).__qualname__}")

    def decode(self, data: Any) -> Any:
        """The value `data` encodes; KeyError/ValueError/TypeError if it is not a valid encoding."""
        if isinstance(data, list):
            return [self.decode(v) for v in data]
        if not isinstance(data, dict):
            return data
        if "d" in data:
            cls = self.types[data["d"]]
            if not dataclasses.is_dataclass(cls):
                raise ValueError(f"{data['d']} is not a dataclass")
            fields = data["f"]
            if set(fields) != {f.name for f in dataclasses.fields(cls) if f.init}:
                raise ValueError(f"{data['d']}: stored fields differ from the class's")
            return cls(**{name: self.decode(v) for name, v in fields.items()})
        if "e" in data:
            return self.types[data["e"]](data["v"])
        ((tag, body),) = data.items()
        if tag == "b":
            return base64.b64decode(body, validate=True)
        if tag == "t":
            return tuple(self.decode(v) for v in body)
        if tag == "s":
            return frozenset(self.decode(v) for v in body)
        if tag == "m":
            return {self.decode(k): self.decode(v) for k, v in body}
        raise ValueError(f"unknown value tag {tag!r}")
