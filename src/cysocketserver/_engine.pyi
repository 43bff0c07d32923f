# The engine switch. Whichever engine runs, its names have the compiled modules' types: the
# pure-Python twins have the same interface (core/seam.py writes it down).
from types import ModuleType
from typing import Any, Literal

from ._counters import Counters, Meter
from ._hub import Hub
from ._loop import ServeLoop
from ._streams import SocketReader, SocketWriter

__all__ = ["IMPLEMENTATION", "available", "current", "load", "use"]

class Engine:
    name: str
    def __init__(self, name: str, lazy: dict[str, Any], **parts: Any) -> None: ...
    def __getattr__(self, attribute: str) -> Any: ...
    ServeLoop: type[ServeLoop]
    SocketReader: type[SocketReader]
    SocketWriter: type[SocketWriter]
    Hub: type[Hub]
    Counters: type[Counters]
    Meter: type[Meter]
    proxyproto: ModuleType
    clienthello: ModuleType
    relay: ModuleType

IMPLEMENTATION: Literal["compiled", "python"]

def load(name: str) -> Engine: ...
def available(name: str) -> bool: ...
def current() -> Engine: ...

class use:
    engine: Engine
    previous: Engine
    def __init__(self, name: str) -> None: ...
    def __enter__(self) -> Engine: ...
    def __exit__(self, *exc_info: object) -> None: ...
