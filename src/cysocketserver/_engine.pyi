# The engine switch. Whichever engine runs, its names have the compiled modules' types: the
# pure-Python twins have the same interface (core/seam.py writes it down).
from collections.abc import Iterator
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Literal, Protocol

from ._counters import Counters, Meter
from ._hub import Hub
from ._loop import ServeLoop
from ._streams import SocketReader, SocketWriter

__all__ = ["IMPLEMENTATION", "available", "current", "load", "use"]

class _Engine(Protocol):
    name: str
    ServeLoop: type[ServeLoop]
    SocketReader: type[SocketReader]
    SocketWriter: type[SocketWriter]
    Hub: type[Hub]
    Counters: type[Counters]
    Meter: type[Meter]
    proxyproto: ModuleType

IMPLEMENTATION: Literal["compiled", "python"]

def load(name: str) -> _Engine: ...
def available(name: str) -> bool: ...
def current() -> _Engine: ...
def use(name: str) -> AbstractContextManager[_Engine]: ...
