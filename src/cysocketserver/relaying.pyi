# relay(): both directions between two stream sockets (cysocketserver.relaying).
from typing import Literal, Protocol

__all__ = ["relay", "SPLICE"]

class _HasFileno(Protocol):
    def fileno(self) -> int: ...

SPLICE: Literal["auto", "always", "never"]

def relay(a: _HasFileno, b: _HasFileno, *, idle_timeout: float | None = None) -> tuple[int, int]: ...
