"""Stand-ins for the bindings componentize-py generates, so a UDF's unit tests run on plain
CPython. Same names and shapes as ``wit_world.imports.types``, ``.host`` and
``wit_world.exports.scalar``; ``log`` prints to stderr."""

import sys
from dataclasses import dataclass
from enum import Enum
from typing import Generic, List, Optional, Tuple, TypeVar

T = TypeVar("T")
E = TypeVar("E")


@dataclass
class Message:
    key: Optional[bytes]
    value: bytes
    headers: List[Tuple[str, bytes]]
    timestamp_ms: Optional[int]


@dataclass
class UdfError_InvalidInput:
    value: str


@dataclass
class UdfError_Failed:
    value: str


@dataclass
class Value_Null:
    pass


@dataclass
class Value_Boolean:
    value: bool


@dataclass
class Value_Integer:
    value: int


@dataclass
class Value_Double:
    value: float


@dataclass
class Value_Text:
    value: str


@dataclass
class Ok(Generic[T]):
    value: T


@dataclass(frozen=True)
class Err(Generic[E], Exception):
    value: E


class Level(Enum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


def log(level, message):
    print(f"[{level.name.lower()}] {message}", file=sys.stderr)
