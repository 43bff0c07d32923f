# Types of the greenlet servers and their cooperative helpers.
import socket as _socket_module
import sys
from collections.abc import Callable
from typing import Any, Final, TypeVar

from ._engine import Hub
from ._hubcommon import HubBlockedWarning as HubBlockedWarning
from .servers import TCPServer, UDPServer, _RequestType, _RetAddress

__all__ = [
    "GreenletMixIn", "GreenletTCPServer", "GreenletUDPServer", "GreenSocket",
    "connect", "sleep", "spawn", "to_thread", "get_hub", "HubBlockedWarning",
]

_T = TypeVar("_T")

POLLIN: Final[int]
POLLOUT: Final[int]
BATCH: Final[int]
PAUSE_FIRST: Final[float]
PAUSE_MAX: Final[float]
RESOURCE_ERRNOS: Final[frozenset[int]]
BLOCK_WARNING_ENV: Final[str]
TO_THREAD_ENV: Final[str]
TO_THREAD_MAX_THREADS: int

def get_hub() -> Hub: ...
def sleep(seconds: float) -> None: ...
def spawn(function: Callable[..., object], *args: Any) -> Any: ...
def to_thread(function: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T: ...
def connect(address: tuple[str, int] | str | bytes, timeout: float | None = None) -> GreenSocket: ...

class GreenSocket(_socket_module.socket):
    @classmethod
    def from_socket(cls, sock: _socket_module.socket) -> GreenSocket: ...

class GreenletMixIn:
    block_on_close: bool
    hub_block_warning: float | None
    def serve_forever(self, poll_interval: float | None = 0.5) -> None: ...
    def shutdown(self) -> None: ...
    def handle_request(self) -> None: ...
    def process_request(self, request: _RequestType, client_address: _RetAddress) -> None: ...
    def process_request_greenlet(self, request: _RequestType, client_address: _RetAddress) -> None: ...
    def server_close(self) -> None: ...

class GreenletTCPServer(GreenletMixIn, TCPServer): ...
class GreenletUDPServer(GreenletMixIn, UDPServer): ...

if sys.platform != "win32":
    from .servers import UnixDatagramServer, UnixStreamServer

    __all__ += ["GreenletUnixStreamServer", "GreenletUnixDatagramServer"]

    class GreenletUnixStreamServer(GreenletMixIn, UnixStreamServer): ...
    class GreenletUnixDatagramServer(GreenletMixIn, UnixDatagramServer): ...
