# Types of the greenlet servers and their cooperative helpers.
import socket as _socket_module
import ssl as _ssl_module
import sys
from collections.abc import Callable
from typing import Any, Final, Generic, Literal, ParamSpec, TypeVar

from ._hub import Hub
from ._hubcommon import HubBlockedWarning as HubBlockedWarning
from .servers import TCPServer, UDPServer, _RequestType, _RetAddress

__all__ = [
    "GreenletMixIn", "GreenletTCPServer", "GreenletUDPServer", "GreenSocket",
    "connect", "sleep", "spawn", "Task", "to_thread", "get_hub", "HubBlockedWarning",
]

_T = TypeVar("_T")
_P = ParamSpec("_P")

POLLIN: Final[int]
POLLOUT: Final[int]
BLOCK_WARNING_ENV: Final[str]
TO_THREAD_ENV: Final[str]
TO_THREAD_MAX_THREADS: int

def get_hub() -> Hub: ...
def sleep(seconds: float) -> None: ...
def spawn(function: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Task[_T]: ...
def to_thread(function: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T: ...
# A GreenSocket in a thread that runs a hub, else a plain socket.socket; with ssl_context, a
# GreenTLSSocket or an ssl.SSLSocket (both ssl.SSLSocket).
def connect(
    address: tuple[str, int] | str | bytes,
    timeout: float | None = None,
    source_address: tuple[str, int] | None = None,
    *,
    connect_timeout: float | None = None,
    proxy_protocol: Literal["v1", "v2"] | None = None,
    proxy_addresses: tuple[tuple[str, int], tuple[str, int]] | None = None,
    ssl_context: _ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
) -> _socket_module.socket: ...

class Task(Generic[_T]):
    # Made by spawn().
    def __init__(self, hub: Hub, function: Callable[..., _T], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None: ...
    def __del__(self) -> None: ...
    def done(self) -> bool: ...
    def join(self, timeout: float | None = None) -> _T: ...
    def kill(self) -> None: ...

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
