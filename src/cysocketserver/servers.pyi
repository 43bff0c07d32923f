# Types of the server classes: the same shapes as the stdlib's socketserver, so that code
# checked against one checks against the other.
import sys
import types
from collections import Counter
from collections.abc import Callable, Iterable
from ipaddress import IPv4Network, IPv6Network
from socket import socket as _socket
from ssl import SSLContext
from typing import Any, Literal, Self, TypeAlias

from .proxyprotocol import ProxyHeader
from .handlers import BaseRequestHandler

__all__ = ["BaseServer", "TCPServer", "UDPServer"]
if sys.platform != "win32":
    __all__ += ["UnixStreamServer", "UnixDatagramServer"]

# A stream request is the accepted socket; a datagram request is (packet, server socket).
_RequestType: TypeAlias = _socket | tuple[bytes, _socket]
# Client addresses are whatever accept()/recvfrom() return for the family.
_RetAddress: TypeAlias = Any
# Addresses a server can be given.
_Address: TypeAlias = tuple[Any, ...] | str | bytes
_InetAddress: TypeAlias = tuple[str | bytes | bytearray, int] | tuple[str, int, int, int]
_UnixAddress: TypeAlias = str | bytes

class BaseServer:
    address_family: int
    server_address: _Address
    socket: _socket
    socket_type: int
    allow_reuse_address: bool
    request_queue_size: int
    timeout: float | None
    # The guards: None means off.
    max_connections: int | None
    max_connections_per_client: int | None
    idle_timeout: float | None
    drain_timeout: float | None
    RequestHandlerClass: Callable[[Any, _RetAddress, Self], BaseRequestHandler]
    # The PROXY protocol, receiving (this package's; the stdlib has none).
    proxy_protocol: Literal["v1", "v2", "any"] | None
    proxy_protocol_trusted: str | Iterable[str | IPv4Network | IPv6Network]
    proxy_protocol_timeout: float
    # TLS on every accepted connection (this package's; None: off).
    ssl_context: SSLContext | None
    tls_handshake_timeout: float
    @property
    def proxy_protocol_refused(self) -> Counter[str]: ...
    def proxy_header(self, request: _RequestType) -> ProxyHeader | None: ...
    def __init__(
        self,
        server_address: _Address,
        RequestHandlerClass: Callable[[Any, _RetAddress, Self], BaseRequestHandler],
    ) -> None: ...
    # Not defined by BaseServer itself: the loop calls them, subclasses provide them.
    def fileno(self) -> int: ...
    def get_request(self) -> tuple[Any, _RetAddress]: ...
    def server_bind(self) -> None: ...
    # The documented interface.
    def server_activate(self) -> None: ...
    def serve_forever(self, poll_interval: float = 0.5) -> None: ...
    def shutdown(self) -> None: ...
    def service_actions(self) -> None: ...
    def handle_request(self) -> None: ...
    def handle_timeout(self) -> None: ...
    def verify_request(self, request: _RequestType, client_address: _RetAddress) -> bool: ...
    def process_request(self, request: _RequestType, client_address: _RetAddress) -> None: ...
    def server_close(self) -> None: ...
    def finish_request(self, request: _RequestType, client_address: _RetAddress) -> None: ...
    def shutdown_request(self, request: _RequestType) -> None: ...
    def close_request(self, request: _RequestType) -> None: ...
    def handle_error(self, request: _RequestType, client_address: _RetAddress) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: types.TracebackType | None,
    ) -> None: ...

class TCPServer(BaseServer):
    # After binding, what getsockname() gives: (host, port), or (host, port, flowinfo, scope_id).
    server_address: tuple[str, int] | tuple[str, int, int, int]
    allow_reuse_port: bool
    # Accepted TCP connections get TCP_NODELAY when true (the default); None/False: as the stdlib.
    tcp_nodelay: bool | None
    def __init__(
        self,
        server_address: _InetAddress,
        RequestHandlerClass: Callable[[Any, _RetAddress, Self], BaseRequestHandler],
        bind_and_activate: bool = True,
    ) -> None: ...
    @classmethod
    def from_socket(
        cls,
        sock: _socket,
        RequestHandlerClass: Callable[[Any, _RetAddress, Self], BaseRequestHandler],
    ) -> Self: ...
    def fileno(self) -> int: ...
    def get_request(self) -> tuple[_socket, _RetAddress]: ...

class UDPServer(TCPServer):
    max_packet_size: int
    def get_request(self) -> tuple[tuple[bytes, _socket], _RetAddress]: ...  # type: ignore[override]

if sys.platform != "win32":
    class UnixStreamServer(TCPServer):
        server_address: _UnixAddress  # type: ignore[assignment]
        def __init__(
            self,
            server_address: _UnixAddress,
            RequestHandlerClass: Callable[[Any, _RetAddress, Self], BaseRequestHandler],
            bind_and_activate: bool = True,
        ) -> None: ...

    class UnixDatagramServer(UDPServer):
        server_address: _UnixAddress  # type: ignore[assignment]
        def __init__(
            self,
            server_address: _UnixAddress,
            RequestHandlerClass: Callable[[Any, _RetAddress, Self], BaseRequestHandler],
            bind_and_activate: bool = True,
        ) -> None: ...
