# Types of the request handlers, shaped as the stdlib's socketserver handlers.
from socket import socket as _socket
from typing import Any, BinaryIO, TypeVar

from .servers import BaseServer, _RequestType, _RetAddress

_T = TypeVar("_T")

def _register_stream_socket(cls: type[_T]) -> type[_T]: ...

__all__ = ["BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler"]

class BaseRequestHandler:
    # The request is a socket for stream servers and (packet, socket) for datagram servers;
    # a union here would make every handler narrow it, so it is Any as in the stdlib's stubs.
    request: Any
    client_address: _RetAddress
    server: BaseServer
    def __init__(self, request: _RequestType, client_address: _RetAddress, server: BaseServer) -> None: ...
    def setup(self) -> None: ...
    def handle(self) -> None: ...
    def finish(self) -> None: ...

class StreamRequestHandler(BaseRequestHandler):
    rbufsize: int
    wbufsize: int
    timeout: float | None
    disable_nagle_algorithm: bool
    connection: _socket
    rfile: BinaryIO
    wfile: BinaryIO

class DatagramRequestHandler(BaseRequestHandler):
    packet: bytes
    socket: _socket
    rfile: BinaryIO
    wfile: BinaryIO
