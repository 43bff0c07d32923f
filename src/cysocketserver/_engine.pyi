# The seam between the public classes and the engine. Whichever engine runs, the names have
# the compiled modules' types: the pure-Python twins have the same interface.
from typing import Literal

from ._hub import Hub as Hub
from ._loop import ServeLoop as ServeLoop
from ._streams import SocketReader as SocketReader, SocketWriter as SocketWriter

__all__ = ["IMPLEMENTATION", "Hub", "ServeLoop", "SocketReader", "SocketWriter"]

IMPLEMENTATION: Literal["compiled", "python"]
