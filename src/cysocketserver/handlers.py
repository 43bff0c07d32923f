"""Request handlers: one instance per request, running setup(), handle(), finish()."""
import socket
from io import BytesIO

from . import _engine

__all__ = ["BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler"]


class BaseRequestHandler:
    """Handles one request; subclasses override handle() and maybe setup()/finish()."""

    def __init__(self, request, client_address, server):
        self.request = request
        self.client_address = client_address
        self.server = server
        self.setup()
        try:
            self.handle()
        finally:
            self.finish()

    def setup(self):
        pass

    def handle(self):
        pass

    def finish(self):
        pass


class StreamRequestHandler(BaseRequestHandler):
    """Gives handle() file objects over a stream socket: rfile to read, wfile to write."""

    # -1: buffered with the default size; 0: unbuffered (a raw socket file, as in the stdlib).
    rbufsize = -1
    # 0: every write() goes straight out; otherwise a buffered writer flushed by finish().
    wbufsize = 0
    timeout = None
    disable_nagle_algorithm = False

    def setup(self):
        self.connection = conn = self.request
        if self.timeout is not None:
            conn.settimeout(self.timeout)
        if self.disable_nagle_algorithm:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        engine = _engine.current()
        if self.rbufsize == 0:
            self.rfile = conn.makefile("rb", 0)
        else:
            self.rfile = engine.SocketReader(conn, self.rbufsize)
        if self.wbufsize == 0:
            self.wfile = engine.SocketWriter(conn)
        else:
            self.wfile = conn.makefile("wb", self.wbufsize)

    def finish(self):
        if not self.wfile.closed:
            try:
                self.wfile.flush()
            except OSError:
                # The client may be gone already; nothing left to tell it.
                pass
        self.wfile.close()
        self.rfile.close()


class DatagramRequestHandler(BaseRequestHandler):
    """Gives handle() the packet as rfile and sends what it writes to wfile as the reply."""

    def setup(self):
        self.packet, self.socket = self.request
        self.rfile = BytesIO(self.packet)
        self.wfile = BytesIO()

    def finish(self):
        self.socket.sendto(self.wfile.getvalue(), self.client_address)
